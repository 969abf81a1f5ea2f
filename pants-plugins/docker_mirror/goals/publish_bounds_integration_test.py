"""End to end: the bounds a copy keeps, through the real `./pants publish` and the processes Pants
runs, each process's peak memory read from the result it wrote (`--keep-sandboxes=always`):

- a layer of 300 MiB is streamed, never held whole: the copy process stays under 150 MB;
- a hostile source whose referrers API answers 16 pages of ~4 MiB for each of 4 images: the one
  process that reads them stays under its memory bound, and each image fails, saying why;
- a hostile source with 1,000 referrers of 20 manifests each: the copy stops at its bound of
  manifests, long before its deadline, says what it wrote, and does not write the tag;
- a hostile source with 32 Sigstore bundles of 8,500 signatures by a stranger's key, under
  `require_signature`: the image is refused in well under a second of the copy's CPU (before the
  bound: about 20 s per key), and nothing is written.

The probe's own tests hold the same bounds on the probe alone (`probe/large_blob_integration_test.py`,
`probe/hostile_referrers_integration_test.py`)."""

from __future__ import annotations

import http.client
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, Iterator

import pytest

from docker_mirror.oci.probe_protocol import ProbeResult, parse_result
from docker_mirror_testutil.cosign import COSIGN_SIGN_PREDICATE, generate_key, public_key_pem, stranger_bundle
from docker_mirror_testutil.hostile_registry import HostileServer
from docker_mirror_testutil.hostile_source import Source, hostile_page
from docker_mirror_testutil.pants_repo import COPY_BUILD, NO_DOCKER, PantsRepo, PantsResult, kept_sandboxes
from docker_mirror_testutil.pushes import MIB, push_large_image
from docker_mirror_testutil.registries import Registry

KEEP = "--keep-sandboxes=always"
# `probe/large_blob_integration_test.py`'s bound: a copy's memory does not grow with the blob.
COPY_RSS_BOUND = 150 * 1000 * 1000
# `probe/hostile_referrers_integration_test.py`'s: the interpreter, and one page of 4 MiB per image.
READ_RSS_BOUND = 160 * MIB
# The probe's bounds (`probe/referrers.py`): bytes per listing page, manifests copied per image.
MAX_LISTING_BYTES = 4 * MIB
MAX_COPY_MANIFESTS = 1024


@pytest.fixture
def sandboxes() -> Iterator[Dict[str, Path]]:
    """The sandboxes a test's runs kept, removed afterwards."""
    kept: Dict[str, Path] = {}
    yield kept
    for path in kept.values():
        shutil.rmtree(path, ignore_errors=True)


def publish_keeping(pants_repo: PantsRepo, mirror: Registry, kept: Dict[str, Path]) -> PantsResult:
    result = pants_repo.pants(KEEP, "publish", "src::", registry=mirror, env=NO_DOCKER)
    kept.update(kept_sandboxes(result.stderr))
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result
    return result


def probe_result(kept: Dict[str, Path], starting: str) -> ProbeResult:
    """The result of the one kept probe process whose description starts so."""
    (path,) = [path for description, path in kept.items() if description.startswith(starting)]
    return parse_result((path / "probe-result.json").read_bytes())


def peak_rss(kept: Dict[str, Path], starting: str) -> int:
    """The peak resident memory, in bytes, of that process."""
    peak = probe_result(kept, starting).peak_rss_kib
    assert peak is not None
    return peak * 1024


def test_a_large_layer_is_streamed_in_bounded_memory(
    registries: Callable[..., Registry], pants_repo: PantsRepo, sandboxes: Dict[str, Path]
) -> None:
    upstream, mirror = registries(), registries()
    size = 300 * MIB
    subject, layer = push_large_image(upstream.address, "big/app", size)
    pants_repo.write({"src/BUILD": COPY_BUILD, "src/images.txt": f"{upstream.address}/big/app:1\n"})

    result = publish_keeping(pants_repo, mirror, sandboxes)

    assert result.returncode == 0, result
    assert mirror.manifest_digest("mirror/big/app", "1") == subject
    head = http.client.HTTPConnection(mirror.address, timeout=60)
    head.request("HEAD", f"/v2/mirror/big/app/blobs/{layer}")
    answer = head.getresponse()
    assert (answer.status, answer.headers["Content-Length"]) == (200, str(size))
    rss = peak_rss(sandboxes, "Copying ")
    print(f"{size // MIB} MiB layer through ./pants publish: the copy's peak RSS {rss / 1e6:.1f} MB")
    assert rss < COPY_RSS_BOUND, f"peak RSS {rss / 1e6:.1f} MB"


