"""A large layer copied by the probe process between real registries on loopback, its peak RSS
read from the kernel (`wait4`'s `ru_maxrss`): blobs are streamed, never held whole. A 1 GiB
layer goes in chunks (above `CHUNKED_ABOVE`), a 400 MiB one in one monolithic `PUT`. About a
minute on a 2-core machine; part of the probe's integration tests, which CI runs."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from docker_mirror.probe.distribution import CHUNKED_ABOVE
from docker_mirror_testutil.pushes import push_blob, push_manifest
from docker_mirror_testutil.registries import Registry, start_registry

MIB = 1024 * 1024
MAX_RSS_BYTES = 150 * 1000 * 1000
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Registry, Registry]]:
    source = start_registry(tmp_path_factory.mktemp("source"))
    destination = start_registry(tmp_path_factory.mktemp("destination"))
    try:
        yield source, destination
    finally:
        source.stop()
        destination.stop()


def push_large_image(registry: Registry, repository: str, size: int) -> Tuple[str, str]:
    """An image whose one layer is `size` bytes, streamed up (never whole in this process);
    (the manifest's digest, the layer's)."""
    block = os.urandom(MIB)
    hashed = hashlib.sha256()
    for start in range(0, size, MIB):
        hashed.update(block[: min(MIB, size - start)])
    digest = f"sha256:{hashed.hexdigest()}"
    connection = http.client.HTTPConnection(registry.address, timeout=300)
    connection.request("POST", f"/v2/{repository}/blobs/uploads/", body=b"")
    answer = connection.getresponse()
    answer.read()
    location = str(answer.headers["Location"])
    separator = "&" if "?" in location else "?"

    def body() -> Iterator[bytes]:
        for start in range(0, size, MIB):
            yield block[: min(MIB, size - start)]

    connection.request("PUT", f"{location}{separator}digest={digest}", body=body(),
                       headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})  # fmt: skip
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 201, answer.status
    connection.close()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                   "digest": push_blob(registry.address, repository, config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": size, "digest": digest}],
    }).encode()  # fmt: skip
    return push_manifest(registry.address, repository, "1", manifest, OCI_MANIFEST), digest


def copy_measured(tmp_path: Path, source: str, subject: str, destination: str) -> Tuple[dict, int, float]:
    """Runs the probe on a copy request; (its copy result, its peak RSS in bytes, seconds)."""
    request = {"source": source, "subject": subject, "destination": destination, "items": [], "listing": None,
               "tags": [{"tag": "1", "seen": None}]}  # fmt: skip
    request_file, result_file = tmp_path / "request.json", tmp_path / "result.json"
    request_file.write_text(json.dumps({"version": 1, "requests": [], "copy": request}))
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "XDG_RUNTIME_DIR": str(home),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # fmt: skip
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "docker_mirror.probe", str(request_file), str(result_file)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    return json.loads(result_file.read_text())["copy"], usage.ru_maxrss * 1024, elapsed


@pytest.mark.parametrize("size", [1024 * MIB, 400 * MIB], ids=["1GiB-chunked", "400MiB-monolithic"])
def test_a_large_layer_is_streamed_in_bounded_memory(
    size: int, registries: Tuple[Registry, Registry], tmp_path: Path
) -> None:
    source, destination = registries
    assert (size > CHUNKED_ABOVE) == (size == 1024 * MIB)
    repository = f"large/{size // MIB}"
    subject, layer = push_large_image(source, repository, size)
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
