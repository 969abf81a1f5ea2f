"""The distribution API calls that finding and copying referrers make, on a `RegistrySession`;
anything but success and "not there" is a `RegistryError` naming the registry."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import Counter
from typing import (
    Any, AsyncIterable, AsyncIterator, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union,
)  # fmt: skip

from yarl import URL

from docker_mirror.probe.auth import Scope
from docker_mirror.oci.media_types import OCI_INDEX
from docker_mirror.probe.manifests import probe_manifest
from docker_mirror.probe.mirror_referrers import Served
from docker_mirror.probe.referrers import MAX_LISTING_BYTES, MAX_REFERRERS, ReferrersError, index_entries, short
from docker_mirror.oci.reference import ImageReference, parse_reference
from docker_mirror.probe.registry import Answer, ConnectionCut, RegistryError, RegistrySession, reason_phrase
from docker_mirror.probe.transport import BodyFailed, HttpError

# The referrers API pages its answer (`Link: <...>; rel="next"`); an image has a handful. The
# pages are bounded together too: `MAX_LISTING_BYTES` and `MAX_REFERRERS` entries.
MAX_REFERRER_PAGES = 16

# A source repository's tag list says at once which cosign and fallback tags exist, for every
# image of the run that lives there. It is read `TAG_PAGE_SIZE` tags a page, and only while that
# costs fewer requests than the `HEAD`s it saves (`HEADS_SAVED_PER_IMAGE` per image of the
# run in the repository), at most `MAX_TAG_PAGES` pages and `MAX_TAG_LIST_BYTES` in all; past
# that, or on any answer that is not a tag list, each image's tags are asked for by `HEAD`.
TAG_PAGE_SIZE = 1000
MAX_TAG_PAGES = 10
MAX_TAG_LIST_BYTES = 4 * 1024 * 1024
HEADS_SAVED_PER_IMAGE = 4  # `.sig`, `.att`, `.sbom` and the fallback tag

# Blob uploads: monolithic up to CHUNKED_ABOVE bytes (measured: see README "Uploads"), in
# chunks of CHUNK_BYTES above it (a failure then costs a chunk, not the blob), or of the
# registry's `OCI-Chunk-Min-Length` up to MAX_CHUNK_BYTES. What a registry, or a proxy in front
# of it, answers a monolithic `PUT` it will not take: then chunks, for the rest of the run.
CHUNKED_ABOVE = 512 * 1024 * 1024
CHUNK_BYTES = 8 * 1024 * 1024
MAX_CHUNK_BYTES = 64 * 1024 * 1024
_MONOLITHIC_REFUSED = frozenset({405, 411, 413, 501})

_NEXT = re.compile(r'<([^>]*)>[^,<]*;\s*rel="?next"?(?:[\s;,]|$)', re.IGNORECASE)


def _scopes(repository: str, *, write: bool = False) -> Tuple[Scope, ...]:
    return (Scope(repository, "pull,push" if write else "pull"),)


class Distribution:
    """One registry's distribution API, as `mirror_referrers` uses it."""

    def __init__(self, session: RegistrySession) -> None:
        self.session = session
        self.name = session.registry
        # Whether it has the referrers API: learned from its first answer (the others wait for
        # it), then not asked again where it has none.
        self._has_referrers_api: Optional[bool] = None
        self._learning_referrers_api = asyncio.Lock()
        # How many images of the run each source repository has (the run says, before it starts),
        # and each repository's digest tags, read once for all of them.
        self.images: "Counter[str]" = Counter()
        self._digest_tags: "Dict[str, asyncio.Future[Optional[FrozenSet[str]]]]" = {}
        # Whether it takes monolithic uploads (until it refuses one), and its minimum chunk.
        self._monolithic = True
        self._chunk_min = 0

    def _shown(self, repository: str, reference: str) -> str:
        """host/repository:tag, or @sha256:<12 hex>."""
        at = f"@{short(reference)}" if reference.startswith("sha256:") else f":{reference}"
        return f"{self.name}/{repository}{at}"

    def _reference(self, repository: str, reference: str) -> ImageReference:
        separator = "@" if reference.startswith("sha256:") else ":"
        return parse_reference(f"{self.name}/{repository}{separator}{reference}")

    def _doing(self, verb: str, digest: str, preposition: str, repository: str) -> str:
        """What a blob request is for, in messages: "uploading blob sha256:<12 hex> to
        host/repository" (never a URL: an upload session's holds its signed state)."""
        return f"{verb} blob {short(digest)} {preposition} {self.name}/{repository}"

    def _failed(self, what: str, status: int) -> RegistryError:
        phrase = f" {reason_phrase(status)}" if reason_phrase(status) else ""
        # A 401 or 403 past the session's own auth: credentials missing, refused or too weak.
        outcome = {401: "unauthorized", 403: "denied"}.get(status, "error")
        return RegistryError(outcome, f"{self.name} answered {status}{phrase} for {what}")

    async def _request(
        self, method: str, target: Union[str, URL], repository: str, subject: str, *,
        write: bool = False, mount_from: Optional[str] = None,
        headers: Sequence[Tuple[str, str]] = (), **options: Any,
    ) -> Answer:
        """One request with the scopes it needs: pull, or pull and push to write; and pull from
        `mount_from` for a cross-repository mount."""
        scopes = _scopes(repository, write=write) + ((Scope(mount_from),) if mount_from else ())
        return await self.session.request(
            method, target, scopes=scopes, subject=subject, headers=headers, **options
        )

    async def head_manifest(self, repository: str, reference: str) -> Optional[Served]:
        result = await probe_manifest(self.session, self._reference(repository, reference), False)
        if result.outcome == "not_found":
            return None
        if result.outcome != "ok" or result.digest is None:
            raise RegistryError(result.outcome, result.message or f"{self.name}: {result.outcome}")
        return Served(result.digest, result.media_type)

    async def get_manifest(self, repository: str, reference: str) -> Optional[Tuple[bytes, str]]:
        result = await probe_manifest(self.session, self._reference(repository, reference), True)
        if result.outcome == "not_found":
            return None
        if result.outcome != "ok" or result.body is None:
            raise RegistryError(result.outcome, result.message or f"{self.name}: {result.outcome}")
        return result.body, result.media_type or OCI_INDEX

    async def referrers(self, repository: str, digest: str) -> Optional[bytes]:
        """Every page of the referrers API's answer as one index; None without the API (a
        registry that has it answers 200, even for a digest nothing refers to)."""
        if self._has_referrers_api is None:
            async with self._learning_referrers_api:
                if self._has_referrers_api is None:
                    return await self._referrers(repository, digest)
        if self._has_referrers_api is False:
            return None
        return await self._referrers(repository, digest)

    async def _referrers(self, repository: str, digest: str) -> Optional[bytes]:
        """The pages' entries as one index, bounded as they are read: each page is read to
        the bytes the listing has left (`MAX_LISTING_BYTES` in all), its entries checked
        and counted (`MAX_REFERRERS` in all) before the next is asked for, and kept in
        their compact form only; past a bound the image fails."""
        entries: List[str] = []
        remaining = MAX_LISTING_BYTES
        target: Union[str, URL] = f"/v2/{repository}/referrers/{digest}"
        what = f"the referrers of {digest} in {repository} at {self.name}"
        for page_number in range(1, MAX_REFERRER_PAGES + 1):
            try:
                answer = await self._request("GET", target, repository, f"the referrers of {digest}",
                                             headers=[("Accept", OCI_INDEX)], limit=remaining)  # fmt: skip
            except RegistryError as e:
                if "larger than" not in e.message:
                    raise
                raise RegistryError("error", f"{what} are larger than {MAX_LISTING_BYTES} bytes "
                                             f"(page {page_number}): refused") from None  # fmt: skip
            if answer.status == 404 and page_number == 1:
                self._has_referrers_api = False
                return None
            if answer.status != 200:
                raise self._failed(f"the referrers of {digest} in {repository}", answer.status)
            self._has_referrers_api = True
            remaining -= len(answer.body)
            page = index_entries(answer.body, f"{what} (page {page_number})")
            if len(entries) + len(page) > MAX_REFERRERS:
                raise ReferrersError(f"{what} list more than {MAX_REFERRERS} manifests (page {page_number}): refused")
            entries.extend(entry.document for entry in page)
            following = self._next_page(answer, f"the referrers of {digest}")
            del answer, page
            if following is None:
                return ('{"schemaVersion":2,"mediaType":"%s","manifests":[%s]}' % (OCI_INDEX, ",".join(entries))).encode()
            target = following
        raise RegistryError("error", f"{what} are more than {MAX_REFERRER_PAGES} pages: refused")

    def _next_page(self, answer: Answer, what: str) -> Optional[URL]:
        """The next page a paged answer names (`Link: <...>; rel="next"`, resolved against the
        page's URL), or None; a `RegistryError` if it leads off the registry's own origin."""
        found = _NEXT.search(",".join(answer.headers.getall("Link", [])))
        if found is None:
            return None
        try:
            target = answer.url.join(URL(found.group(1)))
        except (ValueError, TypeError):
            raise RegistryError("error", f"{self.name} paged {what} to something that is not a URL") from None
        if not self.session.is_own(target):
            raise RegistryError("error", f"{self.name} paged {what} to another host")
        return target

    async def digest_tags(self, repository: str) -> Optional[FrozenSet[str]]:
        """The tags of `repository` that name a digest (`sha256-<hex>` and cosign's
        `sha256-<hex>.sig`...), from its tag list, read once per run whoever asks; None when
        the list is not worth reading or could not be read within its bounds."""
        known = self._digest_tags.get(repository)
        if known is not None:
            return await asyncio.shield(known)
        known = self._digest_tags[repository] = asyncio.get_running_loop().create_future()
        listed: Optional[FrozenSet[str]] = None
        try:
            listed = await self._list_digest_tags(repository)
        finally:
            if not known.done():
                known.set_result(listed)
        return listed

    async def _list_digest_tags(self, repository: str) -> Optional[FrozenSet[str]]:
        pages = min(MAX_TAG_PAGES, HEADS_SAVED_PER_IMAGE * max(1, self.images[repository]))
        remaining = MAX_TAG_LIST_BYTES
        tags: List[str] = []
        target: Union[str, URL] = f"/v2/{repository}/tags/list?n={TAG_PAGE_SIZE}"
        try:
            for _ in range(pages):
                answer = await self._request("GET", target, repository, f"the tags of {repository}",
                                             limit=remaining, optional=True)  # fmt: skip
                if answer.status != 200:
                    return None
                remaining -= len(answer.body)
                page = _tag_page(answer.body)
                if page is None:
                    return None
                tags.extend(tag for tag in page if tag.startswith("sha256-"))
                following = self._next_page(answer, f"the tags of {repository}")
                if following is None:
                    return frozenset(tags)
                target = following
        except RegistryError:
            return None  # The tags are asked for by `HEAD`, where a failure is reported.
        return None

    async def read_blob(self, repository: str, digest: str, limit: int) -> bytes:
        answer = await self._request("GET", f"/v2/{repository}/blobs/{digest}", repository, f"blob {digest}",
                                     limit=limit, doing=self._doing("reading", digest, "from", repository))  # fmt: skip
        if answer.status != 200:
            raise self._failed(f"blob {digest} of {repository}", answer.status)
        if f"sha256:{hashlib.sha256(answer.body).hexdigest()}" != digest:
            raise RegistryError("error", f"{self.name} served blob {digest} of {repository} with other bytes")
        return answer.body

    async def blob_chunks(self, repository: str, digest: str, size: int) -> AsyncIterator[bytes]:
        """The blob as it arrives, never more than `size` bytes; a `RegistryError` before its last
        chunk if it was not exactly its `size` bytes of its digest (so an upload from it never
        completes; the destination checks the digest of what it received too)."""
        what = f"blob {digest} of {repository}"
        async with self.session.stream("GET", f"/v2/{repository}/blobs/{digest}", scopes=_scopes(repository),
                                       subject=f"blob {digest}",
                                       doing=self._doing("reading", digest, "from", repository)) as response:  # fmt: skip
            if response.status != 200:
                raise self._failed(what, response.status)
            hashed, received = hashlib.sha256(), 0
            # Each chunk is passed on once the next arrives, the last once the whole is checked:
            # an upload streamed from it never has all its bytes unless they are the digest's.
            held: Optional[bytes] = None
            try:
                async for chunk in response.iter_chunks():
                    received += len(chunk)
                    if received > size:
                        raise RegistryError("error", f"{self.name} served {what} larger than its {size} bytes")
                    hashed.update(chunk)
                    if held is not None:
                        yield held
                    held = chunk
            except HttpError as e:
                raise RegistryError("unreachable", f"{self.name}: {e.reason}, reading {what}") from None
            if received != size or f"sha256:{hashed.hexdigest()}" != digest:
                raise RegistryError("error", f"{self.name} served {what} with other bytes than its digest")
            if held is not None:
                yield held

    async def has_blob(self, repository: str, digest: str) -> bool:
        answer = await self._request("HEAD", f"/v2/{repository}/blobs/{digest}", repository, f"blob {digest}",
                                     doing=self._doing("checking for", digest, "at", repository))  # fmt: skip
        if answer.status in (200, 404):
            return answer.status == 200
        raise self._failed(f"blob {digest} of {repository}", answer.status)

    async def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        answer = await self._request(
            "POST", f"/v2/{repository}/blobs/uploads/?mount={digest}&from={source_repository}", repository,
            f"a mount of {digest}", write=True, mount_from=source_repository,
            doing=self._doing("mounting", digest, "into", repository),
        )  # fmt: skip
        if answer.status == 201:
            return True
        if answer.status == 202:  # an upload session instead: the blob is uploaded
            return False
        raise self._failed(f"a mount of {digest} into {repository}", answer.status)

    async def put_blob(
        self, repository: str, digest: str, size: int, chunks: Callable[[], AsyncIterable[bytes]]
    ) -> None:
        """Uploads a blob: monolithic (a session by `POST`, then the blob streamed in one `PUT`
        with its `Content-Length`) up to `CHUNKED_ABOVE` bytes, in chunks above that, and in
        chunks from the first `PUT` this registry refuses on (`_MONOLITHIC_REFUSED`). `chunks`
        makes the stream afresh for each attempt.

        A monolithic `PUT` whose connection breaks is not sent whole again: the blob goes in
        chunks, each retried by the policy. A front end that refuses a large body may answer and
        close before reading it, which the client sees as a reset, not as its 413; and on a
        flaky link a break then costs a chunk, not the blob."""
        if self._monolithic and size <= CHUNKED_ABOVE:
            for _ in range(2):
                location = await self._upload_session(repository, digest)
                source = _Source(chunks)
                try:
                    done = await self._request(
                        "PUT", location.update_query({"digest": digest}), repository, f"an upload of {digest}",
                        write=True, headers=[("Content-Type", "application/octet-stream")], body=source,
                        content_length=size, doing=self._doing("uploading", digest, "to", repository),
                        cut_is_final=True,
                    )  # fmt: skip
                except BodyFailed as failed:
                    raise failed.error from None  # the source's failure, not this registry's
                except ConnectionCut:
                    break
                finally:
                    await source.aclose()
                if done.status == 201:
                    return
                if done.status in _MONOLITHIC_REFUSED:
                    self._monolithic = False
                    break
                # A session left broken by a `PUT` cut short and sent again (its bytes then
                # follow the part that arrived): once more, in a new session.
                if done.status not in (400, 404):
                    raise self._failed(f"an upload of {digest} into {repository}", done.status)
            else:
                raise self._failed(f"an upload of {digest} into {repository}", done.status)
        await self._put_chunked(repository, digest, size, chunks)

    async def _upload_session(self, repository: str, digest: str) -> URL:
        started = await self._request("POST", f"/v2/{repository}/blobs/uploads/", repository, f"an upload of {digest}",
                                      write=True, doing=self._doing("uploading", digest, "to", repository))  # fmt: skip
        location = started.location if started.status == 202 else None
        if location is None:
            raise self._failed(f"an upload of {digest} into {repository}", started.status)
        minimum = started.headers.get("OCI-Chunk-Min-Length", "")
        self._chunk_min = int(minimum) if minimum.isascii() and minimum.isdigit() and len(minimum) < 12 else 0
        return location

    async def _put_chunked(
        self, repository: str, digest: str, size: int, chunks: Callable[[], AsyncIterable[bytes]]
    ) -> None:
        """The spec's chunked upload: `PATCH`es of `CHUNK_BYTES` (or the registry's
        `OCI-Chunk-Min-Length`) with their `Content-Range`, then a `PUT ?digest=` that closes
        it. One chunk is held at a time, so that a `PATCH` can be sent again."""
        location = await self._upload_session(repository, digest)
        chunk_size = max(CHUNK_BYTES, min(self._chunk_min, MAX_CHUNK_BYTES))
        # A chunk is the source's pieces up to at least `chunk_size` bytes (the spec asks only
        # that every chunk but the last be at least the minimum), joined once.
        pieces: List[bytes] = []
        held = offset = 0
        async for data in chunks():
            pieces.append(data)
            held += len(data)
            if held >= chunk_size:
                chunk = b"".join(pieces)
                pieces.clear()
                location = await self._patch(repository, digest, location, chunk, offset)
                offset, held = offset + len(chunk), 0
        if pieces:
            location = await self._patch(repository, digest, location, b"".join(pieces), offset)
        done = await self._request(
            "PUT", location.update_query({"digest": digest}), repository, f"an upload of {digest}", write=True,
            doing=self._doing("uploading", digest, "to", repository),
        )  # fmt: skip
        if done.status != 201:
            raise self._failed(f"an upload of {digest} into {repository}", done.status)

    async def _patch(self, repository: str, digest: str, location: URL, chunk: bytes, offset: int) -> URL:
        """Sends `chunk` (bytes `offset`... of the blob); the session's next location. After a
        416 (a `PATCH` that arrived in part before its retry), the rest from where the registry
        says it is."""
        what, doing = f"an upload of {digest}", self._doing("uploading", digest, "to", repository)
        sent = 0
        for _ in range(2):
            start = offset + sent
            answer = await self._request(
                "PATCH", location, repository, what, write=True,
                headers=[("Content-Type", "application/octet-stream"),
                         ("Content-Range", f"{start}-{offset + len(chunk) - 1}")],
                body=chunk[sent:], doing=doing,
            )  # fmt: skip
            if answer.status == 202:
                return answer.location or location
            if answer.status != 416:
                break
            status = await self._request("GET", location, repository, what, write=True, doing=doing)
            received = _range_end(status.headers.get("Range"))
            if status.status != 204 or received is None or not offset <= received + 1 < offset + len(chunk):
                break
            location, sent = status.location or location, received + 1 - offset
        raise self._failed(f"a chunk of {digest} into {repository}", answer.status)

    async def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> bool:
        answer = await self._request(
            "PUT", f"/v2/{repository}/manifests/{reference}", repository, f"{repository}:{reference}", write=True,
            headers=[("Content-Type", media_type)], body=body, doing=f"writing manifest {self._shown(repository, reference)}",
        )  # fmt: skip
        if answer.status != 201:
            raise self._failed(f"{repository}:{reference}", answer.status)
        return bool(answer.headers.get("OCI-Subject"))


