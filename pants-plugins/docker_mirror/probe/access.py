"""How to reach a registry: verified TLS, or unverified TLS with a fall-back to plain HTTP.

The rule is `docker_mirror.util_rules.registry_access.tls_verify`, the one the plugin passes
`skopeo` flags by: loopback registries (`localhost`, `127.0.0.0/8`, `::1`) and those that
match an `insecure_registries` entry (`host`, `host:port` or a CIDR range) are tried over HTTPS
without verification first, then over plain HTTP, as Docker and skopeo do; every other registry
is reached over verified TLS only.

The CA certificates: the system's bundle (OpenSSL's default paths, and the bundle files the
common distributions install, so an interpreter built elsewhere still finds them), certifi's only
when no system bundle exists and certifi happens to be installed, and the per-registry directories Docker and skopeo read,
`<dir>/<host[:port]>/*.crt` (CA certificates) and `*.cert` with `*.key` (a client certificate).
"""

from __future__ import annotations

import importlib
import os
import ssl
from pathlib import Path
from typing import Iterable, List, Mapping, Sequence, Tuple

from docker_mirror.util_rules.registry_access import (
    is_loopback_registry,
    split_registry_address,
    tls_verify,
)

# The bundle files of Debian/Ubuntu/Alpine, Fedora/RHEL, openSUSE, and macOS/BSD.
SYSTEM_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
)
SYSTEM_CERTS_DIRECTORIES = ("/etc/docker/certs.d", "/etc/containers/certs.d")


# The rule itself has one home, shared with the plugin (a module of the standard library only).
split_address = split_registry_address
is_loopback = is_loopback_registry


def verifies_tls(registry: str, insecure_registries: Iterable[str] = ()) -> bool:
    """False for loopback registries and those matching an entry of `insecure_registries`."""
    return tls_verify(registry, insecure_registries)


def certs_directories(env: Mapping[str, str]) -> Tuple[Path, ...]:
    """Where per-registry certificates live: Docker's and skopeo's system directories, and
    skopeo's per-user one."""
    directories = [Path(d) for d in SYSTEM_CERTS_DIRECTORIES]
    home = env.get("HOME")
    if home:
        directories.append(Path(home) / ".config" / "containers" / "certs.d")
    return tuple(directories)


def registry_certs(
    names: Sequence[str], directories: Sequence[Path]
) -> Tuple[List[Path], List[Tuple[Path, Path]]]:
    """(CA files, (certificate, key) pairs) for a registry known as `names` (`host[:port]`)."""
    cas: List[Path] = []
    clients: List[Tuple[Path, Path]] = []
    for directory in directories:
        for name in names:
            try:
                entries = sorted((directory / name).iterdir())
            except OSError:
                continue
            for entry in entries:
                if entry.suffix == ".crt":
                    cas.append(entry)
                elif entry.suffix == ".cert" and entry.with_suffix(".key").exists():
                    clients.append((entry, entry.with_suffix(".key")))
    return cas, clients


def _load_system_cas(context: ssl.SSLContext) -> None:
    """Adds the system bundle to OpenSSL's default paths (which `create_default_context` loads,
    but which point nowhere in an interpreter built for another system)."""
    for bundle in SYSTEM_CA_BUNDLES:
        if os.path.isfile(bundle):
            context.load_verify_locations(cafile=bundle)
            return
    try:  # where it is installed: the fallback when the system has no bundle
        certifi = importlib.import_module("certifi")
    except ImportError:
        return
    context.load_verify_locations(cafile=certifi.where())


class TlsSetupError(Exception):
    """A certificate in a certs.d directory that cannot be loaded."""


def ssl_context(
    *, verify: bool, cas: Sequence[Path] = (), clients: Sequence[Tuple[Path, Path]] = ()
) -> ssl.SSLContext:
    """With `verify`: the system's CAs and `cas`; without: no verification at all. Either way
    the client certificates of `clients`."""
    if verify:
        context = ssl.create_default_context()
        _load_system_cas(context)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    loading = None
    try:
        if verify:
            for loading in cas:
                context.load_verify_locations(cafile=str(loading))
        for cert, key in clients:
            loading = cert
            context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as e:
        raise TlsSetupError(f"cannot load the certificate {loading}: {e}") from None
    return context
