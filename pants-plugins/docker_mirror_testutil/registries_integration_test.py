"""`scripts/start-registry` and `Registry`, run for real: every registry is the only process on
its own loopback port, a port someone else holds is refused rather than adopted, and a stopped
registry comes back on its own port, with its images and its authentication, or not at all."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import pytest
from docker_mirror_testutil.images import push_oci_image
from docker_mirror_testutil.machine import SCRIPTS, require_skopeo
from docker_mirror_testutil.oci import OCI_CONFIG
from docker_mirror_testutil.registries import Registry, htpasswd_entry, start_registry
from docker_mirror.oci.manifests import OCI_MANIFEST


class _FakeRegistry(http.server.BaseHTTPRequestHandler):
    """Answers every request as a registry's `/v2/` does, naming itself in a header."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("X-Fake-Registry", "yes")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Holder:
    """Something that holds a loopback port: an HTTP server answering like a registry, or a
    socket that listens and never answers."""

    def __init__(self, kind: str, port: int = 0) -> None:
        self.kind = kind
        if kind == "http":
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _FakeRegistry)
            self.port = self.server.server_address[1]
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
            self.thread.start()
        else:
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", port))
            self.sock.listen()
            self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        if self.kind == "http":
            self.server.shutdown()
            self.server.server_close()
        else:
            self.sock.close()


@pytest.fixture
def stop_afterwards() -> Iterator[list[Registry]]:
    started: list[Registry] = []
    yield started
    for registry in started:
        registry.stop()


def _start_registry_script(port: int, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPTS / "start-registry", str(port), str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _answers(address: str) -> bool:
    try:
        urllib.request.urlopen(f"http://{address}/v2/", timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def test_registries_started_at_once_each_answer_on_their_own_port(
    tmp_path: Path, stop_afterwards: list[Registry]
) -> None:
    with ThreadPoolExecutor(4) as pool:
        stop_afterwards += pool.map(lambda i: start_registry(tmp_path / f"r{i}"), range(4))

    assert len({registry.address for registry in stop_afterwards}) == 4
    # Each address is answered by the process that logs to that registry's own state dir.
    markers = {}
    for registry in stop_afterwards:
        markers[registry.address] = uuid.uuid4().hex
        urllib.request.urlopen(
            f"http://{registry.address}/v2/_catalog?last={markers[registry.address]}", timeout=10
        ).close()
    for registry in stop_afterwards:
        log = "\n".join(registry.settled_access_log())
        assert [a for a, marker in markers.items() if marker in log] == [registry.address]


@pytest.mark.parametrize("kind", ["http", "listen"])
def test_a_port_held_by_another_process_is_refused_not_adopted(
    kind: str, tmp_path: Path
) -> None:
    holder = _Holder(kind)
    try:
        result = _start_registry_script(holder.port, tmp_path / "registry")

        assert result.returncode != 0, result
        assert f"127.0.0.1:{holder.port} is held by another process" in result.stderr
        assert not (tmp_path / "registry" / "registry.pid").exists()
        assert not (tmp_path / "registry" / "registry.log").exists(), "no registry was started"
    finally:
        holder.close()


def test_a_second_start_keeps_the_registry_of_its_own_state_dir(
    tmp_path: Path, stop_afterwards: list[Registry]
) -> None:
    """What a second `demo/run` does: the registry it started the first time stays."""
    registry = start_registry(tmp_path / "registry")
    stop_afterwards.append(registry)
    pid = (registry.state_dir / "registry.pid").read_text()
    port = int(registry.address.split(":")[1])

    again = _start_registry_script(port, registry.state_dir)

    assert again.returncode == 0 and again.stdout == "", again
    assert (registry.state_dir / "registry.pid").read_text() == pid
    # Another state dir is refused the same port.
    other = _start_registry_script(port, tmp_path / "other")
    assert other.returncode != 0 and "held by another process" in other.stderr, other


def test_a_restart_comes_back_on_its_own_port_with_its_images_and_authentication(
    tmp_path: Path, stop_afterwards: list[Registry]
) -> None:
    registry = start_registry(tmp_path / "registry")
    stop_afterwards.append(registry)
    image = push_oci_image(f"{registry.address}/team/app:1", "restart")
    pid = (registry.state_dir / "registry.pid").read_text()

    registry.stop()
    assert not _answers(registry.address), "stop() returns once the registry has exited"
    registry.start()

    assert (registry.state_dir / "registry.pid").read_text() != pid
    assert registry.manifest_digest("team/app", "1") == image.index

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(htpasswd_entry("user", "restart-pw"))
    locked = start_registry(tmp_path / "locked", htpasswd)
    stop_afterwards.append(locked)
    locked.stop()
    locked.start()
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"http://{locked.address}/v2/", timeout=10)
    assert denied.value.code == 401


def test_a_restart_fails_if_another_process_took_the_port(
    tmp_path: Path, stop_afterwards: list[Registry]
) -> None:
    registry = start_registry(tmp_path / "registry")
    stop_afterwards.append(registry)
    registry.stop()
    holder = _Holder("http", int(registry.address.split(":")[1]))
    try:
        with pytest.raises(RuntimeError, match="is held by another process"):
            registry.start()
        with urllib.request.urlopen(f"http://{registry.address}/v2/", timeout=10) as response:
            assert response.headers["X-Fake-Registry"] == "yes"
    finally:
        holder.close()


def test_blobs_and_manifests_put_through_the_api_are_served_back(
    registries: Callable[..., Registry],
) -> None:
    require_skopeo()
    registry = registries()
    data = os.urandom(300_000)

    digest = registry.put_blob("team/blobs", data)

    assert digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert registry.blob("team/blobs", digest) == data
    config = registry.put_blob("team/blobs", b"{}")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
            "layers": [
                {"mediaType": "application/octet-stream", "digest": digest, "size": len(data)}
            ],
        }
    ).encode()
    stored = registry.put_manifest_by_digest("team/blobs", manifest, OCI_MANIFEST)

    assert stored == f"sha256:{hashlib.sha256(manifest).hexdigest()}"
    assert registry.manifest("team/blobs", stored) == (manifest, OCI_MANIFEST)
    assert registry.tags("team/blobs") == [], "put by digest: untagged"
    assert registry.skopeo_raw("team/blobs", stored) == manifest
    with pytest.raises(urllib.error.HTTPError) as unknown:
        registry.blob("team/blobs", f"sha256:{'0' * 64}")
    assert unknown.value.code == 404
