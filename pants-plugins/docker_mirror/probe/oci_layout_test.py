"""The air gap's OCI layout (`oci_layout`): an image with a signature and an SBOM copied into a
layout, tarred, and copied out of the tar again keeps every digest; the tar is the same bytes
every time; a truncated or altered tar fails with the archive named, and passes on nothing
unchecked. Against real registries and the real `./pants`: goals/archive_integration_test.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tarfile
from pathlib import Path
from typing import AsyncIterator, Optional, Tuple

import pytest

from docker_mirror.oci.probe_protocol import CopyRequest, TagCopy
from docker_mirror.probe.mirror_image import copy_image
from docker_mirror.probe.mirror_referrers import Location, find
from docker_mirror.probe.mirror_referrers_test import MemoryRegistry, attach_sbom, run, sign
from docker_mirror.probe.oci_layout import REF_NAME, ArchiveReader, BlobStore, LayoutWriter, StoreFirst, write_archive
from docker_mirror.probe.referrers import digest_tag
from docker_mirror.probe.registry import RegistryError
from docker_mirror.probe.transfer_test import image

REPOSITORY = "registry.example/team/app"


async def _copy(source: Location, destination: Location, subject: str, tag: str) -> None:
    found = await find(source, subject, [destination])
    request = CopyRequest(source.repository, subject, destination.repository, found.plans[0], (), (TagCopy(tag, None),))
    result = await copy_image(source, destination, request)
    assert result.ok and [t.outcome for t in result.tags] == ["copied"], result


def seeded() -> Tuple[MemoryRegistry, str, str, str]:
    """An index with a signature and an SBOM: (the registry, the index, the signature tag's
    digest, the SBOM's digest)."""
    source = MemoryRegistry("src", referrers_api=False)
    index, _, _ = image(source)
    return source, index, sign(source, "app", index), attach_sbom(source, "app", index)


def exported(tmp_path: Path, seed: Optional[Tuple[MemoryRegistry, str, str, str]] = None) -> Tuple[MemoryRegistry, str, str, str, Path]:
    """The seeded image copied into a layout (a fresh store in `tmp_path`) and tarred: (the
    source, the index, the signature tag's digest, the SBOM's digest, the tar)."""
    source, index, signature, sbom = seed or seeded()
    layout = LayoutWriter(BlobStore(tmp_path / "store"))
    store_first = StoreFirst(source, layout.store)
    run(_copy(Location(store_first, "app"), Location(layout, REPOSITORY), index, "1"))
    tar = tmp_path / "archive.tar"
    write_archive(layout.store, layout.index(), tar)
    return source, index, signature, sbom, tar


def test_an_image_with_its_signature_and_sbom_goes_through_a_tar_with_every_digest(tmp_path: Path) -> None:
    source, index, signature, sbom, tar = exported(tmp_path)
    with tarfile.open(tar) as t:
        names = t.getnames()
        document = json.loads(t.extractfile("index.json").read())  # type: ignore[union-attr]
    assert names[:2] == ["oci-layout", "index.json"]
    assert names[4:] == sorted(names[4:]) and all(n.startswith("blobs/sha256/") for n in names[4:])
    refs = {entry["annotations"][REF_NAME]: entry["digest"] for entry in document["manifests"]}
    assert refs[f"{REPOSITORY}:1"] == index
    assert refs[f"{REPOSITORY}:{digest_tag(index, 'sig')}"] == signature
    assert f"{REPOSITORY}:{digest_tag(index)}" in refs  # the SBOM's listing, by the fallback tag

    # Out of the archive into a registry: the same digests, signature and SBOM included.
    archive = ArchiveReader(str(tar))
    mirror = MemoryRegistry("mirror", referrers_api=False)
    run(_copy(Location(archive, REPOSITORY), Location(mirror, "mirror/app"), index, "1"))
    assert mirror.tags[("mirror/app", "1")] == index
    assert mirror.manifests[("mirror/app", index)] == source.manifests[("app", index)]
    assert mirror.tags[("mirror/app", digest_tag(index, "sig"))] == signature
    assert ("mirror/app", sbom) in mirror.manifests


def test_the_tar_is_the_same_bytes_every_time_and_each_blob_is_stored_once(tmp_path: Path) -> None:
    seed = seeded()
    _, _, _, _, tar = exported(tmp_path / "a", seed)
    _, _, _, _, again = exported(tmp_path / "b", seed)
    assert hashlib.sha256(tar.read_bytes()).digest() == hashlib.sha256(again.read_bytes()).digest()
    with tarfile.open(tar) as t:
        members = t.getmembers()
    assert len({m.name for m in members}) == len(members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}


def test_packaging_again_into_the_same_store_names_the_same_and_reads_no_manifest_by_digest(tmp_path: Path) -> None:
    seed = seeded()
    source = seed[0]
    _, _, _, _, first = exported(tmp_path, seed)
    kept = first.read_bytes()
    asked = source.asked.copy()
    _, _, _, _, again = exported(tmp_path, seed)
    assert again.read_bytes() == kept
    # What the tags serve is asked again (`HEAD`s, the tag list); every manifest and blob comes
    # from the store.
    assert source.asked["GET blob"] == asked["GET blob"]
    assert asked["GET manifest"] >= 5 and source.asked["GET manifest"] == asked["GET manifest"], (asked, source.asked)


def test_a_truncated_archive_fails_naming_it(tmp_path: Path) -> None:
    _, index, _, _, tar = exported(tmp_path)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    with pytest.raises(RegistryError, match=f"the archive {cut} is truncated"):
        run(ArchiveReader(str(cut)).get_manifest(REPOSITORY, "1"))


def test_altered_bytes_in_the_archive_are_never_passed_on(tmp_path: Path) -> None:
    _, index, _, _, tar = exported(tmp_path)
    raw = bytearray(tar.read_bytes())
    with tarfile.open(tar) as t:
        layer = max((m for m in t.getmembers() if m.name.startswith("blobs/")), key=lambda m: m.size)
    raw[layer.offset_data] ^= 0xFF
    altered = tmp_path / "altered.tar"
    altered.write_bytes(bytes(raw))
    digest = "sha256:" + layer.name.rsplit("/", 1)[1]
    archive = ArchiveReader(str(altered))

    async def read_all() -> bytes:
        return b"".join([chunk async for chunk in archive.blob_chunks(REPOSITORY, digest, layer.size)])

    with pytest.raises(RegistryError, match="not the .* bytes of its digest|other bytes"):
        run(read_all())


def test_what_the_archive_lacks_is_not_found_and_a_missing_archive_is_named(tmp_path: Path) -> None:
    _, _, _, _, tar = exported(tmp_path)
    assert run(ArchiveReader(str(tar)).get_manifest(REPOSITORY, "2")) is None
    assert run(ArchiveReader(str(tar)).get_manifest("registry.example/other", "1")) is None
    with pytest.raises(RegistryError, match="does not exist"):
        run(ArchiveReader(str(tmp_path / "nowhere.tar")).get_manifest(REPOSITORY, "1"))


def test_a_blob_store_never_names_bytes_of_another_digest(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"not what was promised"

    with pytest.raises(RegistryError):
        run(store.write("sha256:" + "0" * 64, 21, chunks(), "blob"))
    assert not store.has("sha256:" + "0" * 64)
    assert [p.name for p in (tmp_path / "blobs" / "sha256").iterdir()] == []


class SlowSource(MemoryRegistry):
    """A registry whose blobs take a moment to arrive, so that concurrent copies overlap."""

    async def blob_chunks(self, repository: str, d: str, size: int) -> AsyncIterator[bytes]:
        await asyncio.sleep(0.05)
        async for chunk in super().blob_chunks(repository, d, size):
            yield chunk


def test_a_blob_two_images_share_is_fetched_once_when_they_are_exported_at_once(tmp_path: Path) -> None:
    source = SlowSource("src", referrers_api=False)
    shared = source.blob("one", b"a layer both images have")
    source.blob("two", b"a layer both images have")
    subjects = []
    for n, repository in enumerate(("one", "two")):
        config = source.blob(repository, json.dumps({"n": n}).encode())
        body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": config, "layers": [shared]}).encode()  # fmt: skip
        subjects.append(source.manifest(repository, body, "application/vnd.oci.image.manifest.v1+json", tag="1"))
    layout = LayoutWriter(BlobStore(tmp_path / "store"))

    async def both() -> None:
        await asyncio.gather(*(
            _copy(Location(source, repository), Location(layout, f"registry.example/{repository}"), subject, "1")
            for repository, subject in zip(("one", "two"), subjects)
        ))  # fmt: skip

    run(both())
    assert source.asked["GET blob"] == 3  # two configs, and the shared layer once
