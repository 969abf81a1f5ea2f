"""Which CAs a registry is verified with: real TLS handshakes."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from docker_mirror.probe import access
from docker_mirror_testutil.tls import make_certificates

@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Tuple[int, Path]]:
    """A TLS server on loopback with a certificate for `registry.test`, from a CA made now."""
    ca, cert, key = make_certificates(tmp_path, "registry.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            connection.settimeout(10)
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"hello")
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], ca
    stop.set()
    thread.join(timeout=10)
    listener.close()


def _handshake(port: int, context: ssl.SSLContext) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="registry.test") as tls:
            return tls.recv(5)


def test_a_registrys_ca_in_certs_d_is_trusted(tmp_path: Path, tls_server: Tuple[int, Path]) -> None:
    port, ca = tls_server
    certs_d = tmp_path / "certs.d"
    (certs_d / f"registry.test:{port}").mkdir(parents=True)
    (certs_d / f"registry.test:{port}" / "ca.crt").write_bytes(ca.read_bytes())
    cas, clients = access.registry_certs([f"registry.test:{port}"], [tmp_path / "elsewhere", certs_d])
    assert [c.name for c in cas] == ["ca.crt"] and clients == []
    assert _handshake(port, access.ssl_context(verify=True, cas=cas)) == b"hello"


def test_without_its_ca_a_registry_is_refused(tls_server: Tuple[int, Path]) -> None:
    port, _ = tls_server
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(port, access.ssl_context(verify=True))


def test_another_registrys_ca_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "other:5000").mkdir()
    (tmp_path / "other:5000" / "ca.crt").write_text("a CA")
    cas, _ = access.registry_certs(["registry.test:5000", "other"], [tmp_path])
    assert cas == []


def test_unverified_is_unverified(tls_server: Tuple[int, Path]) -> None:
    port, _ = tls_server
    assert _handshake(port, access.ssl_context(verify=False)) == b"hello"


def test_the_system_bundle_is_loaded() -> None:
    context = access.ssl_context(verify=True)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    if any(Path(p).is_file() for p in access.SYSTEM_CA_BUNDLES):
        assert context.cert_store_stats()["x509_ca"] > 10


def test_a_broken_certificate_is_reported(tmp_path: Path) -> None:
    (tmp_path / "r:1").mkdir()
    (tmp_path / "r:1" / "ca.crt").write_text("not a certificate")
    cas, _ = access.registry_certs(["r:1"], [tmp_path])
    with pytest.raises(access.TlsSetupError, match="ca.crt"):
        access.ssl_context(verify=True, cas=cas)
