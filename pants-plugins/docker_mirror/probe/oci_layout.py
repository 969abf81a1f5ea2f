"""An OCI image layout (image-spec 1.1) as a place the copy engine writes to and reads from, for
the air gap: `LayoutWriter` keeps blobs in a content-addressed `BlobStore` (a Pants named cache,
so packaging again fetches no blob it has) and the names its run wrote; `write_archive` tars what
those names reach, byte for byte the same for the same images; `ArchiveReader` serves such a tar
as a registry would, every byte checked against its digest before it is passed on."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterable, AsyncIterator, BinaryIO, Callable, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from docker_mirror.oci.manifests import digest_of
from docker_mirror.oci.media_types import DIGEST, OCI_INDEX, OCI_MANIFEST
from docker_mirror.oci.reference import archive_ref_name as ref_name
from docker_mirror.probe.mirror_referrers import Served
from docker_mirror.probe.referrers import ReferrersError, manifest_parts
from docker_mirror.probe.registry import RegistryError
from docker_mirror.probe.transfer import is_foreign

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
# A manifest, at most (the distribution spec's recommended limit), and an archive's index.json.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_INDEX_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024


def _blob_name(digest: str) -> str:
    if not DIGEST.fullmatch(digest):
        raise RegistryError("error", f"not a sha256 digest: {digest!r}")
    return f"blobs/sha256/{digest[len('sha256:'):]}"


def _media_type(body: bytes) -> str:
    """A manifest's own `mediaType`, else what its fields make it."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return OCI_MANIFEST
    media_type = document.get("mediaType") if isinstance(document, dict) else None
    if isinstance(media_type, str) and media_type:
        return media_type
    return OCI_INDEX if isinstance(document, dict) and "manifests" in document else OCI_MANIFEST


