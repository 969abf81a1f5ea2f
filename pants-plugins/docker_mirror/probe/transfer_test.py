"""Copying manifest graphs and images (`transfer`, `mirror_image`) against registries kept in
memory: what is written, in which order, how many blobs at once, what is skipped, mounted or
refused. The same flows run against real registries in `transfer_integration_test.py`."""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterable, Callable, Dict, List, Optional, Tuple

import pytest

from docker_mirror.oci.media_types import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_SCHEMA1,
    OCI_INDEX,
    OCI_MANIFEST,
)
from docker_mirror.oci.probe_protocol import CopyRequest, Plan, TagCopy, TagOutcome
from docker_mirror.probe.mirror_image import copy_image
from docker_mirror.probe.mirror_referrers import Location, find
from docker_mirror.probe.mirror_referrers_test import (
    PUBLIC,
    MemoryRegistry,
    attach_sbom,
    digest,
    oci_manifest,
    run,
    sign,
)
from docker_mirror.probe.referrers import ReferrersError
from docker_mirror.probe.registry import RegistryError
from docker_mirror.probe.transfer import MAX_CONCURRENT_BLOBS, Transfer, copy_manifest

FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


class RecordingRegistry(MemoryRegistry):
    """A `MemoryRegistry` that records each write in order, how many blob uploads ran at once
    at most, and fails the upload of the digests in `failing`."""

    def __init__(self, name: str, **options: bool) -> None:
        super().__init__(name, referrers_api=options.pop("referrers_api", False), **options)
        self.writes: List[Tuple[str, str]] = []
        self.uploading = 0
        self.most_at_once = 0
        self.failing: Dict[str, Exception] = {}

    async def put_blob(self, repository: str, d: str, size: int, chunks: Callable[[], AsyncIterable[bytes]]) -> None:
        self.uploading += 1
        self.most_at_once = max(self.most_at_once, self.uploading)
        try:
            await asyncio.sleep(0.01)
            if d in self.failing:
                raise self.failing[d]
            await super().put_blob(repository, d, size, chunks)
            self.writes.append(("blob", d))
        finally:
            self.uploading -= 1

    async def mount_blob(self, repository: str, d: str, source_repository: str) -> bool:
        await super().mount_blob(repository, d, source_repository)
        self.writes.append(("mount", d))
        return True

    async def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> bool:
        self.writes.append(("manifest", reference))
        return await super().put_manifest(repository, reference, body, media_type)


def image(
    registry: MemoryRegistry, platforms: int = 2, layers: int = 2, *, repository: str = "app",
    index_type: str = OCI_INDEX, manifest_type: str = OCI_MANIFEST, tag: Optional[str] = "1",
) -> Tuple[str, List[str], List[str]]:
    """A multi-platform image: (its index digest, its manifests' digests, every blob digest)."""
    entries, manifests, blobs = [], [], []
    for p in range(platforms):
        config = registry.blob(repository, json.dumps({"os": "linux", "n": p}).encode())
        layer_descriptors = [registry.blob(repository, f"layer {l} of platform {p}".encode()) for l in range(layers)]
        body = json.dumps({"schemaVersion": 2, "mediaType": manifest_type, "config": config,
                           "layers": layer_descriptors}).encode()  # fmt: skip
        manifest = registry.manifest(repository, body, manifest_type)
        manifests.append(manifest)
        blobs += [str(config["digest"])] + [str(l["digest"]) for l in layer_descriptors]
        entries.append({"mediaType": manifest_type, "digest": manifest, "size": len(body),
                        "platform": {"os": "linux", "architecture": f"arch{p}"}})  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}).encode()
    return registry.manifest(repository, index, index_type, tag=tag), manifests, blobs


def locations(source: MemoryRegistry, destination: MemoryRegistry) -> Tuple[Location, Location]:
    return Location(source, "app"), Location(destination, "mirror/app")


@pytest.mark.parametrize("types", [(OCI_INDEX, OCI_MANIFEST), (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)])
def test_an_index_is_copied_whole_blobs_first_and_itself_last(types: Tuple[str, str]) -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), RecordingRegistry("dst")
    index, manifests, blobs = image(source, index_type=types[0], manifest_type=types[1])
    run(copy_manifest(*locations(source, destination), index))
    assert {d for (repo, d) in destination.blobs} == set(blobs)
    for d in [index, *manifests]:
        assert destination.manifests[("mirror/app", d)] == source.manifests[("app", d)]
    order = [what for what, _ in destination.writes]
    assert order[-1] == "manifest" and destination.writes[-1][1] == index
    # Each platform's manifest after its own blobs.
    for p, manifest in enumerate(manifests):
        written = destination.writes.index(("manifest", manifest))
        assert all(destination.writes.index(("blob", b)) < written for b in blobs[p * 3 : p * 3 + 3])


