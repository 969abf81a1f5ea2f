"""A source repository's tag list (`Distribution.digest_tags`): paged by `Link`, read once per run
for all the images of its repository, and bounded by pages and bytes; whatever is not a tag list
within the bounds (too long, too large, not JSON, paged to another host, refused) gives None,
and the probe asks for each image's tags by `HEAD` instead. Real HTTP to scripted servers on
loopback (`testutil/hostile_registry.py`)."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Callable, List, Optional, Sequence, Tuple

import pytest

from docker_mirror.probe.access import Routes
from docker_mirror.probe.credentials import CredentialStore
from docker_mirror.probe.distribution import (
    HEADS_SAVED_PER_IMAGE,
    MAX_REFERRER_PAGES,
    MAX_TAG_LIST_BYTES,
    MAX_TAG_PAGES,
    TAG_PAGE_SIZE,
    Distribution,
)
from docker_mirror.probe.referrers import MAX_LISTING_BYTES, MAX_REFERRERS, ReferrersError, index_entries
from docker_mirror.probe.registry import RegistryError, RegistrySession
from docker_mirror.probe.retry import RetryPolicy
from docker_mirror.probe.secrets import Secrets
from docker_mirror.probe.transport import HttpClient
from docker_mirror_testutil.hostile_registry import HostileServer, Hold, Reply, Request, digest_reply

SIG = "sha256-" + "ab" * 32 + ".sig"
FALLBACK = "sha256-" + "cd" * 32


def tag_list(tags: Sequence[str], *, link: Callable[[str], str] = lambda url: f"<{url}>; rel=\"next\"") -> Callable[[Request], Reply]:
    """A registry's tag list of `tags`, paged as docker-registry pages it: sorted, `n` at a
    time from after `last`, with a `Link` to the next page (written by `link`)."""
    ordered = sorted(tags)

    def handler(request: Request) -> Reply:
        if request.path != "/v2/app/tags/list":
            return Reply(404)
        query = dict(urllib.parse.parse_qsl(request.target.partition("?")[2]))
        n = int(query.get("n", len(ordered)))
        after = [tag for tag in ordered if tag > query["last"]] if "last" in query else ordered
        page = after[:n]
        headers = [("Content-Type", "application/json")]
        if len(after) > n:
            headers.append(("Link", link(f"/v2/app/tags/list?n={n}&last={urllib.parse.quote(page[-1])}")))
        return Reply(200, headers, json.dumps({"name": "app", "tags": page}).encode())

    return handler


def read(
    address: str, *, images: int = 1, callers: int = 1, then_head: bool = False, timeout: float = 5
) -> Tuple[Optional[frozenset], ...]:
    """What `callers` images of `app` (the run counting `images` there) get of its tag list;
    with `then_head`, a `HEAD` of `app:1` follows, and must succeed."""

    async def main() -> Tuple[Optional[frozenset], ...]:
        secrets = Secrets()
        session = RegistrySession(
            address, address, http=HttpClient(Routes({}, directories=()), timeout=timeout),
            credentials=CredentialStore({}, files=[]), policy=RetryPolicy(attempts=4, random=lambda: 0.0),
            max_concurrency=8, timeout=timeout, secrets=secrets, sleep=lambda seconds: asyncio.sleep(0),
        )  # fmt: skip
        distribution = Distribution(session)
        distribution.images["app"] = images
        try:
            listed = tuple(await asyncio.gather(*(distribution.digest_tags("app") for _ in range(callers))))
            if then_head:
                assert await distribution.head_manifest("app", "1") is not None
            return listed
        finally:
            await session._http.aclose()

    return asyncio.run(main())


def paths(server: HostileServer) -> List[str]:
    return [f"{r.method} {r.target}" for r in server.seen()]


def test_one_page_names_the_digest_tags_and_is_read_once_for_every_image() -> None:
    with HostileServer.start(tag_list(["1", "latest", SIG, FALLBACK])) as server:
        answers = read(server.address, images=5, callers=5)
    assert answers == (frozenset({SIG, FALLBACK}),) * 5
    assert paths(server) == [f"GET /v2/app/tags/list?n={TAG_PAGE_SIZE}"]


def test_no_tags_at_all() -> None:
    with HostileServer.start(lambda r: Reply(200, [], b'{"name": "app", "tags": null}')) as server:
        assert read(server.address) == (frozenset(),)


def test_3000_tags_are_read_in_3_pages_by_relative_links() -> None:
    tags = [f"v{i:04d}" for i in range(2998)] + [SIG, FALLBACK]
    with HostileServer.start(tag_list(tags)) as server:
        (answer,) = read(server.address)
    assert answer == frozenset({SIG, FALLBACK})
    assert len(paths(server)) == 3
    assert all(path.startswith("GET /v2/app/tags/list?n=1000") for path in paths(server))


def test_a_list_longer_than_the_heads_it_saves_is_not_read_past_them() -> None:
    tags = [f"v{i:05d}" for i in range(TAG_PAGE_SIZE * (MAX_TAG_PAGES + 2))]
    with HostileServer.start(tag_list(tags)) as server:
        assert read(server.address, images=1) == (None,)
        # One image: as many pages as the `HEAD`s it would save.
        assert len(paths(server)) == HEADS_SAVED_PER_IMAGE
    with HostileServer.start(tag_list(tags)) as server:
        assert read(server.address, images=100) == (None,)
        assert len(paths(server)) == MAX_TAG_PAGES


def test_a_list_larger_than_its_byte_bound_is_not_read_past_it() -> None:
    huge = [f"t{i:07d}-" + "x" * 200 for i in range(MAX_TAG_LIST_BYTES // 200)]
    with HostileServer.start(lambda r: Reply(200, [], json.dumps({"name": "app", "tags": huge}).encode())) as server:
        assert read(server.address, images=100) == (None,)
        assert len(paths(server)) == 1


def test_the_byte_bound_is_over_all_pages() -> None:
    # Pages of ~1 MiB each: the fifth crosses 4 MiB.
    tags = [f"t{i:07d}-" + "x" * 1000 for i in range(5000)]
    with HostileServer.start(tag_list(tags)) as server:
        assert read(server.address, images=100) == (None,)
        assert len(paths(server)) == 5


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, [], b"{not json"),
        Reply(200, [], b'["sha256-x"]'),
        Reply(200, [], b'{"name": "app", "tags": [1, 2]}'),
        Reply(200, [], b'{"name": "app", "tags": "sha256-x"}'),
        Reply(200, [], b"[" * 100_000 + b"]" * 100_000),
        Reply(404, [], b'{"errors":[{"code":"NAME_UNKNOWN"}]}'),
        Reply(401, [], b""),
        Reply(403, [], b""),
        Reply(400, [], b'{"errors":[{"code":"PAGINATION_NUMBER_INVALID"}]}'),
    ],
)
def test_anything_but_a_tag_list_means_heads_instead(reply: Reply) -> None:
    with HostileServer.start(lambda r: reply) as server:
        assert read(server.address) == (None,)
        assert len(paths(server)) == 1


def test_a_link_to_another_host_is_not_followed() -> None:
    tags = [f"v{i:04d}" for i in range(1500)] + [SIG]
    with HostileServer.start(tag_list(tags)) as elsewhere:
        with HostileServer.start(tag_list(tags, link=lambda url: f'<{elsewhere.url(url)}>; rel="next"')) as server:
            assert read(server.address) == (None,)
            assert len(paths(server)) == 1
        assert elsewhere.seen() == []


def test_a_link_among_others_and_with_more_parameters() -> None:
    tags = [f"v{i:04d}" for i in range(1500)] + [SIG]
    link = lambda url: f'</v2/app/tags/list?n=1000>; rel="prev", <{url}>; title="more"; rel=next'  # noqa: E731
    with HostileServer.start(tag_list(tags, link=link)) as server:
        assert read(server.address) == (frozenset({SIG}),)
        assert len(paths(server)) == 2


@pytest.mark.parametrize("link", ["<http://[::1>; rel=\"next\"", "<ftp://127.0.0.1/x>; rel=\"next\""])
def test_a_link_that_is_no_url_of_the_registry_is_not_followed(link: str) -> None:
    body = json.dumps({"name": "app", "tags": [SIG]}).encode()
    with HostileServer.start(lambda r: Reply(200, [("Link", link)], body)) as server:
        assert read(server.address) == (None,)
        assert len(paths(server)) == 1


@pytest.mark.parametrize("failure", [Reply(503), Reply(429, [("Retry-After", "3600")]), Hold(10)])
def test_a_list_that_fails_is_asked_once_and_the_registry_is_still_asked_the_rest(failure: object) -> None:
    """The list is an optimisation: never retried, and its failure (an error status, a rate
    limit, no answer in time) stops none of the registry's other requests, which have their
    own retries."""

    def handler(request: Request) -> object:
        return failure if "/tags/list" in request.path else digest_reply("sha256:" + "ab" * 32)

    with HostileServer.start(handler) as server:  # type: ignore[arg-type]
        assert read(server.address, then_head=True, timeout=0.5) == (None,)
        server.stop()  # ends the `Hold`
    assert paths(server) == [f"GET /v2/app/tags/list?n={TAG_PAGE_SIZE}", "HEAD /v2/app/manifests/1"]


# ---------------------------------------------------------------------------------------------
# The referrers API's pages: bounded by entries and bytes as they are read

SUBJECT = "sha256:" + "ab" * 32


def referrers_pages(pages: Sequence[bytes]) -> Callable[[Request], Reply]:
    """A referrers API that answers `pages`, each with a `Link` to the next but the last."""

    def handler(request: Request) -> Reply:
        if request.path != f"/v2/app/referrers/{SUBJECT}":
            return Reply(404)
        number = int(dict(urllib.parse.parse_qsl(request.target.partition("?")[2])).get("page", "0"))
        headers = [("Content-Type", "application/vnd.oci.image.index.v1+json")]
        if number + 1 < len(pages):
            headers.append(("Link", f'</v2/app/referrers/{SUBJECT}?page={number + 1}>; rel="next"'))
        return Reply(200, headers, pages[number])

    return handler


def entries_page(start: int, count: int, padding: int = 0) -> bytes:
    manifests = [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:%064x" % i, "size": 1,
         "artifactType": "application/spdx+json", **({"annotations": {"pad": "x" * padding}} if padding else {})}
        for i in range(start, start + count)
    ]  # fmt: skip
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": manifests}).encode()  # fmt: skip


def referrers_of(address: str) -> Optional[bytes]:
    async def main() -> Optional[bytes]:
        session = RegistrySession(
            address, address, http=HttpClient(Routes({}, directories=()), timeout=5),
            credentials=CredentialStore({}, files=[]), policy=RetryPolicy(attempts=2, random=lambda: 0.0),
            max_concurrency=8, timeout=5, secrets=Secrets(), sleep=lambda seconds: asyncio.sleep(0),
        )  # fmt: skip
        try:
            return await Distribution(session).referrers("app", SUBJECT)
        finally:
            await session._http.aclose()

    return asyncio.run(main())


def test_the_referrers_pages_are_joined_into_one_index() -> None:
    with HostileServer.start(referrers_pages([entries_page(0, 3), entries_page(3, 2)])) as server:
        answer = referrers_of(server.address)
    assert answer is not None
    assert [e.digest for e in index_entries(answer)] == ["sha256:%064x" % i for i in range(5)]
    assert len(server.seen()) == 2


def test_a_referrers_page_beyond_the_bytes_bound_is_refused_unread() -> None:
    """The audit's 16 pages of ~4 MiB: the first is refused as it is read, none follows."""
    page = entries_page(0, 10, padding=MAX_LISTING_BYTES)
    with HostileServer.start(referrers_pages([page] * MAX_REFERRER_PAGES)) as server:
        with pytest.raises(RegistryError, match=f"the referrers of {SUBJECT} in app at .* are larger than "
                                                f"{MAX_LISTING_BYTES} bytes \\(page 1\\): refused"):  # fmt: skip
            referrers_of(server.address)
    assert len(server.seen()) == 1


