"""Tests for docker_mirror_testutil.registries.Traffic and `more_than_heads`: counting and sorting
a run's requests from lines of a real `docker-registry` access log."""

from __future__ import annotations

from docker_mirror_testutil.registries import Traffic, more_than_heads


def access_line(method: str, path: str, status: int = 200) -> str:
    # As docker-registry 2.8 writes them (scripts/start-registry enables its access log).
    return f'127.0.0.1 - - [01/Dec/2026:20:29:40 +0000] "{method} {path} HTTP/1.1" {status} 91 "" "skopeo/1.9.3"'


EARLIER = [access_line("GET", "/v2/"), access_line("GET", "/v2/bench/img00/manifests/1.0")]


def test_counts_only_the_requests_after_before() -> None:
    after = [
        *EARLIER,
        access_line("GET", "/v2/"),
        access_line("HEAD", "/v2/bench/img00/manifests/1.0"),
        access_line("HEAD", "/v2/mirror/bench/img00/manifests/1.0", 404),
        access_line("GET", "/v2/bench/img00/manifests/sha256:" + "a" * 64),
        access_line("HEAD", "/v2/mirror/bench/img00/blobs/sha256:" + "b" * 64, 404),
        access_line("POST", "/v2/mirror/bench/img00/blobs/uploads/", 202),
        access_line("PUT", "/v2/mirror/bench/img00/blobs/uploads/0123?digest=sha256:" + "b" * 64, 201),
        access_line("PUT", "/v2/mirror/bench/img00/manifests/1.0", 201),
    ]
    assert Traffic.between(EARLIER, after) == Traffic(
        requests=8, blob_uploads=2, manifest_puts=1, manifest_gets=1, manifest_heads=2
    )


def test_a_blob_or_tag_list_request_is_no_manifest_request() -> None:
    after = [
        access_line("GET", "/v2/bench/img00/blobs/sha256:" + "b" * 64),
        access_line("HEAD", "/v2/bench/img00/blobs/sha256:" + "b" * 64),
        access_line("GET", "/v2/bench/img00/tags/list"),
    ]
    assert Traffic.between([], after) == Traffic(3, 0, 0)


def test_adds_up_per_field() -> None:
    source = Traffic(requests=4, blob_uploads=0, manifest_puts=0, manifest_gets=2, manifest_heads=1)
    destination = Traffic(requests=5, blob_uploads=2, manifest_puts=1, manifest_gets=0, manifest_heads=3)
    assert source + destination == Traffic(9, 2, 1, 2, 4)


def test_a_no_op_may_head_manifests_and_list_tags_and_referrers_and_nothing_else() -> None:
    allowed = [
        access_line("HEAD", "/v2/bench/img00/manifests/1.0"),
        access_line("GET", "/v2/bench/img00/tags/list?n=1000"),
        access_line("GET", "/v2/bench/img00/referrers/sha256:" + "a" * 64, 404),
    ]
    more = [
        access_line("GET", "/v2/bench/img00/manifests/1.0"),
        access_line("HEAD", "/v2/bench/img00/blobs/sha256:" + "b" * 64),
        access_line("PUT", "/v2/bench/img00/manifests/1.0", 201),
    ]
    assert more_than_heads(allowed + more) == more
