"""What a no-op re-mirror asks each registry, counted exactly from its access log: the probe as
Pants runs it (its own process, the reads copy mode sends: each source and destination tag, and
the referrers of each source image with its destination), after a first mirror copied everything.

Per image at the source: its tag's `HEAD`, then one `HEAD` per cosign tag or fallback tag that
exists; per repository, its tag list (a page per 1,000 tags); per registry, one referrers request
to learn that it has no referrers API. At the destination: each tag's `HEAD`, and for what the
source has, a `HEAD` of it. A registry with the referrers API (`testutil.referrers_proxy`) is
asked for each image's referrers list instead of the fallback tag. `docker-registry` 2.8 answers
a tag list whole; `testutil.tag_paging_proxy` pages it, as other registries do."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import pytest

from docker_mirror.oci.media_types import OCI_MANIFEST
from docker_mirror.probe.mirror_referrers import copy, find
from docker_mirror_testutil import cosign
from docker_mirror_testutil.fault_proxy import FaultProxy, passthrough
from docker_mirror_testutil.oci import digest_tag
from docker_mirror_testutil.probe_locations import location
from docker_mirror_testutil.probe_process import run_probe
from docker_mirror_testutil.pushes import push_image, push_manifest
from docker_mirror_testutil.referrers import attach_spdx_sbom
from docker_mirror_testutil.referrers_proxy import ReferrersProxy
from docker_mirror_testutil.registries import Registry
from docker_mirror_testutil.tag_paging_proxy import TagPagingProxy

_REQUEST = re.compile(r'"(?P<method>[A-Z]+) /v2/(?P<path>\S+) HTTP')
Log = Callable[[], List[str]]


def kinds(lines: Iterable[str]) -> Counter:
    """Requests by method and what they ask for: `HEAD manifest`, `GET tags`, `GET referrers`..."""
    counts: Counter = Counter()
    for line in lines:
        match = _REQUEST.search(line)
        if match is None:
            continue
        path = match["path"]
        kind = next(
            (name for part, name in (("/tags/list", "tags"), ("/referrers/", "referrers"),
                                     ("/manifests/", "manifest"), ("/blobs/", "blob")) if part in path),
            "other",
        )  # fmt: skip
        counts[f"{match['method']} {kind}"] += 1
    return counts


@pytest.fixture(scope="module")
def pair(registries: Callable[..., Registry]) -> Tuple[Registry, Registry]:
    """A source and a destination registry (`docker-registry`, no referrers API), shared by the
    tests of this module, each in repositories of its own."""
    return registries(), registries()


def mirrored(
    source: Registry, destination: Registry, repository: str, count: int, home: Path, *,
    signed: bool = False, sbom: bool = False,
) -> List[str]:
    """`count` images tagged 1, 2, ... at the source, `signed` (a cosign `.sig`) and with an
    `sbom` (an SPDX referrer), mirrored as a first run leaves them: the same images at the
    destination (as the plugin's skopeo copy does) and every referrer copied. Their digests."""
    subjects = []
    key = cosign.generate_key()
    for number in range(1, count + 1):
        label = f"{repository} {number}"
        subject = push_image(source.address, repository, str(number), label)
        assert push_image(destination.address, f"mirror/{repository}", str(number), label) == subject
        if signed:
            cosign.sign(source, repository, subject, key)
        if sbom:
            attach_spdx_sbom(source, repository, subject)  # by the fallback tag, or the API
        subjects.append(subject)
    copy_referrers(source, destination, repository, subjects, home)
    return subjects


def copy_referrers(source: Registry, destination: Registry, repository: str, subjects: Sequence[str], home: Path) -> None:
    """Every referrer of each subject copied, in process."""

    async def all_of_them() -> None:
        src = location(source.address, repository, home)
        dst = location(destination.address, f"mirror/{repository}", home)
        for subject in subjects:
            found = await find(src, subject, [dst])
            result = await copy(src, dst, subject, found.plans[0])
            assert result.outcome == "ok", result

    asyncio.run(all_of_them())


def no_op(
    tmp_path: Path, source: Registry, destination: Registry, repository: str, count: int,
    logs: Optional[Dict[str, Log]] = None,
) -> Dict[str, Any]:
    """The probe's reads for a re-mirror of `count` images, as copy mode sends them: returns its
    result, and by name what each log (by default each registry's access log) gained meanwhile,
    by kind of request."""
    logs = logs or {"source": source.settled_access_log, "destination": destination.settled_access_log}
    before = {name: len(log()) for name, log in logs.items()}
    images = range(1, count + 1)
    run = run_probe(
        tmp_path,
        [f"{source.address}/{repository}:{n}" for n in images]
        + [f"{destination.address}/mirror/{repository}:{n}" for n in images],
        referrers=[
            {"reference": f"{source.address}/{repository}:{n}", "platform": None,
             "destinations": [f"{destination.address}/mirror/{repository}"]}
            for n in images
        ],
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert set(run.outcomes()) == {"ok"}, run.text
    assert [entry["error"] for entry in run.document["referrers"]] == [None] * count, run.text
    asked = {name: kinds(log()[before[name]:]) for name, log in logs.items()}
    return {"result": run.document, **asked}


def plans(result: Dict[str, Any]) -> List[List[Dict[str, Any]]]:
    """The items each image's destination lacks, image by image."""
    return [
        [item for plan in entry["destinations"].values() for item in plan["items"]]
        for entry in result["referrers"]
    ]


@pytest.mark.parametrize("signed", [False, True], ids=["nothing attached", "a .sig only"])
def test_nothing_attached_or_a_signature_only(signed: bool, pair: Tuple[Registry, Registry], tmp_path: Path) -> None:
    source, destination = pair
    n, repository = 5, f"{'sig' if signed else 'none'}/app"
    mirrored(source, destination, repository, n, tmp_path, signed=signed)
    asked = no_op(tmp_path, source, destination, repository, n)
    assert plans(asked["result"]) == [[]] * n
    # Each image's tag (and `.sig` tag); the tag list; learning there is no referrers API.
    heads = (2 if signed else 1) * n
    assert asked["source"] == Counter({"HEAD manifest": heads, "GET tags": 1, "GET referrers": 1})
    assert asked["destination"] == Counter({"HEAD manifest": heads})


def test_30_images_with_a_signature_and_an_sbom_cost_at_most_4_requests_each(
    pair: Tuple[Registry, Registry], tmp_path: Path
) -> None:
    source, destination = pair
    n = 30
    mirrored(source, destination, "both/app", n, tmp_path, signed=True, sbom=True)
    asked = no_op(tmp_path, source, destination, "both/app", n)
    assert plans(asked["result"]) == [[]] * n
    assert [entry["found"] for entry in asked["result"]["referrers"]] == [{"signature": 1}] * n
    # Each image's tag, `.sig` and fallback tag; no manifest GET.
    assert asked["source"] == Counter({"HEAD manifest": 3 * n, "GET tags": 1, "GET referrers": 1})
    assert sum(asked["source"].values()) <= 4 * n
    # Each tag, the `.sig` tag and the source's listing by its digest.
    assert asked["destination"] == Counter({"HEAD manifest": 3 * n})


def test_a_signature_added_upstream_after_the_last_run_still_arrives(
    pair: Tuple[Registry, Registry], tmp_path: Path
) -> None:
    source, destination = pair
    n = 3
    subjects = mirrored(source, destination, "later/app", n, tmp_path)
    assert plans(no_op(tmp_path, source, destination, "later/app", n)["result"]) == [[]] * n
    signature = cosign.sign(source, "later/app", subjects[1], cosign.generate_key())
    again = no_op(tmp_path, source, destination, "later/app", n)
    tag = digest_tag(subjects[1], "sig")
    assert plans(again["result"]) == [
        [], [{"kind": "signature", "digest": signature, "media_type": OCI_MANIFEST, "tag": tag}], []
    ]
    # This run's tag list names the new `.sig` tag: its HEAD at the source; at the destination,
    # the tag's and (the tag not serving it) the source's manifest's by its digest.
    assert again["source"] == Counter({"HEAD manifest": n + 1, "GET tags": 1, "GET referrers": 1})
    assert again["destination"] == Counter({"HEAD manifest": n + 2})
    copy_referrers(source, destination, "later/app", subjects, tmp_path)
    assert destination.manifest_digest("mirror/later/app", tag) == signature


@pytest.fixture(scope="module")
def many_tags(pair: Tuple[Registry, Registry], tmp_path_factory: pytest.TempPathFactory) -> str:
    """`many/app`, a repository of 3,000 tags at the source: one image (tag 1, mirrored) and
    2,999 more tags of it."""
    source, destination = pair
    (subject,) = mirrored(source, destination, "many/app", 1, tmp_path_factory.mktemp("home"))
    manifest, media_type = source.manifest("many/app", subject)
    for number in range(2, 3001):
        push_manifest(source.address, "many/app", f"v{number:04d}", manifest, media_type)
    return "many/app"


def proxied(proxy: FaultProxy, registry: Registry) -> Log:
    """The requests that reached `proxy` (it answers some itself), as access-log lines."""

    def log() -> List[str]:
        registry.settled_access_log()  # every request passed on has been answered
        return [f'"{r.method} {r.path} HTTP' for r in proxy.requests()]

    return log


@pytest.mark.parametrize(
    "page_size, tag_lists, heads",
    [
        # docker-registry 2.8 answers the whole list at once, ignoring `n`: one request.
        (None, 1, 1),
        # 1,000 tags a page, following the `Link`s: 3 pages, within the 4 that the image's
        # `HEAD`s (.sig, .att, .sbom, fallback) would cost.
        (1000, 3, 1),
        # A registry that caps pages at 500: the 6 pages would cost more than those `HEAD`s, so
        # the list is read no further than 4 pages, and the image's tags get their `HEAD`s.
        (500, 4, 1 + 4),
    ],
)
def test_a_repository_of_3000_tags(
    page_size: Optional[int], tag_lists: int, heads: int, many_tags: str,
    pair: Tuple[Registry, Registry], tmp_path: Path,
) -> None:  # fmt: skip
    source, destination = pair
    if page_size is None:
        asked = no_op(tmp_path, source, destination, many_tags, 1)
    else:
        with TagPagingProxy.start(source.address, passthrough()) as paging:
            paging.page_size = page_size
            logs = {"source": proxied(paging, source)}
            asked = no_op(tmp_path, paging.as_registry(source), destination, many_tags, 1, logs)
    assert plans(asked["result"]) == [[]]
    assert asked["source"] == Counter({"HEAD manifest": heads, "GET tags": tag_lists, "GET referrers": 1})


@pytest.mark.parametrize("attached", [False, True])
def test_a_registry_with_the_referrers_api(
    attached: bool, registries: Callable[..., Registry], tmp_path: Path
) -> None:
    """Source and destination with the referrers API: each image's referrers list, as before
    (the tag list still names its cosign tags); no fallback tag. Counted at the proxies, which
    serve the referrers API themselves and pass everything else on."""
    upstream_registry, mirror_registry = registries(), registries()
    with ReferrersProxy.start(upstream_registry.address, passthrough()) as upstream_api, \
            ReferrersProxy.start(mirror_registry.address, passthrough()) as mirror_api:  # fmt: skip
        upstream, mirror = upstream_api.as_registry(upstream_registry), mirror_api.as_registry(mirror_registry)
        n = 4
        subjects = mirrored(upstream, mirror, "api/app", n, tmp_path, signed=attached, sbom=attached)
        assert digest_tag(subjects[0]) not in upstream_registry.tags("api/app")

        asked = no_op(tmp_path, upstream, mirror, "api/app", n,
                      {"source": proxied(upstream_api, upstream_registry),
                       "destination": proxied(mirror_api, mirror_registry)})  # fmt: skip
        assert plans(asked["result"]) == [[]] * n
        if attached:
            # Each image's tag and `.sig`, and its referrers list.
            assert asked["source"] == Counter({"HEAD manifest": 2 * n, "GET referrers": n, "GET tags": 1})
            # Each tag, the `.sig` tag, and the source's listing by its digest.
            assert asked["destination"] == Counter({"HEAD manifest": 3 * n})
        else:
            assert asked["source"] == Counter({"HEAD manifest": n, "GET referrers": n, "GET tags": 1})
            assert asked["destination"] == Counter({"HEAD manifest": n})
