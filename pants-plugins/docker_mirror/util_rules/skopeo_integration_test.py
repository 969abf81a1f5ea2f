"""What `describe_failure` makes of the real skopeo's errors, in the real situations on loopback:
a closed port, a TLS server whose certificate nobody signed, and a plain-HTTP registry reached
with TLS verification on. Each is read, copied to and copied from, with the command lines the
plugin builds."""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from docker_mirror_testutil.images import push_oci_image
from docker_mirror_testutil.machine import require_skopeo, unavailable
from docker_mirror_testutil.registries import Registry
from docker_mirror.util_rules.skopeo import (
    copy_argv,
    describe_failure,
    inspect_argv,
    skopeo_error_message,
)

UNREACHABLE = "registry unreachable"
PLAIN_HTTP = "the registry speaks plain HTTP; list it in `[docker-mirror].insecure_registries`"


def tls_failed(address: str) -> str:
    return (
        f"TLS verification of {address} failed; trust its CA: put the CA certificate in "
        f"/etc/docker/certs.d/{address}/ca.crt (or /etc/containers/certs.d/{address}/ca.crt), or "
        "add it to the system's CA bundle; or list the registry in "
        "`[docker-mirror].insecure_registries` to skip verification"
    )


@dataclass(frozen=True)
class Situation:
    address: str
    verify_tls: bool  # what the command line asks for
    cause: str  # what skopeo's own message must say
    meaning: str  # what `describe_failure` must make of it


@pytest.fixture(scope="module")
def closed_port() -> Iterator[Situation]:
    """A loopback port held (bound, never listening) for the whole module: connecting is
    refused, and no other process can start listening there meanwhile."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        # The plugin reaches loopback without TLS verification.
        yield Situation(f"127.0.0.1:{port}", False, "connection refused", UNREACHABLE)


@pytest.fixture(scope="module")
def self_signed_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Situation]:
    """An HTTPS server on 127.0.0.1 with a certificate for that address, signed by itself."""
    if not shutil.which("openssl"):
        unavailable("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True,
        check=True,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        yield Situation(address, True, "x509: ", tls_failed(address))
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def source(registries: Callable[..., Registry]) -> Registry:
    """A real registry holding `team/app:1`, reached without TLS verification."""
    require_skopeo()
    registry = registries()
    push_oci_image(f"{registry.address}/team/app:1", "skopeo errors")
    return registry


@pytest.fixture(scope="module")
def plain_http(source: Registry) -> Situation:
    """The same plain-HTTP registry, reached with TLS verification on."""
    return Situation(
        source.address, True, "server gave HTTP response to HTTPS client", PLAIN_HTTP
    )


@pytest.fixture(params=["closed_port", "self_signed_tls", "plain_http"])
def situation(request: pytest.FixtureRequest) -> Situation:
    name: str = request.param  # type: ignore[attr-defined]  # set on parametrized requests
    situation: Situation = request.getfixturevalue(name)
    return situation


def run_skopeo(argv: tuple[str, ...], tmp_path: Path) -> bytes:
    """Runs skopeo as Pants does (no PATH, in an empty directory); returns its stderr, after
    checking that it failed."""
    result = subprocess.run(
        argv, env={"HOME": str(tmp_path)}, capture_output=True, cwd=tmp_path, timeout=60
    )
    assert result.returncode != 0, result
    return result.stderr


def assert_described(stderr: bytes, situation: Situation) -> None:
    subject = f"image at registry {situation.address}"
    message = skopeo_error_message(stderr)
    assert situation.cause in message, stderr
    assert describe_failure(stderr, subject=subject) == (
        f"{subject}: {situation.meaning} ({message})"
    ), stderr


def test_a_read(situation: Situation, tmp_path: Path) -> None:
    skopeo = shutil.which("skopeo") or "skopeo"
    argv = inspect_argv(
        skopeo, f"{situation.address}/team/app:1", verify_tls=situation.verify_tls
    )
    assert_described(run_skopeo(argv, tmp_path), situation)


def test_a_copy_to_it(situation: Situation, source: Registry, tmp_path: Path) -> None:
    skopeo = shutil.which("skopeo") or "skopeo"
    argv = copy_argv(
        skopeo,
        f"{source.address}/team/app:1",
        f"{situation.address}/mirror/team/app:1",
        platform=None,
        verify_source_tls=False,
        verify_destination_tls=situation.verify_tls,
    )
    assert_described(run_skopeo(argv, tmp_path), situation)


def test_a_copy_from_it(situation: Situation, source: Registry, tmp_path: Path) -> None:
    skopeo = shutil.which("skopeo") or "skopeo"
    argv = copy_argv(
        skopeo,
        f"{situation.address}/team/app:1",
        f"{source.address}/mirror/team/app:1",
        platform="linux/amd64",
        verify_source_tls=situation.verify_tls,
        verify_destination_tls=False,
    )
    assert_described(run_skopeo(argv, tmp_path), situation)
    assert source.manifest_digest("mirror/team/app", "1") is None