def test_the_referrers_pages_are_bounded_in_bytes_together() -> None:
    """Pages of 1.5 MiB, each within the bound alone: the third is read to what is left."""
    page = entries_page(0, 10, padding=150_000)
    with HostileServer.start(referrers_pages([page] * MAX_REFERRER_PAGES)) as server:
        with pytest.raises(RegistryError, match=f"larger than {MAX_LISTING_BYTES} bytes \\(page 3\\)"):
            referrers_of(server.address)
    assert len(server.seen()) == 3


def test_the_referrers_pages_are_bounded_in_entries_together() -> None:
    pages = [entries_page(400 * n, 400) for n in range(4)]
    with HostileServer.start(referrers_pages(pages)) as server:
        with pytest.raises(ReferrersError, match=f"list more than {MAX_REFERRERS} manifests \\(page 3\\): refused"):
            referrers_of(server.address)
    assert len(server.seen()) == 3


def test_the_referrers_pages_are_bounded_in_number() -> None:
    pages = [entries_page(n, 1) for n in range(MAX_REFERRER_PAGES + 1)]
    with HostileServer.start(referrers_pages(pages)) as server:
        with pytest.raises(RegistryError, match=f"are more than {MAX_REFERRER_PAGES} pages: refused"):
            referrers_of(server.address)