class _Checked:
    """Chunks passed on once the next has arrived, the last once the whole is `size` bytes of
    `digest`: nothing downstream ever holds all of a blob that is not what it claims."""

    def __init__(self, what: str, digest: str, size: int) -> None:
        self.what, self.digest, self.size = what, digest, size
        self.hashed, self.received = hashlib.sha256(), 0

    def take(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.size:
            raise RegistryError("error", f"{self.what} is larger than its {self.size} bytes")
        self.hashed.update(chunk)

    def check(self) -> None:
        if self.received != self.size or f"sha256:{self.hashed.hexdigest()}" != self.digest:
            raise RegistryError("error", f"{self.what} is not the {self.size} bytes of its digest")


# ---------------------------------------------------------------------------------------------
# Writing


class BlobStore:
    """`blobs/sha256/<hex>` under `root`, each written whole and checked before it gets its name
    (a temporary file, then a rename), so a name always holds its digest's bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / _blob_name(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def _temporary(self) -> Tuple[int, str]:
        directory = self.root / "blobs" / "sha256"
        directory.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=directory, prefix=".", suffix=".partial")

    async def write(self, digest: str, size: int, chunks: AsyncIterable[bytes], what: str) -> None:
        checked = _Checked(what, digest, size)
        fd, temporary = self._temporary()
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    checked.take(chunk)
                    f.write(chunk)
            checked.check()
            os.replace(temporary, self.path(digest))
        except BaseException:
            _unlink(temporary)
            raise

    def write_bytes(self, digest: str, body: bytes) -> None:
        if digest_of(body) != digest:
            raise RegistryError("error", f"a manifest written as {digest} has other bytes")
        if self.has(digest):
            return
        fd, temporary = self._temporary()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            os.replace(temporary, self.path(digest))
        except BaseException:
            _unlink(temporary)
            raise

    def read(self, digest: str, limit: int) -> Optional[bytes]:
        """The blob, checked; None if the store lacks it (or holds other bytes, then removed)."""
        try:
            with open(self.path(digest), "rb") as f:
                body = f.read(limit + 1)
        except FileNotFoundError:
            return None
        if len(body) > limit:
            raise RegistryError("error", f"blob {digest} is larger than {limit} bytes")
        if digest_of(body) != digest:
            _unlink(str(self.path(digest)))
            return None
        return body


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@dataclass(frozen=True)
class Named:
    """An `index.json` entry: what a name serves."""

    name: str
    digest: str
    media_type: str
    size: int

    def to_json(self) -> Dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size,
                "annotations": {REF_NAME: self.name}}  # fmt: skip


class LayoutWriter:
    """The copy engine's destination for an archive (the `Registry` protocol): every repository
    is a name prefix, `registry/repository`; a tag written is a name of `index.json`. It has the
    blobs of its store, and the manifests written in this run only: what refers to an image is
    decided afresh for each archive (a manifest the store keeps from an earlier run is read from
    there instead of the source: `StoreFirst`)."""

    def __init__(self, store: BlobStore, name: str = "the archive") -> None:
        self.store = store
        self.name = name
        self.names: Dict[str, Named] = {}
        self.written: Set[str] = set()
        # One write per blob at a time: the images of an export are copied at once, and a blob
        # they share is fetched by the first, then found in the store by the others.
        self._blob_locks: Dict[str, asyncio.Lock] = {}

    def index(self) -> bytes:
        """`index.json`: every name written, in order."""
        manifests = [self.names[name].to_json() for name in sorted(self.names)]
        document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    def name_digest(self, repository: str, reference: str, digest: str) -> None:
        """Names an image by the digest it was asked for (a line pinned by digest only)."""
        body = self.store.read(digest, MAX_MANIFEST_BYTES)
        if body is None:
            raise RegistryError("error", f"{digest} is not in the archive's store")
        name = ref_name(repository, reference)
        self.names[name] = Named(name, digest, _media_type(body), len(body))

    async def head_manifest(self, repository: str, reference: str) -> Optional[Served]:
        if not reference.startswith("sha256:"):
            named = self.names.get(ref_name(repository, reference))
            return Served(named.digest, named.media_type) if named else None
        body = self.store.read(reference, MAX_MANIFEST_BYTES) if reference in self.written else None
        return Served(reference, _media_type(body)) if body is not None else None

    async def get_manifest(self, repository: str, reference: str) -> Optional[Tuple[bytes, str]]:
        served = await self.head_manifest(repository, reference)
        body = self.store.read(served.digest, MAX_MANIFEST_BYTES) if served else None
        return (body, served.media_type or _media_type(body)) if served and body is not None else None

    async def digest_tags(self, repository: str) -> Optional[FrozenSet[str]]:
        prefix = f"{repository}:"
        return frozenset(n[len(prefix):] for n in self.names if n.startswith(prefix + "sha256-"))

    async def referrers(self, repository: str, digest: str) -> Optional[bytes]:
        return None

    async def read_blob(self, repository: str, digest: str, limit: int) -> bytes:
        body = self.store.read(digest, limit)
        if body is None:
            raise RegistryError("error", f"{digest} is not in the archive's store")
        return body

    async def blob_chunks(self, repository: str, digest: str, size: int) -> AsyncIterator[bytes]:
        with open(self.store.path(digest), "rb") as f:
            async for chunk in _checked_chunks(f, f"blob {digest} of the archive's store", digest, size):
                yield chunk

    async def has_blob(self, repository: str, digest: str) -> bool:
        return self.store.has(digest)

    async def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        return False

    async def put_blob(
        self, repository: str, digest: str, size: int, chunks: Callable[[], AsyncIterable[bytes]]
    ) -> None:
        async with self._blob_locks.setdefault(digest, asyncio.Lock()):
            if not self.store.has(digest):
                await self.store.write(digest, size, chunks(), f"blob {digest} for {repository}")

    async def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> bool:
        digest = digest_of(body)
        if reference.startswith("sha256:") and reference != digest:
            raise RegistryError("error", f"a manifest written as {reference} of {repository} has other bytes")
        self.store.write_bytes(digest, body)
        self.written.add(digest)
        if not reference.startswith("sha256:"):
            name = ref_name(repository, reference)
            self.names[name] = Named(name, digest, media_type, len(body))
        return False


class StoreFirst:
    """A source whose manifests read by digest, and small blobs (a signature's payload), come
    from the blob store when it has them (they are their digest's bytes whoever served them):
    packaging again asks the source only what its tags serve now."""

    def __init__(self, registry: Any, store: BlobStore) -> None:
        self._registry, self._store = registry, store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    async def get_manifest(self, repository: str, reference: str) -> Optional[Tuple[bytes, str]]:
        if reference.startswith("sha256:"):
            body = self._store.read(reference, MAX_MANIFEST_BYTES)
            if body is not None:
                return body, _media_type(body)
        got: Optional[Tuple[bytes, str]] = await self._registry.get_manifest(repository, reference)
        return got

    async def read_blob(self, repository: str, digest: str, limit: int) -> bytes:
        body = self._store.read(digest, limit)
        if body is None:
            body = await self._registry.read_blob(repository, digest, limit)
        return body


async def _checked_chunks(f: BinaryIO, what: str, digest: str, size: int) -> AsyncIterator[bytes]:
    checked, held = _Checked(what, digest, size), None
    while True:
        chunk = f.read(min(CHUNK_BYTES, size - checked.received + 1))
        if not chunk:
            break
        checked.take(chunk)
        if held is not None:
            yield held
        held = chunk
    checked.check()
    if held is not None:
        yield held


def reachable(store: BlobStore, index: bytes) -> List[Tuple[str, int]]:
    """Every blob the names of `index` reach (manifests, their children, configs and layers, but
    not a foreign layer), as (digest, size), each once, sorted."""
    try:
        roots = manifest_parts(index, "the archive's index.json").manifests
    except ReferrersError as e:
        raise RegistryError("error", str(e)) from None
    seen: Dict[str, int] = {}
    pending = list(roots)
    while pending:
        descriptor = pending.pop()
        if descriptor.digest in seen:
            continue
        seen[descriptor.digest] = descriptor.size
        body = store.read(descriptor.digest, MAX_MANIFEST_BYTES)
        if body is None:
            raise RegistryError("error", f"manifest {descriptor.digest} is missing from the blob store")
        try:
            parts = manifest_parts(body, f"manifest {descriptor.digest}")
        except ReferrersError as e:
            raise RegistryError("error", str(e)) from None
        pending.extend(parts.manifests)
        for blob in parts.blobs:
            if not is_foreign(blob):
                seen.setdefault(blob.digest, blob.size)
    return sorted(seen.items())


def _entry(name: str, size: int, directory: bool = False) -> tarfile.TarInfo:
    """A tar entry with nothing of this machine in it: no times, owners or modes of its own."""
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = 0 if directory else size
    return info


class _Hashing(io.RawIOBase):
    """A file read through, hashed as it goes."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.hashed = f, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self.f.read(size)
        self.hashed.update(chunk)
        return chunk


def write_archive(store: BlobStore, index: bytes, output: Path) -> Tuple[int, int]:
    """Writes the OCI layout of `index` to the tar `output`, streamed: `oci-layout`,
    `index.json`, then each blob it reaches once, by digest, every one checked as it is read.
    Returns (blobs, bytes of blobs)."""
    blobs = reachable(store, index)
    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_entry(LAYOUT_FILE, len(LAYOUT)), io.BytesIO(LAYOUT))
        tar.addfile(_entry(INDEX_FILE, len(index)), io.BytesIO(index))
        for directory in ("blobs", "blobs/sha256"):
            tar.addfile(_entry(directory, 0, directory=True))
        for digest, size in blobs:
            path = store.path(digest)
            try:
                with open(path, "rb") as f:
                    if os.fstat(f.fileno()).st_size != size:
                        raise RegistryError("error", f"blob {digest} in the blob store is not its {size} bytes")
                    hashing = _Hashing(f)
                    tar.addfile(_entry(_blob_name(digest), size), hashing)  # type: ignore[arg-type]
            except FileNotFoundError:
                raise RegistryError("error", f"blob {digest} is missing from the blob store") from None
            if f"sha256:{hashing.hashed.hexdigest()}" != digest:
                _unlink(str(path))
                raise RegistryError("error", f"blob {digest} in the blob store had other bytes (removed; package again)")
    return len(blobs), sum(size for _, size in blobs)


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class _Member:
    offset: int
    size: int


class ArchiveReader:
    """A tar of an OCI layout, served as a registry would (the `Registry` protocol): read-only,
    with no referrers API (its referrers are listed by their fallback tags); indexed once, on
    first use, and every blob read checked against its digest."""

    def __init__(self, path: str, shown: Optional[str] = None) -> None:
        self.path = path
        self.name = shown or path
        self._members: Optional[Dict[str, _Member]] = None
        self._names: Dict[str, Named] = {}

    def where(self, repository: str) -> str:
        return f"{repository} in the archive {self.name}"

    def _broken(self, why: str) -> RegistryError:
        return RegistryError("error", f"the archive {self.name} {why}; package it again (`pants package`)")

    def _index(self) -> Dict[str, _Member]:
        if self._members is not None:
            return self._members
        members: Dict[str, _Member] = {}
        try:
            size = os.path.getsize(self.path)
            with tarfile.open(self.path, "r:") as tar:
                end = 0
                for info in tar:
                    if info.name in members:
                        raise self._broken(f"holds {info.name} twice")
                    if info.isfile():
                        members[info.name] = _Member(info.offset_data, info.size)
                    end = info.offset_data + -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            with open(self.path, "rb") as f:
                f.seek(end)
                marker = f.read(2 * tarfile.BLOCKSIZE)
            if end > size or marker != bytes(2 * tarfile.BLOCKSIZE):
                raise self._broken("is truncated (it ends before its end-of-archive marker)")
        except FileNotFoundError:
            raise RegistryError("error", f"the archive {self.name} does not exist (`--docker-mirror-from-archive`)") from None
        except (tarfile.TarError, OSError) as e:
            raise self._broken(f"is truncated or not a tar ({e})") from None
        self._members = members
        layout = self._read(LAYOUT_FILE, 1024)
        try:
            version = json.loads(layout).get("imageLayoutVersion")
        except (ValueError, AttributeError):
            version = None
        if version != "1.0.0":
            raise self._broken("is not an OCI image layout (its oci-layout file is missing or unknown)")
        for entry in self._index_entries(self._read(INDEX_FILE, MAX_INDEX_BYTES)):
            self._names[entry.name] = entry
        return members

    def _index_entries(self, raw: bytes) -> List[Named]:
        try:
            entries = manifest_parts(raw, "its index.json").manifests
        except ReferrersError as e:
            raise self._broken(f"has an unreadable index.json ({e})") from None
        named = []
        for entry in entries:
            annotations = json.loads(entry.document).get("annotations") or {}
            name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
            if isinstance(name, str):
                named.append(Named(name, entry.digest, entry.media_type, entry.size))
        return named

    def _read(self, name: str, limit: int) -> bytes:
        member = (self._members or {}).get(name)
        if member is None:
            raise self._broken(f"has no {name}")
        if member.size > limit:
            raise self._broken(f"has a {name} larger than {limit} bytes")
        with open(self.path, "rb") as f:
            f.seek(member.offset)
            body = f.read(member.size)
        if len(body) != member.size:
            raise self._broken("is truncated")
        return body

    def _blob(self, digest: str, limit: int) -> Optional[bytes]:
        self._index()
        if _blob_name(digest) not in (self._members or {}):
            return None
        body = self._read(_blob_name(digest), limit)
        if digest_of(body) != digest:
            raise self._broken(f"holds other bytes than {digest}")
        return body

    def _named(self, repository: str, reference: str) -> Optional[Named]:
        self._index()
        return self._names.get(ref_name(repository, reference))

    async def head_manifest(self, repository: str, reference: str) -> Optional[Served]:
        got = await self.get_manifest(repository, reference)
        return Served(digest_of(got[0]), got[1]) if got else None

    async def get_manifest(self, repository: str, reference: str) -> Optional[Tuple[bytes, str]]:
        if reference.startswith("sha256:"):
            body = self._blob(reference, MAX_MANIFEST_BYTES)
            return (body, _media_type(body)) if body is not None else None
        named = self._named(repository, reference)
        if named is None:
            return None
        body = self._blob(named.digest, MAX_MANIFEST_BYTES)
        if body is None:
            raise self._broken(f"names {ref_name(repository, reference)} but lacks its manifest {named.digest}")
        return body, named.media_type

    def tags(self, repository: str) -> Sequence[str]:
        self._index()
        prefix = f"{repository}:"
        return [name[len(prefix):] for name in self._names if name.startswith(prefix)]

    async def digest_tags(self, repository: str) -> Optional[FrozenSet[str]]:
        return frozenset(tag for tag in self.tags(repository) if tag.startswith("sha256-"))

    async def referrers(self, repository: str, digest: str) -> Optional[bytes]:
        return None

    async def read_blob(self, repository: str, digest: str, limit: int) -> bytes:
        body = self._blob(digest, limit)
        if body is None:
            raise self._broken(f"lacks blob {digest}")
        return body

    async def blob_chunks(self, repository: str, digest: str, size: int) -> AsyncIterator[bytes]:
        member = self._index().get(_blob_name(digest))
        if member is None:
            raise self._broken(f"lacks blob {digest}")
        with open(self.path, "rb") as f:
            f.seek(member.offset)
            bounded = io.BytesIO() if member.size == 0 else _Bounded(f, member.size)
            async for chunk in _checked_chunks(bounded, f"blob {digest} of the archive {self.name}", digest, size):  # type: ignore[arg-type]
                yield chunk

    async def has_blob(self, repository: str, digest: str) -> bool:
        return _blob_name(digest) in self._index()

    async def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        return False

    async def put_blob(
        self, repository: str, digest: str, size: int, chunks: Callable[[], AsyncIterable[bytes]]
    ) -> None:
        raise RegistryError("error", f"the archive {self.name} is read-only")

    async def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> bool:
        raise RegistryError("error", f"the archive {self.name} is read-only")


class _Bounded:
    """A member's bytes of the open tar, and not one more."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int) -> bytes:
        chunk = self.f.read(min(n, self.left))
        self.left -= len(chunk)
        return chunk
