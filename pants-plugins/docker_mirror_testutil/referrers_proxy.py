"""A registry with the OCI 1.1 referrers API, for tests: a loopback HTTP proxy in front of a real
`docker-registry` (which has no such API, and none that has it can be installed here) that passes
every request on, and serves `GET /v2/<name>/referrers/<digest>` itself, as the distribution spec
(v1.1, "Listing Referrers", "Pushing Manifests with Subject") says:

- the answer is an image index (`Content-Type: application/vnd.oci.image.index.v1+json`) of the
  descriptors of the manifests of `<name>` whose `subject` is `<digest>`, each with its
  `artifactType` (or, for an image manifest without one, its config's media type) and its
  annotations; 200 with an empty list when there are none, 400 for a malformed digest;
- `?artifactType=<type>` filters the list, and the answer then says `OCI-Filters-Applied:
  artifactType`;
- a manifest with a `subject` PUT through the proxy and accepted by the registry is answered with
  `OCI-Subject: <subject digest>` (so a client does not update the fallback tag) and listed from
  then on; a manifest DELETEd through it is no longer listed.

It learns referrers only from what passes through it: a manifest pushed to the registry directly,
or listed in a fallback tag before the proxy started, is not listed (the spec's "Enabling the
Referrers API" asks a real registry for the latter). Manifest PUTs are read whole (up to 4 MiB, the
size the spec says registries should accept) to learn their subject; everything else, blobs
included, streams through as in `FaultProxy`, whose fault plans and request log it keeps:
`requests()` lists every request with its method, path and status, those it answered itself
included.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import urllib.parse
from typing import Dict, List, Optional, Sequence, Tuple

from docker_mirror_testutil.fault_proxy import FaultProxy, Plan, Respond
from docker_mirror_testutil.oci import go_json
from docker_mirror_testutil.referrers import referrer_descriptor, subject_of
from docker_mirror_testutil.registries import Registry
from docker_mirror_testutil.relay import Connection, Cut, Head, stream_body
from docker_mirror.oci.manifests import OCI_INDEX

_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/?]*)(?:\?(?P<query>.*))?$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/?]+)(?:\?.*)?$")
# The distribution spec's digest grammar; sha256 digests are 64 lowercase hex digits.
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def _error(status: int, code: str, message: str) -> Respond:
    body = go_json({"errors": [{"code": code, "message": message, "detail": None}]})
    return Respond(status, (("Content-Type", "application/json"),), body)


def _artifact_types(query: Optional[str]) -> List[str]:
    """The `artifactType` values of a query string. Decoded without turning `+` into a space:
    media types hold `+` (`application/spdx+json`) and never a space."""
    values = []
    for pair in (query or "").split("&"):
        key, _, value = pair.partition("=")
        if urllib.parse.unquote(key) == "artifactType" and value:
            values.append(urllib.parse.unquote(value))
    return values


def _dechunked(raw: bytes) -> bytes:
    """The content of a chunked body (its framing as `relay.stream_body` yields it)."""
    content, rest = bytearray(), raw
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return bytes(content)
        content += rest[:size]
        rest = rest[size + 2 :]


class ReferrersProxy(FaultProxy):
    """Start one with `ReferrersProxy.start(registry.address, passthrough())`; point clients at
    its `address`, or use `as_registry(registry)`. Stop it with `stop()` (or `with`)."""

    def __init__(self, upstream: str, plan: Plan, strip_headers: Sequence[str] = ()) -> None:
        super().__init__(upstream, plan, strip_headers)
        # (repository, subject digest) -> {referrer digest: its descriptor}, in push order.
        self._referrers: Dict[Tuple[str, str], Dict[str, dict]] = {}

    def as_registry(self, registry: Registry) -> Registry:
        """`registry` as clients see it through this proxy: its API methods (`manifest`,
        `put_manifest`, `put_blob`...) go through the proxy; its access log, state and process
        stay the registry's."""
        return dataclasses.replace(registry, address=self.address)

    def referrers(self, repository: str, subject: str) -> List[dict]:
        """The descriptors the proxy lists for `repository@subject`, in push order."""
        with self._lock:
            return list(self._referrers.get((repository, subject), {}).values())

    # -- serving ---------------------------------------------------------------------------

    async def _pass_on(
        self, head: Head, method: str, path: str, cut: Optional[Cut], connection: Connection
    ) -> Tuple[int, bool]:
        if cut is None:
            referrers = _REFERRERS.match(path)
            if referrers and method in ("GET", "HEAD"):
                answer = self._list(
                    referrers["name"],
                    urllib.parse.unquote(referrers["digest"]),
                    _artifact_types(referrers["query"]),
                )
                await self._respond(answer, method, connection.writer)
                return answer.status, True
            manifest = _MANIFEST.match(path)
            if manifest and method == "PUT":
                return await self._put_manifest(head, manifest["name"], connection)
            if manifest and method == "DELETE":
                name, reference = manifest["name"], manifest["reference"]
                return await self._relay(
                    head, method, connection,
                    answer_headers=lambda status: self._forget(status, name, reference),
                )
        return await super()._pass_on(head, method, path, cut, connection)

    def _list(self, name: str, digest: str, artifact_types: List[str]) -> Respond:
        sha256 = digest.startswith("sha256:")
        if not _DIGEST.match(digest) or (sha256 and not _SHA256.match(digest)):
            return _error(400, "DIGEST_INVALID", f"invalid digest: {digest!r}")
        manifests = self.referrers(name, digest)
        headers = [("Content-Type", OCI_INDEX)]
        if artifact_types:
            manifests = [m for m in manifests if m.get("artifactType") in artifact_types]
            headers.append(("OCI-Filters-Applied", "artifactType"))
        body = go_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
        return Respond(200, tuple(headers), body)

    async def _put_manifest(self, head: Head, name: str, connection: Connection) -> Tuple[int, bool]:
        """Reads the manifest whole, passes it on (framed by a Content-Length), and, once the
        registry accepted it, lists it under its subject before its answer (with `OCI-Subject`)
        reaches the client."""
        raw, too_large = bytearray(), False
        reader = connection.reader
        async for data in stream_body(head, reader, request=True, method="PUT", status=0):
            # Past the limit, the rest is read and dropped (chunk framing counts, up to twice).
            too_large = too_large or len(raw) + len(data) > 2 * MAX_MANIFEST_BYTES
            if not too_large:
                raw += data
        chunked = "chunked" in (head.get("Transfer-Encoding") or "").lower()
        manifest = _dechunked(bytes(raw)) if chunked else bytes(raw)
        if too_large or len(manifest) > MAX_MANIFEST_BYTES:
            answer = _error(413, "SIZE_INVALID", "manifest larger than 4 MiB")
            await self._respond(answer, "PUT", connection.writer)
            return answer.status, True
        framed = Head(
            head.first_line,
            [
                (k, v)
                for k, v in head.headers
                if k.lower() not in ("content-length", "transfer-encoding")
            ]
            + [("Content-Length", str(len(manifest)))],
        )
        body = asyncio.StreamReader()
        body.feed_data(manifest)
        body.feed_eof()
        subject = subject_of(manifest)

        def learn(status: int) -> Sequence[Tuple[str, str]]:
            if subject is None or not 200 <= status < 300:
                return ()
            entry = referrer_descriptor(manifest, head.get("Content-Type"))
            with self._lock:
                self._referrers.setdefault((name, subject), {})[entry["digest"]] = entry
            return (("OCI-Subject", subject),)

        return await self._relay(framed, "PUT", connection, body=body, answer_headers=learn)

    def _forget(self, status: int, name: str, reference: str) -> Sequence[Tuple[str, str]]:
        if 200 <= status < 300:
            with self._lock:
                for (repository, _), listed in self._referrers.items():
                    if repository == name:
                        listed.pop(reference, None)
        return ()
