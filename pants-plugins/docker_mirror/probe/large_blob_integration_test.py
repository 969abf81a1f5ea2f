"""A large layer copied by the probe process between real registries on loopback, its peak RSS
as the probe reports it (the kernel's `VmHWM`): blobs are streamed, never held whole. A 1 GiB
layer goes in chunks (above `CHUNKED_ABOVE`), a 400 MiB one in one monolithic `PUT`. About a
minute on a 2-core machine; part of the probe's integration tests, which CI runs."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
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


def test_a_large_layer_goes_into_an_archive_and_out_of_it_in_bounded_memory(
    registries: Tuple[Registry, Registry], tmp_path: Path
) -> None:
    """The air gap's three steps, each its own probe process: the export into the blob store,
    the tar, and the copy from the tar to a registry; the probe's peak RSS in each stays far
    below the 400 MiB layer."""
    source, destination = registries
    repository = "large/archived"
    subject, layer = push_large_image(source.address, repository, 400 * MIB)
    store, tar = tmp_path / "store", tmp_path / "archive.tar"
    exported = run_probe(tmp_path, [], export={"store": str(store), "images": [{"reference": f"{source.address}/{repository}:1"}]})
    assert exported.code == 0, exported.stderr
    assert exported.document["export"]["images"][0]["digest"] == subject
    (tmp_path / "index.json").write_text(exported.document["export"]["index"])

    started = time.monotonic()
    # `wait4`: this child's own peak RSS (KiB on Linux).
    written = subprocess.Popen(
        [sys.executable, "-m", "docker_mirror.probe", "tar", str(tmp_path / "index.json"), str(store), str(tar)],
        stdout=subprocess.DEVNULL, env={"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )  # fmt: skip
    _, status, usage = os.wait4(written.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    tar_rss, tar_seconds = usage.ru_maxrss * 1024, time.monotonic() - started
    assert tar.stat().st_size > 400 * MIB

    name = f"{source.address}/{repository}"
    loaded = run_probe(tmp_path, [], archive=str(tar), archived=[f"{source.address}/{repository}"], copy={
        "source": name, "subject": subject, "destination": f"{destination.address}/mirror/{repository}",
        "items": [], "listing": None, "tags": [{"tag": "1", "seen": None}]})  # fmt: skip
    assert loaded.code == 0, loaded.stderr
    assert [t["outcome"] for t in loaded.document["copy"]["tags"]] == ["copied"], loaded.document
    assert destination.manifest_digest(f"mirror/{repository}", "1") == subject
    print(
        f"400 MiB layer: export peak RSS {exported.peak_rss_kib / 1e3:.1f} MB ({exported.elapsed:.1f} s), "
        f"tar {tar_rss / 1e6:.1f} MB ({tar_seconds:.1f} s), from the tar {loaded.peak_rss_kib / 1e3:.1f} MB "
        f"({loaded.elapsed:.1f} s)"
    )
    for rss in (exported.peak_rss_kib * 1024, tar_rss, loaded.peak_rss_kib * 1024):
        assert rss < MAX_RSS_BYTES, f"peak RSS {rss / 1e6:.1f} MB"
    assert layer