def test_blobs_go_six_at_a_time() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), RecordingRegistry("dst")
    index, _, blobs = image(source, platforms=3, layers=5)
    run(copy_manifest(*locations(source, destination), index))
    assert len(blobs) == 18 and destination.most_at_once == MAX_CONCURRENT_BLOBS


def test_what_the_destination_has_is_skipped_and_a_copy_cut_short_resumes() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), RecordingRegistry("dst")
    index, manifests, blobs = image(source, platforms=2, layers=3)
    destination.failing[blobs[-1]] = RegistryError("unreachable", "dst: connection reset")
    with pytest.raises(RegistryError, match="connection reset"):
        run(copy_manifest(*locations(source, destination), index))
    assert ("mirror/app", index) not in destination.manifests  # never the root without all of it
    sent_before = [d for what, d in destination.writes if what == "blob"]
    assert sent_before and blobs[-1] not in sent_before
    destination.failing.clear()
    destination.writes.clear()
    run(copy_manifest(*locations(source, destination), index))
    sent_again = [d for what, d in destination.writes if what == "blob"]
    assert not set(sent_again) & set(sent_before)  # nothing sent twice
    assert set(sent_again) | set(sent_before) == set(blobs)
    # A third run: every manifest is there; one `HEAD` of the root and nothing else.
    destination.writes.clear()
    destination.asked.clear()
    run(copy_manifest(*locations(source, destination), index))
    assert destination.writes == [] and destination.asked == {"HEAD manifest": 1}


def test_a_failed_blob_stops_the_others_and_nothing_is_written_after_it() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), RecordingRegistry("dst")
    index, _, blobs = image(source, platforms=1, layers=12)
    destination.failing[blobs[0]] = RegistryError("error", "dst answered 500")

    async def copy_then_wait() -> None:
        with pytest.raises(RegistryError):
            await copy_manifest(*locations(source, destination), index)
        written = list(destination.writes)
        await asyncio.sleep(0.1)  # nothing goes on writing behind the failure
        assert destination.writes == written and destination.uploading == 0

    run(copy_then_wait())
    assert len([w for w in destination.writes if w[0] == "blob"]) < len(blobs) - 1


def test_within_one_registry_blobs_are_mounted() -> None:
    registry = RecordingRegistry("one")
    index, _, blobs = image(registry)
    run(copy_manifest(Location(registry, "app"), Location(registry, "mirror/app"), index))
    assert sorted(d for what, d in registry.writes if what == "mount") == sorted(blobs)
    assert not any(what == "blob" for what, _ in registry.writes)


def test_every_manifest_is_accepted_before_anything_is_written() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), RecordingRegistry("dst")
    index, manifests, _ = image(source)
    seen: List[Tuple[str, int]] = []

    def accept(d: str, body: bytes) -> None:
        assert body == source.manifests[("app", d)][0]
        seen.append((d, len(destination.writes)))

    run(copy_manifest(*locations(source, destination), index, accept=accept))
    assert sorted(d for d, _ in seen) == sorted([index, *manifests])
    assert all(writes == 0 for _, writes in seen)

    def refuse(d: str, body: bytes) -> None:
        if d == manifests[1]:
            raise ReferrersError(f"{d} is over budget")

    other = RecordingRegistry("dst2")
    with pytest.raises(ReferrersError, match="over budget"):
        run(copy_manifest(*locations(source, other), index, accept=refuse))
    assert other.writes == []


def test_foreign_layers_are_left_to_their_urls_as_skopeo_leaves_them() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), RecordingRegistry("dst")
    config = source.blob("app", b'{"os":"windows"}')
    with_urls = {"mediaType": FOREIGN, "digest": digest(b"base layer"), "size": 10,
                 "urls": ["https://mcr.microsoft.com/base"]}  # fmt: skip
    without_urls = source.blob("app", b"foreign type, no urls")
    without_urls["mediaType"] = FOREIGN
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config,
                       "layers": [with_urls, without_urls]}).encode()  # fmt: skip
    manifest = source.manifest("app", body, DOCKER_MANIFEST)

    async def copy() -> Transfer:
        transfer = Transfer(*locations(source, destination))
        await transfer.write(await transfer.read(manifest))
        return transfer

    transfer = run(copy())
    assert ("mirror/app", with_urls["digest"]) not in destination.blobs
    assert ("mirror/app", without_urls["digest"]) in destination.blobs
    assert transfer.counts == {"foreign": 1, "uploaded": 2}
    assert ("mirror/app", manifest) in destination.manifests


@pytest.mark.parametrize("media_type", [DOCKER_MANIFEST_SCHEMA1, "application/vnd.docker.distribution.manifest.v1+prettyjws", OCI_MANIFEST])
def test_schema_1_is_refused_naming_the_image_and_registry(media_type: str) -> None:
    source, destination = MemoryRegistry("src.example", referrers_api=False), RecordingRegistry("dst")
    body = json.dumps({"schemaVersion": 1, "name": "app", "tag": "1", "fsLayers": []}).encode()
    manifest = source.manifest("app", body, media_type)
    with pytest.raises(RegistryError, match=f"src.example/app@{manifest} is a Docker schema 1 manifest"):
        run(copy_manifest(*locations(source, destination), manifest))
    assert destination.writes == []


