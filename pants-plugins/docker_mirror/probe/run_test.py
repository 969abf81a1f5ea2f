"""A run's reads of referrers share each source repository's tag list: read once, whatever the
number of images there, and paged no further than the `HEAD`s it saves them. Real HTTP to a
scripted registry on loopback (`testutil/hostile_registry.py`)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import re
import urllib.parse
from collections import Counter
from typing import List

import pytest

from docker_mirror.oci.media_types import OCI_MANIFEST
from docker_mirror.oci.probe_protocol import ProbeResult, parse_request
from docker_mirror.probe.distribution import HEADS_SAVED_PER_IMAGE
from docker_mirror.probe.run import answer, copy_deadline_seconds, quietly
from docker_mirror_testutil.hostile_registry import Answer, HostileServer, Reply, Request

DIGESTS = {str(n): "sha256:" + f"{n:02d}" * 32 for n in range(1, 4)}
SIG = f"sha256-{DIGESTS['2'][7:]}.sig"
SIG_DIGEST = "sha256:" + "ee" * 32


def registry(endless: bool = False) -> HostileServer:
    """`one/app` with tags 1 to 3 (2 signed), `two/app` with tag 1; no referrers API. With
    `endless`, `one/app`'s tag list pages forever."""

    def handler(request: Request) -> Reply:
        path = request.path
        if path.endswith("/tags/list"):
            if endless:
                page = int(dict(urllib.parse.parse_qsl(request.target.partition("?")[2])).get("last", "0"))
                body = json.dumps({"name": "one/app", "tags": [str(page + 1)]}).encode()
                return Reply(200, [("Link", f'<{path}?n=1000&last={page + 1}>; rel="next"')], body)
            tags = ["1", "2", "3", SIG] if path.startswith("/v2/one/") else ["1"]
            return Reply(200, [("Content-Type", "application/json")], json.dumps({"tags": tags}).encode())
        name, _, reference = path[len("/v2/"):].partition("/manifests/")
        digest = DIGESTS.get(reference) or (SIG_DIGEST if reference == SIG and name == "one/app" else None)
        if digest is None:
            return Reply(404)
        return Reply(200, [("Docker-Content-Digest", digest),
                           ("Content-Type", "application/vnd.oci.image.manifest.v1+json")])  # fmt: skip

    return HostileServer.start(handler)


def run(server: HostileServer, images: List[str]) -> ProbeResult:
    request = parse_request({
        "version": 1,
        "requests": [{"reference": f"{server.address}/{image}"} for image in images],
        "referrers": [{"reference": f"{server.address}/{image}", "platform": None, "destinations": []}
                      for image in images],
    })  # fmt: skip
    return asyncio.run(answer(request, env={}))


def asked(server: HostileServer) -> Counter:
    kinds: Counter = Counter()
    for request in server.seen():
        if "/referrers/" in request.path:  # whichever image's comes first
            kinds["GET referrers"] += 1
            continue
        kind = "tags" if "/tags/list" in request.path else "manifest"
        kinds[f"{request.method} {request.path.split('/')[2]} {kind}"] += 1
    return kinds


def test_each_repository_is_listed_once_for_all_its_images() -> None:
    with registry() as server:
        result = run(server, ["one/app:1", "one/app:2", "one/app:3", "two/app:1"])
    assert [r.error for r in result.referrers] == [None] * 4
    assert [dict(r.found) for r in result.referrers] == [{}, {"signature": 1}, {}, {}]
    assert asked(server) == Counter({
        "HEAD one manifest": 3 + 1,  # its 3 tags, and 2's `.sig`
        "HEAD two manifest": 1,
        "GET one tags": 1,
        "GET two tags": 1,
        "GET referrers": 1,  # learning there is no referrers API, once for the registry
    })  # fmt: skip


def test_a_list_is_paged_no_further_than_the_heads_its_images_would_cost() -> None:
    with registry(endless=True) as server:
        result = run(server, ["one/app:1", "one/app:2"])
    assert [r.error for r in result.referrers] == [None, None]
    assert asked(server) == Counter({
        "GET one tags": 2 * HEADS_SAVED_PER_IMAGE,
        # Past the bound: each image's tag, and its cosign and fallback tags.
        "HEAD one manifest": 2 + 2 * HEADS_SAVED_PER_IMAGE,
        "GET referrers": 1,
    })  # fmt: skip


