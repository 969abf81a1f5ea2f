"""How to reach a registry: verified TLS, or plain HTTP for loopback and listed registries, as
Docker does."""

from __future__ import annotations

import ipaddress
from typing import Iterable

from docker_mirror.oci.reference import DOCKER_HUB


def split_registry_address(address: str) -> tuple[str, str | None]:
    """(host, port) of `host[:port]`, `[ipv6][:port]` or a bare IPv6 address; host lower-cased."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host.lower(), (rest[1:] if rest.startswith(":") else None)
    if address.count(":") > 1:  # a bare IPv6 address, no port
        return address.lower(), None
    host, colon, port = address.partition(":")
    return host.lower(), (port if colon else None)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback_registry(address: str) -> bool:
    """True for `localhost`, `127.0.0.0/8` and `::1`, with or without a port.

    Not for IPv4 written as IPv6 (`[::ffff:7f00:1]`), which Python 3.13+ calls loopback and
    3.9 does not: the rule must not change with the interpreter Pants runs on."""
    host, _ = split_registry_address(address)
    if host in ("localhost", "localhost."):
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback and getattr(ip, "ipv4_mapped", None) is None


def _matches(address: str, entry: str) -> bool:
    entry = entry.strip()
    if not entry:
        return False
    host, port = split_registry_address(address)
    if "/" in entry:  # a CIDR range: any port of any host in it
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
        ip = _ip(host)
        return ip is not None and ip.version == network.version and ip in network
    entry_host, entry_port = split_registry_address(entry)
    if entry_host != host:
        return False
    # `host` matches every port of the host; `host:port` only that port.
    return entry_port is None or entry_port == port


def tls_verify(registry: str | None, insecure_registries: Iterable[str] = ()) -> bool:
    """Whether to verify TLS for `registry` (None: Docker Hub).

    False (plain HTTP allowed, TLS not verified) for loopback registries and for registries that
    match an entry of `insecure_registries`: `host` (any port), `host:port`, or a CIDR range.
    """
    address = registry or DOCKER_HUB
    if is_loopback_registry(address):
        return False
    return not any(_matches(address, entry) for entry in insecure_registries)