# ---------------------------------------------------------------------------------------------
# The image, its referrers and its tags


def request(subject: str, plan: Plan, *tags: TagCopy) -> CopyRequest:
    return CopyRequest("src/app", subject, "dst/mirror/app", plan, tags=tags)


def test_write_order_blobs_manifests_referrers_then_the_index_under_its_tags() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), RecordingRegistry("dst")
    index, manifests, blobs = image(source)
    sign(source, "app", index)
    sbom = attach_sbom(source, "app", index)
    src, dst = locations(source, destination)
    (plan,) = run(find(src, index, [dst])).plans
    result = run(copy_image(src, dst, request(index, plan, TagCopy("1", None), TagCopy("latest", None)), [PUBLIC]))
    assert result.ok and result.verified_by == "keys/cosign.pub"
    assert result.tags == (
        TagOutcome("1", "copied", platforms=("linux/arch0", "linux/arch1")),
        TagOutcome("latest", "copied", platforms=("linux/arch0", "linux/arch1")),
    )
    writes = destination.writes
    position = {entry: i for i, entry in enumerate(writes)}
    last_image_manifest = max(position[("manifest", m)] for m in manifests)
    assert max(position[("blob", b)] for b in blobs) < last_image_manifest
    referrer = position[("manifest", sbom)]
    assert last_image_manifest < referrer < position[("manifest", "1")]
    assert referrer < position[("manifest", "latest")]
    # The index is written by its tags alone (a tag's `PUT` stores it by digest too).
    assert ("manifest", index) not in position
    assert destination.tags[("mirror/app", "1")] == index == destination.tags[("mirror/app", "latest")]


def test_tags_are_guarded() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), RecordingRegistry("dst")
    index, _, _ = image(source)
    other, _, _ = image(destination, repository="mirror/app", platforms=1, tag=None)
    destination.tags[("mirror/app", "moved")] = other
    destination.tags[("mirror/app", "same")] = index
    destination.tags[("mirror/app", "stale")] = other
    src, dst = locations(source, destination)
    result = run(copy_image(src, dst, request(index, Plan(), TagCopy("new", None), TagCopy("moved", None),
                                              TagCopy("same", other), TagCopy("stale", other))))  # fmt: skip
    platforms = ("linux/arch0", "linux/arch1")
    assert result.tags == (
        TagOutcome("new", "copied", platforms=platforms),
        TagOutcome("moved", "changed", f"the destination changed since it was checked (it served none, now {other}); not overwriting it"),
        TagOutcome("same", "up_to_date", platforms=platforms),
        TagOutcome("stale", "copied", platforms=platforms),
    )
    assert destination.tags[("mirror/app", "moved")] == other
    assert destination.tags[("mirror/app", "stale")] == index


def test_an_unsigned_image_is_not_written_at_all() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), RecordingRegistry("dst")
    index, _, _ = image(source)
    src, dst = locations(source, destination)
    result = run(copy_image(src, dst, request(index, Plan(), TagCopy("1", None)), [PUBLIC]))
    assert result.outcome == "unsigned" and destination.writes == []
    assert [(t.tag, t.outcome) for t in result.tags] == [("1", "not_attempted")]


def test_a_failed_image_fails_every_tag_with_its_message() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), RecordingRegistry("dst")
    index, _, blobs = image(source)
    destination.failing[blobs[0]] = RegistryError("denied", "access denied by dst to mirror/app")
    src, dst = locations(source, destination)
    result = run(copy_image(src, dst, request(index, Plan(), TagCopy("1", None), TagCopy("2", None))))
    assert (result.outcome, result.error_kind) == ("error", "denied")
    assert result.tags == tuple(TagOutcome(t, "failed", "access denied by dst to mirror/app", "denied") for t in "12")
    # The other platform's manifest may be there (the next run resumes from it); never the index.
    assert ("manifest", index) not in destination.writes and ("mirror/app", "1") not in destination.tags


def test_a_single_manifest_has_no_platforms() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), RecordingRegistry("dst")
    body = oci_manifest(source.blob("app", b"{}"), [source.blob("app", b"one layer")])
    manifest = source.manifest("app", body)
    src, dst = locations(source, destination)
    result = run(copy_image(src, dst, request(manifest, Plan(), TagCopy("1", None))))
    assert result.tags == (TagOutcome("1", "copied"),)
    # Written once, under its tag, after its blobs.
    assert destination.writes[-1] == ("manifest", "1") and ("manifest", manifest) not in destination.writes