def test_a_copy_stops_by_itself_before_the_runs_deadline() -> None:
    """10% of the deadline before it, at least 5 s, or half the deadline if that is shorter."""
    assert copy_deadline_seconds(600) == 540
    assert copy_deadline_seconds(30) == 25
    assert copy_deadline_seconds(4) == 2


def copy_run(server: HostileServer, deadline: float, **copy: object) -> ProbeResult:
    request = parse_request({
        "version": 1, "deadline_seconds": deadline,
        "copy": {"source": f"{server.address}/one/app", "subject": DIGESTS["1"],
                 "destination": f"{server.address}/mirror/app", "tags": [{"tag": "1", "seen": None},
                                                                           {"tag": "2", "seen": None}], **copy},
    })  # fmt: skip
    return asyncio.run(answer(request, env={}))


def test_a_copy_past_the_deadline_fails_every_tag_as_unreachable() -> None:
    from docker_mirror_testutil.hostile_registry import Hold

    with HostileServer.start(lambda request: Hold(30)) as server:
        result = copy_run(server, 1)
    assert result.copy is not None and (result.copy.outcome, result.copy.error_kind) == ("error", "unreachable")
    assert [(t.tag, t.outcome, t.error_kind) for t in result.copy.tags] == [
        ("1", "failed", "unreachable"), ("2", "failed", "unreachable")]
    assert all("deadline of 1 s" in (t.message or "") for t in result.copy.tags)


def test_a_copy_that_cannot_start_attempts_no_tag() -> None:
    with registry() as server:
        result = copy_run(server, 10, require_signature=[{"name": "keys/bad.pub", "pem": "not a key"}])
    assert result.copy is not None and result.copy.outcome == "error"
    assert [(t.tag, t.outcome) for t in result.copy.tags] == [("1", "not_attempted"), ("2", "not_attempted")]
    assert server.seen() == []


def test_a_copy_cut_by_the_deadline_says_what_was_under_way() -> None:
    """Both blob uploads held past the run's deadline: the message names what was under way (the
    first begun, and how many more), never an upload session's URL."""
    from docker_mirror_testutil.hostile_registry import Hold

    def digest_of(data: bytes) -> str:
        return f"sha256:{hashlib.sha256(data).hexdigest()}"

    blobs = {digest_of(data): data for data in (b"{}", b"a layer")}
    config, layer = blobs
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 7}],
    }).encode()  # fmt: skip
    subject = digest_of(manifest)

    def handler(request: Request) -> Answer:
        if request.method == "PUT":
            return Hold(30)
        if request.method == "POST":
            return Reply(202, [("Location", "/v2/mirror/app/blobs/uploads/1?_state=c2lnbmVk")])
        if request.path.startswith("/v2/mirror/"):
            return Reply(404)
        if "/manifests/" in request.path:
            return Reply(200, [("Docker-Content-Digest", subject), ("Content-Type", OCI_MANIFEST)], manifest)
        return Reply(200, body=blobs[request.path.rsplit("/", 1)[1]])

    with HostileServer.start(handler) as server:
        result = copy_run(server, 2, subject=subject)
    assert result.copy is not None and result.copy.error_kind == "unreachable"
    message = result.copy.tags[0].message or ""
    assert re.fullmatch(
        rf"no answer within the probe's deadline of 2 s, while uploading blob sha256:[0-9a-f]{{12}} to "
        rf"{re.escape(server.address)}/mirror/app and 1 more", message
    ), message


def _leave_a_lost_connection() -> None:
    """A future holding a connection loss that nobody awaits, collected: what aiohttp leaves
    when a registry answers and closes before reading a body."""
    future = asyncio.get_running_loop().create_future()
    future.set_exception(ConnectionError("Connection lost"))
    del future
    gc.collect()


def test_a_connection_loss_nobody_awaited_is_not_printed(caplog: pytest.LogCaptureFixture) -> None:
    async def work() -> None:
        _leave_a_lost_connection()

    asyncio.run(work())  # asyncio's own handler: it logs it
    assert "Future exception was never retrieved" in caplog.text
    caplog.clear()
    asyncio.run(quietly(work()))
    assert caplog.text == ""


def test_other_unhandled_errors_are_still_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def work() -> None:
        future = asyncio.get_running_loop().create_future()
        future.set_exception(ValueError("a bug"))
        del future
        gc.collect()

    asyncio.run(quietly(work()))
    assert "Future exception was never retrieved" in caplog.text and "a bug" in caplog.text
