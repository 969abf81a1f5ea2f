"""How to reach each host the probe contacts: verified TLS or not, which CAs and client
certificates, which proxy (as Go, and so skopeo, picks them)."""

from __future__ import annotations

import importlib
import ipaddress
import os
import ssl
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from yarl import URL

from docker_mirror.probe.secrets import SECRETS, Secrets
from docker_mirror.oci.registry_access import (
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


class ProxyError(Exception):
    """A proxy variable that names no usable proxy."""


def authority(url: URL) -> str:
    """`host[:port]` of `url` as registries and certs.d directories are named: the port only
    when the URL gives one, IPv6 in brackets."""
    host = url.raw_host or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{url.explicit_port}" if url.explicit_port is not None else host


def proxy_for(
    scheme: str, address: str, env: Mapping[str, str], *, loopback: bool
) -> Optional[Tuple[str, str]]:
    """(the variable, the proxy URL) for `scheme://address`, or None to connect directly."""
    if loopback:
        return None
    lowered = {k.lower(): (k, v) for k, v in env.items() if k.lower().endswith("_proxy") and v}
    chosen = lowered.get(f"{scheme}_proxy") or lowered.get("all_proxy")
    if not chosen:
        return None
    no_proxy = lowered.get("no_proxy", ("", ""))[1]
    if no_proxy.strip() == "*" or (no_proxy and _bypassed(address, no_proxy)):
        return None
    name, proxy = chosen
    return name, proxy if "://" in proxy else f"http://{proxy}"


def _bypassed(address: str, no_proxy: str) -> bool:
    """Whether `NO_PROXY` covers `address`: a host and its subdomains (`example.com`,
    `.example.com`, `*.example.com`), or a CIDR range for IP addresses; ports are ignored."""
    host, _ = split_address(address)
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if "/" in entry:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry_host, _ = split_address(entry)
        entry_host = entry_host.lstrip("*").lstrip(".")
        if entry_host and (host == entry_host or host.endswith("." + entry_host)):
            return True
    return False


class Routes:
    """TLS and proxy for each host the probe contacts, from the rule above, made once per host
    and run. `alias` adds the certs.d directories of a registry's name to those of the host that
    serves it (Docker Hub: `docker.io` for `registry-1.docker.io`)."""

    def __init__(
        self, env: Mapping[str, str], insecure_registries: Iterable[str] = (), *,
        directories: Optional[Sequence[Path]] = None, secrets: Secrets = SECRETS,
    ) -> None:
        self._env = dict(env)
        self._insecure = tuple(insecure_registries)
        self._directories = certs_directories(env) if directories is None else tuple(directories)
        self._secrets = secrets
        self._aliases: Dict[str, List[str]] = {}
        self._contexts: Dict[Tuple[object, ...], ssl.SSLContext] = {}
        self._tls: Dict[str, ssl.SSLContext] = {}
        self._proxies: Dict[Tuple[str, str], Optional[URL]] = {}

    def alias(self, address: str, name: str) -> None:
        names = self._aliases.setdefault(address, [])
        if name != address and name not in names:
            names.append(name)

    def verifies(self, address: str) -> bool:
        return verifies_tls(address, self._insecure)

    def ssl_context(self, address: str) -> ssl.SSLContext:
        """The TLS settings for `address` (`host[:port]`); `TlsSetupError` when a certificate
        in its certs.d directories cannot be loaded."""
        context = self._tls.get(address)
        if context is None:
            verify = self.verifies(address)
            cas, clients = registry_certs([address, *self._aliases.get(address, ())], self._directories)
            key = (verify, tuple(cas), tuple(clients))
            if key not in self._contexts:
                self._contexts[key] = ssl_context(verify=verify, cas=cas, clients=clients)
            context = self._tls[address] = self._contexts[key]
        return context

    def proxy(self, scheme: str, address: str) -> Optional[URL]:
        """The proxy for `scheme://address`, or None; `ProxyError` for a variable that names no
        usable proxy (aiohttp speaks to http:// proxies)."""
        key = (scheme, address)
        if key not in self._proxies:
            named = proxy_for(scheme, address, self._env, loopback=is_loopback(address))
            self._proxies[key] = None if named is None else self._parse_proxy(*named)
        return self._proxies[key]

    def _parse_proxy(self, variable: str, value: str) -> URL:
        try:
            url = URL(value)
            usable = url.scheme == "http" and bool(url.raw_host) and url.port is not None
        except (ValueError, TypeError):
            usable = False
        if not usable:
            self._secrets.add(value)
            raise ProxyError(f"{variable} is not a usable proxy URL (http://host:port)")
        if url.user is not None:
            self._secrets.add_basic(url.user, url.password or "")
            self._secrets.add(url.password)
        return url