def test_referrers_api_pages_of_4_mib_fail_their_images_within_the_memory_bound(
    registries: Callable[..., Registry], pants_repo: PantsRepo, sandboxes: Dict[str, Path]
) -> None:
    source = Source()
    source.pages = [hostile_page(MAX_LISTING_BYTES - 4096)] * 16
    mirror = registries()
    with HostileServer.start(source) as server:
        digests = {tag: source.image(tag, f"image {tag}") for tag in "1234"}
        pants_repo.write(
            {"src/BUILD": COPY_BUILD, "src/images.txt": "".join(f"{server.address}/team/app:{tag}\n" for tag in digests)}
        )
        result = publish_keeping(pants_repo, mirror, sandboxes)
        pages_read = [r for r in server.seen() if "/referrers/" in r.path]

    assert result.returncode != 0, result
    failed = sorted(line for line in result.stderr.splitlines() if line.startswith("✕"))
    assert len(failed) == 4, result
    for tag, line in zip(sorted(digests), failed):
        assert line.startswith(f"✕ {mirror.address}/mirror/team/app:{tag} "), line
        assert f"the referrers of {digests[tag]} in team/app at {server.address} (page 1) lists more than 1000" in line, line
    # The first page of each image, and no other.
    assert sorted(r.path.rsplit("/", 1)[1] for r in pages_read) == sorted(digests.values()), pages_read
    assert mirror.repositories() == []
    rss = peak_rss(sandboxes, "Reading ")
    print(f"4 images' referrers pages of 4 MiB: the reading process's peak RSS {rss / MIB:.1f} MiB")
    assert rss < READ_RSS_BOUND, f"peak RSS {rss / MIB:.1f} MiB"


def test_a_thousand_referrers_of_many_manifests_stop_at_the_bound_and_the_tag_is_not_written(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    source = Source()
    mirror = registries()
    subject = source.image("1", "the image")
    children = 20
    source.many_referrers(subject, 1000, children)
    with HostileServer.start(source) as server:
        pants_repo.write({"src/BUILD": COPY_BUILD, "src/images.txt": f"{server.address}/team/app:1\n"})
        started = time.monotonic()
        result = pants_repo.pants("publish", "src::", registry=mirror, env=NO_DOCKER)
        elapsed = time.monotonic() - started

    assert result.returncode != 0, result
    (failed,) = [line for line in result.stderr.splitlines() if line.startswith("✕")]
    whole = MAX_COPY_MANIFESTS // (children + 1)
    written = whole * (children + 1)
    assert failed.startswith(f"✕ {mirror.address}/mirror/team/app:1 "), failed
    assert f"are more than the {MAX_COPY_MANIFESTS} manifests copied per image: stopped before" in failed, failed
    assert (f"written at {mirror.address}/mirror/team/app before it stopped: {written} manifests, 1 blobs (2 bytes), "
            f"{whole} of 1000 referrers whole") in failed, failed  # fmt: skip
    assert mirror.manifest_digest("mirror/team/app", "1") is None
    puts = [line for line in mirror.settled_access_log() if '"PUT /v2/mirror/team/app/manifests/' in line]
    # The referrers' manifests only: a single-platform image's manifest is written with its tag, last.
    assert len(puts) == written, len(puts)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result
    assert elapsed < 180, elapsed


def test_32_bundles_of_non_verifying_signatures_are_refused_within_a_bound_of_cpu(
    registries: Callable[..., Registry], pants_repo: PantsRepo, sandboxes: Dict[str, Path]
) -> None:
    source = Source()
    mirror = registries()
    subject = source.image("1", "the image")
    predicate = {"dev.sigstore.bundle.predicateType": COSIGN_SIGN_PREDICATE}
    source.pages = [source.bundle_listing(subject, stranger_bundle(subject, 8500), 32, predicate)]
    with HostileServer.start(source) as server:
        pants_repo.write({
            "src/BUILD": COPY_BUILD.replace("method='copy'", "method='copy', require_signature=['cosign.pub']"),
            "src/images.txt": f"{server.address}/team/app:1\n",
            "src/cosign.pub": public_key_pem(generate_key()).decode(),
        })  # fmt: skip
        result = publish_keeping(pants_repo, mirror, sandboxes)

    assert result.returncode != 0, result
    (failed,) = [line for line in result.stderr.splitlines() if line.startswith("✕")]
    assert failed.startswith(f"✕ {mirror.address}/mirror/team/app:1 failed for `require_signature`: "), failed
    assert "128 signatures found, none verifies against src/cosign.pub" in failed, failed
    assert mirror.repositories() == []
    cpu = probe_result(sandboxes, "Copying ").cpu_seconds
    assert cpu is not None
    print(f"32 bundles of 8,500 signatures: the copy process's CPU {cpu:.2f} s")
    assert cpu < 5, cpu