class _Source:
    """`chunks` as a request body, made afresh for each attempt: its `RegistryError`s (the
    source's) raised as `BodyFailed`, so that the upload fails with them at once rather than as
    a broken connection to retry; and each stream closed by `aclose()` once the request is over
    (aiohttp leaves one it stopped reading, after an early answer, to be finalized at exit, where
    the streams inside it may be closed first). A new attempt's stream first closes those of
    the attempts before it (over by then): one that a broken connection left part-read holds
    its source request (a connection, a slot of the source registry's concurrency) until then."""

    def __init__(self, chunks: Callable[[], AsyncIterable[bytes]]) -> None:
        self._chunks = chunks
        self._made: List[AsyncIterator[bytes]] = []

    def __call__(self) -> AsyncIterator[bytes]:
        stream = self._stream(list(self._made))
        self._made.append(stream)
        return stream

    async def _stream(self, earlier: List[AsyncIterator[bytes]]) -> AsyncIterator[bytes]:
        await _close(earlier)
        source = self._chunks()
        try:
            async for chunk in source:
                yield chunk
        except RegistryError as e:
            raise BodyFailed(e) from None
        finally:
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()

    async def aclose(self) -> None:
        await _close(self._made)


async def _close(streams: List[AsyncIterator[bytes]]) -> None:
    for stream in streams:
        try:
            await stream.aclose()  # type: ignore[attr-defined]
        except RuntimeError:  # still being read: it ends with its request
            pass


def _range_end(value: Optional[str]) -> Optional[int]:
    """The last byte an upload session holds (`Range: 0-<end>`), or None."""
    start, _, end = (value or "").partition("-")
    return int(end) if start.strip() == "0" and end.strip().isdigit() and len(end) < 16 else None


def _tag_page(body: bytes) -> Optional[List[str]]:
    """A tag list page's tags (`{"name": ..., "tags": [...]}`, `null` for none), or None if it
    is not one."""
    try:
        page = json.loads(body)
    except (ValueError, RecursionError):
        return None
    tags = page.get("tags") if isinstance(page, dict) else None
    if tags is None and isinstance(page, dict) and "tags" in page:
        return []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        return None
    return tags
