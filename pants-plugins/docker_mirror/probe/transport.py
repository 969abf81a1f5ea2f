"""httpx transports for one registry: proxies as skopeo picks them, and bounded answers.

`HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY` are honoured as Go (and so skopeo) does,
except that loopback registries are never proxied. Every response body is capped, so a hostile
or broken registry cannot make the probe read without end: manifests at 4 MiB (containerd's
limit), everything else likewise.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import AsyncIterator, Dict, Mapping, Optional

import httpx

from docker_mirror.probe.access import split_address

MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class ResponseTooLarge(Exception):
    pass


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise ResponseTooLarge(f"the answer is larger than {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class CappedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, limit: int = MAX_RESPONSE_BYTES) -> None:
        self._inner = inner
        self._limit = limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _CappedStream(response.stream, self._limit)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def proxy_for(scheme: str, host: str, env: Mapping[str, str], *, loopback: bool) -> Optional[str]:
    """The proxy URL for `scheme://host`, or None to connect directly."""
    if loopback:
        return None
    lowered = {k.lower(): v for k, v in env.items() if k.lower().endswith("_proxy") and v}
    proxy = lowered.get(f"{scheme}_proxy") or lowered.get("all_proxy")
    if not proxy:
        return None
    no_proxy = lowered.get("no_proxy", "")
    if no_proxy.strip() == "*":
        return None
    if no_proxy and _bypassed(host, no_proxy):
        return None
    return proxy


def _bypassed(address: str, no_proxy: str) -> bool:
    """Whether `NO_PROXY` covers `address`: a host and its subdomains (`example.com`,
    `.example.com`, `*.example.com`), or a CIDR range for IP addresses; ports are ignored."""
    host, _ = split_address(address)
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if "/" in entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
                if ipaddress.ip_address(host) in network:
                    return True
            except ValueError:
                pass
            continue
        entry_host, _ = split_address(entry)
        entry_host = entry_host.lstrip("*").lstrip(".")
        if entry_host and (host == entry_host or host.endswith("." + entry_host)):
            return True
    return False


def mounts(
    *,
    endpoint: str,
    context: ssl.SSLContext,
    env: Mapping[str, str],
    loopback: bool,
    max_connections: int,
    limit: int = MAX_RESPONSE_BYTES,
) -> Dict[str, httpx.AsyncBaseTransport]:
    """One capped transport per scheme, each through its proxy (if any)."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    result: Dict[str, httpx.AsyncBaseTransport] = {}
    for scheme in ("https", "http"):
        proxy = proxy_for(scheme, endpoint, env, loopback=loopback)
        inner = httpx.AsyncHTTPTransport(
            verify=context, limits=limits, proxy=proxy, trust_env=False, retries=0
        )
        result[f"{scheme}://"] = CappedTransport(inner, limit)
    return result
