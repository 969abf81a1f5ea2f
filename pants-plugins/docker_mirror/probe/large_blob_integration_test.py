"""A large layer copied by the probe process between real registries on loopback, its peak RSS
as the probe reports it (the kernel's `VmHWM`): blobs are streamed, never held whole. A 1 GiB
layer goes in chunks (above `CHUNKED_ABOVE`), a 400 MiB one in one monolithic `PUT`. About a
minute on a 2-core machine; part of the probe's integration tests, which CI runs."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from docker_mirror.probe.distribution import CHUNKED_ABOVE
from docker_mirror_testutil.probe_process import run_probe
from docker_mirror_testutil.pushes import push_large_image
from docker_mirror_testutil.registries import Registry, start_registry

MIB = 1024 * 1024
MAX_RSS_BYTES = 150 * 1000 * 1000


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Registry, Registry]]:
    source = start_registry(tmp_path_factory.mktemp("source"))
    destination = start_registry(tmp_path_factory.mktemp("destination"))
    try:
        yield source, destination
    finally:
        source.stop()
        destination.stop()


def copy_measured(tmp_path: Path, source: str, subject: str, destination: str) -> Tuple[dict, int, float]:
    """Runs the probe on a copy request; (its copy result, its own peak RSS in bytes, seconds)."""
    run = run_probe(tmp_path, [], copy={"source": source, "subject": subject, "destination": destination,
                                        "items": [], "listing": None, "tags": [{"tag": "1", "seen": None}]})  # fmt: skip
    assert run.code == 0, run.stderr
    return run.document["copy"], run.peak_rss_kib * 1024, run.elapsed


@pytest.mark.parametrize("size", [1024 * MIB, 400 * MIB], ids=["1GiB-chunked", "400MiB-monolithic"])
def test_a_large_layer_is_streamed_in_bounded_memory(
    size: int, registries: Tuple[Registry, Registry], tmp_path: Path
) -> None:
    source, destination = registries
    assert (size > CHUNKED_ABOVE) == (size == 1024 * MIB)
    repository = f"large/{size // MIB}"
    subject, layer = push_large_image(source.address, repository, size)
    before = len(destination.settled_access_log())
    result, rss, elapsed = copy_measured(tmp_path, f"{source.address}/{repository}", subject,
                                         f"{destination.address}/mirror/{repository}")  # fmt: skip
    print(f"{size // MIB} MiB layer: peak RSS {rss / 1e6:.1f} MB, {elapsed:.1f} s")
    assert [t["outcome"] for t in result["tags"]] == ["copied"], result
    assert destination.manifest_digest(f"mirror/{repository}", "1") == subject
    head = http.client.HTTPConnection(destination.address, timeout=60)
    head.request("HEAD", f"/v2/mirror/{repository}/blobs/{layer}")
    answer = head.getresponse()
    assert (answer.status, answer.headers["Docker-Content-Digest"], answer.headers["Content-Length"]) == (
        200, layer, str(size))
    log = destination.settled_access_log()[before:]
    patches = [line for line in log if '"PATCH /v2/' in line]
    assert bool(patches) == (size > CHUNKED_ABOVE)
    assert rss < MAX_RSS_BYTES, f"peak RSS {rss / 1e6:.1f} MB"
