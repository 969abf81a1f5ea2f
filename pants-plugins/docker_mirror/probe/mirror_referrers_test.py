"""Which requests finding and copying referrers sends, and what it writes, against registries kept
in memory (with and without the referrers API). The same flows run against real registries in
`referrers_integration_test.py`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections import Counter
from typing import (
    AsyncIterable, AsyncIterator, Awaitable, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple, TypeVar,
)  # fmt: skip

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from docker_mirror.probe.mirror_referrers import Found, Location, Served, copy, find
from docker_mirror.oci.media_types import COSIGN_SIMPLE_SIGNING, OCI_INDEX, OCI_MANIFEST
from docker_mirror.oci.probe_protocol import CopyResult, Listing, Plan
from docker_mirror.probe.referrers import MAX_COPY_MANIFESTS, BoundExceeded, ReferrersError, digest_tag
from docker_mirror.probe.signatures import SIGNATURE_ANNOTATION, PublicKey, load_public_key

EMPTY_CONFIG = b"{}"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class MemoryRegistry:
    """A registry's API in memory: manifests by tag and digest, blobs, optionally the referrers
    API, and a tag list (unless `tag_list` is False, as when it is past its bounds); it counts
    what it is asked."""

    def __init__(self, name: str, *, referrers_api: bool, tag_list: bool = True) -> None:
        self.name = name
        self.referrers_api = referrers_api
        self.tag_list = tag_list
        self.manifests: Dict[Tuple[str, str], Tuple[bytes, str]] = {}
        self.tags: Dict[Tuple[str, str], str] = {}
        self.blobs: Dict[Tuple[str, str], bytes] = {}
        self.asked: Counter = Counter()

    # What tests set up.
    def blob(self, repository: str, data: bytes) -> Dict[str, object]:
        self.blobs[(repository, digest(data))] = data
        return {"mediaType": "application/octet-stream", "digest": digest(data), "size": len(data)}

    def manifest(self, repository: str, body: bytes, media_type: str = OCI_MANIFEST, tag: Optional[str] = None) -> str:
        self.manifests[(repository, digest(body))] = (body, media_type)
        if tag:
            self.tags[(repository, tag)] = digest(body)
        return digest(body)

    def _resolve(self, repository: str, reference: str) -> Optional[str]:
        if reference.startswith("sha256:"):
            return reference if (repository, reference) in self.manifests else None
        return self.tags.get((repository, reference))

    # The `Registry` protocol.
    async def head_manifest(self, repository: str, reference: str) -> Optional[Served]:
        self.asked["HEAD manifest"] += 1
        found = self._resolve(repository, reference)
        return Served(found, self.manifests[(repository, found)][1]) if found else None

    async def digest_tags(self, repository: str) -> Optional[FrozenSet[str]]:
        self.asked["GET tags"] += 1
        if not self.tag_list:
            return None
        return frozenset(tag for repo, tag in self.tags if repo == repository and tag.startswith("sha256-"))

    async def get_manifest(self, repository: str, reference: str) -> Optional[Tuple[bytes, str]]:
        self.asked["GET manifest"] += 1
        found = self._resolve(repository, reference)
        return self.manifests[(repository, found)] if found else None

    async def referrers(self, repository: str, subject: str) -> Optional[bytes]:
        self.asked["GET referrers"] += 1
        if not self.referrers_api:
            return None
        entries = []
        for (repo, d), (body, media_type) in sorted(self.manifests.items()):
            document = json.loads(body)
            if repo == repository and (document.get("subject") or {}).get("digest") == subject:
                entry = {"mediaType": media_type, "digest": d, "size": len(body)}
                artifact_type = document.get("artifactType") or document.get("config", {}).get("mediaType")
                if artifact_type:
                    entry["artifactType"] = artifact_type
                if document.get("annotations"):
                    entry["annotations"] = document["annotations"]
                entries.append(entry)
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()

    async def read_blob(self, repository: str, d: str, limit: int) -> bytes:
        self.asked["GET blob"] += 1
        return self.blobs[(repository, d)]

    async def blob_chunks(self, repository: str, d: str, size: int) -> AsyncIterator[bytes]:
        self.asked["GET blob"] += 1
        data = self.blobs[(repository, d)]
        for start in range(0, len(data), 3):  # in small chunks, as a stream would be
            yield data[start : start + 3]

    async def has_blob(self, repository: str, d: str) -> bool:
        self.asked["HEAD blob"] += 1
        return (repository, d) in self.blobs

    async def mount_blob(self, repository: str, d: str, source_repository: str) -> bool:
        self.asked["mount"] += 1
        self.blobs[(repository, d)] = self.blobs[(source_repository, d)]
        return True

    async def put_blob(self, repository: str, d: str, size: int, chunks: Callable[[], AsyncIterable[bytes]]) -> None:
        self.asked["PUT blob"] += 1
        data = b"".join([chunk async for chunk in chunks()])
        assert digest(data) == d and len(data) == size
        self.blobs[(repository, d)] = data

    async def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> bool:
        self.asked["PUT manifest"] += 1
        self.manifest(repository, body, media_type, tag=None if reference.startswith("sha256:") else reference)
        if reference.startswith("sha256:"):
            assert reference == digest(body)
        return self.referrers_api and "subject" in json.loads(body)


T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = load_public_key(
    "keys/cosign.pub",
    PRIVATE.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
)


def oci_manifest(config: Dict[str, object], layers: List[Dict[str, object]], **extra: object) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers, **extra}).encode()


def push_image(registry: MemoryRegistry, repository: str = "app") -> str:
    body = oci_manifest(registry.blob(repository, b'{"os":"linux"}'), [registry.blob(repository, b"layer bytes")])
    return registry.manifest(repository, body, tag="1")


def sign(registry: MemoryRegistry, repository: str, subject: str, key: ec.EllipticCurvePrivateKey = PRIVATE) -> str:
    """A cosign tag-scheme signature, appended to the `.sig` tag as cosign does."""
    payload = json.dumps(
        {"critical": {"image": {"docker-manifest-digest": subject}, "type": "cosign container image signature", "identity": {}}}
    ).encode()
    layer = registry.blob(repository, payload)
    layer.update(
        mediaType=COSIGN_SIMPLE_SIGNING,
        annotations={SIGNATURE_ANNOTATION: base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()},
    )
    tag = digest_tag(subject, "sig")
    existing = registry.tags.get((repository, tag))
    layers = json.loads(registry.manifests[(repository, existing)][0])["layers"] if existing else []
    config = registry.blob(repository, json.dumps({"rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers + [layer]]}}).encode())
    return registry.manifest(repository, oci_manifest(config, layers + [layer]), tag=tag)


def attach_sbom(registry: MemoryRegistry, repository: str, subject: str, content: bytes = b'{"spdxVersion":"SPDX-2.3"}') -> str:
    """An SPDX SBOM as an OCI 1.1 referrer; on a registry without the API, listed by the
    fallback tag as writers do."""
    config = registry.blob(repository, EMPTY_CONFIG)
    config["mediaType"] = "application/vnd.oci.empty.v1+json"
    layer = registry.blob(repository, content)
    layer["mediaType"] = "application/spdx+json"
    body = oci_manifest(config, [layer], artifactType="application/spdx+json",
                        subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 1})  # fmt: skip
    referrer = registry.manifest(repository, body)
    if not registry.referrers_api:
        tag = digest_tag(subject)
        existing = registry.tags.get((repository, tag))
        entries = json.loads(registry.manifests[(repository, existing)][0])["manifests"] if existing else []
        entries.append({"mediaType": OCI_MANIFEST, "digest": referrer, "size": len(body), "artifactType": "application/spdx+json"})
        registry.manifest(repository, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode(), OCI_INDEX, tag=tag)
    return referrer


def mirror(
    source: MemoryRegistry, destination: MemoryRegistry, subject: str, keys: Sequence[PublicKey] = ()
) -> Tuple[Found, Plan, CopyResult]:
    src, dst = Location(source, "app"), Location(destination, "mirror/app")
    found = run(find(src, subject, [dst], OCI_MANIFEST))
    (plan,) = found.plans
    return found, plan, run(copy(src, dst, subject, plan, keys))


def assert_next_run_finds_everything_in_place(
    source: MemoryRegistry, destination: MemoryRegistry, subject: str
) -> None:
    """A run after the copy plans nothing and reads no manifest at the source (HEADs only)."""
    source.asked.clear()
    destination.asked.clear()
    _, plan, _ = mirror(source, destination, subject)
    assert plan.empty and source.asked["GET manifest"] == 0


def test_everything_is_copied_with_its_digest_then_a_re_mirror_costs_heads_only() -> None:
    for source_api, destination_api in [(False, False), (True, False), (False, True), (True, True)]:
        source = MemoryRegistry("src", referrers_api=source_api)
        destination = MemoryRegistry("dst", referrers_api=destination_api)
        subject = push_image(source)
        sig = sign(source, "app", subject)
        sbom = attach_sbom(source, "app", subject)
        found, plan, copied = mirror(source, destination, subject)
        assert copied.outcome == "ok", (source_api, destination_api)
        assert sorted(i.kind for i in copied.copied) == ["SBOM", "signature"]
        assert destination.tags[("mirror/app", digest_tag(subject, "sig"))] == sig
        assert ("mirror/app", sbom) in destination.manifests
        if not destination_api:  # listed by the fallback tag
            listed = destination.manifests[("mirror/app", destination.tags[("mirror/app", digest_tag(subject))])][0]
            assert [e["digest"] for e in json.loads(listed)["manifests"]] == [sbom]
        # Again, nothing new: HEADs (and the API's list where there is one), no manifest GET.
        source.asked.clear()
        destination.asked.clear()
        found, plan, copied = mirror(source, destination, subject)
        assert plan.empty and copied.copied == ()
        assert source.asked["GET manifest"] == destination.asked["GET manifest"] == 0
        # The tag list says which tags exist: the `.sig` tag, and without the API the fallback tag.
        assert source.asked["GET tags"] == 1
        assert source.asked["HEAD manifest"] == 1 + (0 if source_api else 1)
        assert destination.asked["HEAD manifest"] == 2  # the `.sig` tag, the listing by digest
        assert destination.asked["GET tags"] == 0
        assert not destination.asked["PUT manifest"] and not destination.asked["PUT blob"]


@pytest.mark.parametrize("source_api", [False, True])
def test_with_nothing_attached_the_tag_list_is_all_the_source_is_asked(source_api: bool) -> None:
    source = MemoryRegistry("src", referrers_api=source_api)
    destination = MemoryRegistry("dst", referrers_api=False)
    subject = push_image(source)
    found, plan, copied = mirror(source, destination, subject)
    assert found.counts() == {} and plan.empty and copied.copied == ()
    # The referrers API's list (asked once per registry and run where there is none, to learn
    # that): no `HEAD`; the destination is not asked.
    assert source.asked == Counter({"GET tags": 1, "GET referrers": 1})
    assert destination.asked == Counter()


@pytest.mark.parametrize("source_api", [False, True])
def test_without_a_tag_list_every_tag_is_asked_for_by_head(source_api: bool) -> None:
    source = MemoryRegistry("src", referrers_api=source_api, tag_list=False)
    destination = MemoryRegistry("dst", referrers_api=False)
    subject = push_image(source)
    sign(source, "app", subject)
    attach_sbom(source, "app", subject)
    _, _, copied = mirror(source, destination, subject)
    assert sorted(i.kind for i in copied.copied) == ["SBOM", "signature"]
    source.asked.clear()
    _, plan, _ = mirror(source, destination, subject)
    assert plan.empty and source.asked["GET manifest"] == 0
    assert source.asked["HEAD manifest"] == 3 + (0 if source_api else 1)


def test_a_signature_added_upstream_later_is_the_only_thing_copied() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), MemoryRegistry("dst", referrers_api=False)
    subject = push_image(source)
    sign(source, "app", subject)
    mirror(source, destination, subject)
    new_sig = sign(source, "app", subject, ec.generate_private_key(ec.SECP256R1()))
    destination.asked.clear()
    _, plan, copied = mirror(source, destination, subject)
    assert [(i.kind, i.digest) for i in copied.copied] == [("signature", new_sig)]
    assert destination.tags[("mirror/app", digest_tag(subject, "sig"))] == new_sig
    # The new `.sig` manifest and the new layer's blob; the first signature's blobs were there.
    assert destination.asked["PUT manifest"] == 1


def test_signatures_made_at_the_mirror_are_kept_when_upstream_signs_again() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), MemoryRegistry("dst", referrers_api=False)
    subject = push_image(source)
    sign(source, "app", subject)
    mirror(source, destination, subject)
    ours = ec.generate_private_key(ec.SECP256R1())
    sign(destination, "mirror/app", subject, ours)  # the shop signs what it mirrored
    upstream_new = sign(source, "app", subject, ec.generate_private_key(ec.SECP256R1()))
    _, _, copied = mirror(source, destination, subject)
    assert copied.outcome == "ok"
    merged = json.loads(destination.manifests[("mirror/app", destination.tags[("mirror/app", digest_tag(subject, "sig"))])][0])
    assert len(merged["layers"]) == 3  # upstream's first, the shop's, upstream's second
    assert ("mirror/app", upstream_new) in destination.manifests  # kept under its own digest
    assert_next_run_finds_everything_in_place(source, destination, subject)


def test_a_fallback_index_keeps_the_entries_someone_else_put_there() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), MemoryRegistry("dst", referrers_api=False)
    subject = push_image(source)
    destination_subject = push_image(destination, "mirror/app")
    assert destination_subject == subject
    theirs = attach_sbom(destination, "mirror/app", subject, b'{"theirs": true}')
    ours = attach_sbom(source, "app", subject)
    _, _, copied = mirror(source, destination, subject)
    assert copied.outcome == "ok"
    listed = destination.manifests[("mirror/app", destination.tags[("mirror/app", digest_tag(subject))])][0]
    assert [e["digest"] for e in json.loads(listed)["manifests"]] == [theirs, ours]
    assert_next_run_finds_everything_in_place(source, destination, subject)


def test_the_gate() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), MemoryRegistry("dst", referrers_api=False)
    subject = push_image(source)
    _, _, unsigned = mirror(source, destination, subject, keys=[PUBLIC])
    assert unsigned.outcome == "unsigned" and "no cosign signature" in (unsigned.message or "")
    sign(source, "app", subject, ec.generate_private_key(ec.SECP256R1()))
    _, _, stranger = mirror(source, destination, subject, keys=[PUBLIC])
    assert stranger.outcome == "unsigned" and "none verifies against keys/cosign.pub" in (stranger.message or "")
    assert not destination.manifests and not destination.blobs  # nothing of it was written
    sign(source, "app", subject)
    _, _, signed = mirror(source, destination, subject, keys=[PUBLIC])
    assert signed.outcome == "ok" and signed.verified_by == "keys/cosign.pub"


def test_same_registry_blobs_are_mounted_not_streamed() -> None:
    registry = MemoryRegistry("r", referrers_api=False)
    subject = push_image(registry)
    sign(registry, "app", subject)
    found = run(find(Location(registry, "app"), subject, [Location(registry, "mirror/app")]))
    run(copy(Location(registry, "app"), Location(registry, "mirror/app"), subject, found.plans[0]))
    assert registry.asked["mount"] == 2 and registry.asked["PUT blob"] == 0


def test_indexes_nested_deeper_than_the_cap_are_refused() -> None:
    from docker_mirror.probe.referrers import MAX_DEPTH, ReferrersError

    source, destination = MemoryRegistry("src", referrers_api=True), MemoryRegistry("dst", referrers_api=True)
    subject = push_image(source)
    # A referrer that is an index of an index of ... of a manifest, MAX_DEPTH + 1 levels deep.
    child = source.manifest("app", oci_manifest(source.blob("app", b"{}"), []))
    for _ in range(MAX_DEPTH + 1):
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": 1}]}).encode()  # fmt: skip
        child = source.manifest("app", body, OCI_INDEX)
    top = json.loads(source.manifests[("app", child)][0])
    top["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}
    source.manifest("app", json.dumps(top).encode(), OCI_INDEX)
    found = run(find(Location(source, "app"), subject, [Location(destination, "mirror/app")]))
    (plan,) = found.plans
    assert [item.media_type for item in plan.items] == [OCI_INDEX]
    with pytest.raises(ReferrersError, match=f"nests indexes deeper than {MAX_DEPTH}"):
        run(copy(Location(source, "app"), Location(destination, "mirror/app"), subject, plan))


# ---------------------------------------------------------------------------------------------
# Referrers are checked before they are written


def forged_sbom(registry: MemoryRegistry, repository: str, subject: str, name: bytes = b"forged") -> Tuple[str, bytes]:
    """An SBOM whose `subject` is `subject` (another image), stored at the source; not listed."""
    config = registry.blob(repository, EMPTY_CONFIG)
    layer = registry.blob(repository, name)
    body = oci_manifest(config, [layer], artifactType="application/spdx+json",
                        subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 1})  # fmt: skip
    return registry.manifest(repository, body), body


def listed_as_referrers(registry: MemoryRegistry, repository: str, subject: str) -> List[str]:
    return [e["digest"] for e in json.loads(run(registry.referrers(repository, subject)) or b"{}").get("manifests", [])]


def test_a_referrer_naming_another_image_is_refused_and_nothing_is_written() -> None:
    """The source lists, among its image's referrers, an SBOM whose subject is another image
    the destination already has: refused, naming it, before anything of it is written."""
    source, destination = MemoryRegistry("src", referrers_api=True), MemoryRegistry("dst", referrers_api=True)
    subject = push_image(source)
    trusted = destination.manifest("mirror/app", oci_manifest(destination.blob("mirror/app", b'{"os":"plan9"}'), []), tag="2")
    forged, body = forged_sbom(source, "app", trusted)
    listing = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                          "manifests": [{"mediaType": OCI_MANIFEST, "digest": forged, "size": len(body)}]}).encode()  # fmt: skip
    source.referrers = lambda repository, d: _answer(listing if d == subject else None)  # type: ignore[assignment,method-assign]
    src, dst = Location(source, "app"), Location(destination, "mirror/app")
    (plan,) = run(find(src, subject, [dst])).plans
    assert [item.digest for item in plan.items] == [forged]
    before = dict(destination.manifests), dict(destination.blobs)
    with pytest.raises(ReferrersError) as refused:
        run(copy(src, dst, subject, plan))
    assert str(refused.value) == (
        f"manifest {forged} at src/app names {trusted} as its subject, not the image being mirrored ({subject[:19]}): refused"
    )
    assert (destination.manifests, destination.blobs) == before
    assert listed_as_referrers(destination, "mirror/app", trusted) == []


async def _answer(value: Optional[bytes]) -> Optional[bytes]:
    return value


def test_a_sig_manifest_or_a_referrers_child_naming_another_image_is_refused() -> None:
    other = "sha256:" + "66" * 32
    for where in ("sig", "child"):
        source, destination = MemoryRegistry("src", referrers_api=True), MemoryRegistry("dst", referrers_api=True)
        subject = push_image(source)
        forged, body = forged_sbom(source, "app", other)
        if where == "sig":
            source.tags[("app", digest_tag(subject, "sig"))] = forged
        else:  # an index of the image whose child names another image
            index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "application/spdx+json",
                                "manifests": [{"mediaType": OCI_MANIFEST, "digest": forged, "size": len(body)}],
                                "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}}).encode()  # fmt: skip
            source.manifest("app", index, OCI_INDEX)
        src, dst = Location(source, "app"), Location(destination, "mirror/app")
        (plan,) = run(find(src, subject, [dst])).plans
        assert len(plan.items) == 1, where
        with pytest.raises(ReferrersError, match=f"^manifest {forged} at src/app names {other} as its subject"):
            run(copy(src, dst, subject, plan))
        assert not destination.manifests and not destination.blobs, where


def test_a_fallback_listing_naming_another_image_is_refused_when_read() -> None:
    """Without the referrers API, the source's fallback tag serves a "listing" that is itself a
    referrer of another image (a fake fallback-tag digest): refused, naming it."""
    other = "sha256:" + "66" * 32
    source, destination = MemoryRegistry("src", referrers_api=False), MemoryRegistry("dst", referrers_api=True)
    subject = push_image(source)
    forged, _ = forged_sbom(source, "app", other)
    source.tags[("app", digest_tag(subject))] = forged
    with pytest.raises(ReferrersError, match=f"^the referrers index {forged} at src/app \\(the fallback tag "
                                             f"{digest_tag(subject)}\\) names {other} as its subject"):  # fmt: skip
        run(find(Location(source, "app"), subject, [Location(destination, "mirror/app")]))
    # A plan carrying such a listing (made elsewhere) is refused before anything is written.
    listing = Listing.of(source.manifests[("app", forged)][0])
    with pytest.raises(ReferrersError, match=f"names {other} as its subject"):
        run(copy(Location(source, "app"), Location(destination, "mirror/app"), subject, Plan((), listing)))
    assert not destination.manifests


def attach_index(registry: MemoryRegistry, repository: str, subject: str, n: int, children: int) -> str:
    """A referrer that is an index of `children` manifests (a multi-platform SBOM, say)."""
    config = registry.blob(repository, EMPTY_CONFIG)
    entries = []
    for c in range(children):
        child = oci_manifest(config, [], annotations={"n": f"{n}.{c}"})
        entries.append({"mediaType": OCI_MANIFEST, "digest": registry.manifest(repository, child), "size": len(child)})
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "application/spdx+json",
                       "manifests": entries, "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}}).encode()  # fmt: skip
    return registry.manifest(repository, body, OCI_INDEX)


def test_a_copy_past_its_bound_stops_and_says_what_it_wrote() -> None:
    """400 referrers, each an index of 2 manifests: the bound of manifests is met within the
    342nd, before anything of it is written."""
    source, destination = MemoryRegistry("src", referrers_api=True), MemoryRegistry("dst", referrers_api=True)
    subject = push_image(source)
    for n in range(400):
        attach_index(source, "app", subject, n, 2)
    src, dst = Location(source, "app"), Location(destination, "mirror/app")
    (plan,) = run(find(src, subject, [dst])).plans
    assert len(plan.items) == 400
    with pytest.raises(BoundExceeded) as stopped:
        run(copy(src, dst, subject, plan))
    message = str(stopped.value)
    whole = MAX_COPY_MANIFESTS // 3
    assert message.startswith(f"the referrers of {subject[:19]} are more than the {MAX_COPY_MANIFESTS} manifests "
                              f"copied per image: stopped before sha256:")  # fmt: skip
    assert message.endswith(
        f"; written at dst/mirror/app before it stopped: {3 * whole} manifests, 1 blobs (2 bytes), "
        f"{whole} of 400 referrers whole"
    ), message
    assert len(destination.manifests) == 3 * whole


def test_the_gate_fails_closed_at_the_deadline() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), MemoryRegistry("dst", referrers_api=False)
    subject = push_image(source)
    sign(source, "app", subject)
    src, dst = Location(source, "app"), Location(destination, "mirror/app")
    (plan,) = run(find(src, subject, [dst])).plans
    late = run(copy(src, dst, subject, plan, [PUBLIC], deadline=time.monotonic() - 1))
    assert late.outcome == "unsigned" and "verification stopped at the deadline after 0 checks" in (late.message or "")
    assert not destination.manifests and not destination.blobs
    assert run(copy(src, dst, subject, plan, [PUBLIC], deadline=time.monotonic() + 60)).outcome == "ok"


# ---------------------------------------------------------------------------------------------
# The platform manifests of an image index have referrers of their own


def push_index(registry: MemoryRegistry, repository: str = "app", platforms: Sequence[str] = ("amd64", "arm64")) -> Tuple[str, List[str]]:
    """A multi-platform image: (the index's digest, its platform manifests' digests)."""
    children = []
    for architecture in platforms:
        config = registry.blob(repository, json.dumps({"os": "linux", "architecture": architecture}).encode())
        body = oci_manifest(config, [registry.blob(repository, architecture.encode())])
        children.append({"mediaType": OCI_MANIFEST, "digest": registry.manifest(repository, body), "size": len(body),
                         "platform": {"os": "linux", "architecture": architecture}})  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    return registry.manifest(repository, index, OCI_INDEX, tag="1"), [str(c["digest"]) for c in children]


def keep_index(source: MemoryRegistry, destination: MemoryRegistry, subject: str) -> None:
    """The destination has the image itself, as after its copy (the index and its manifests)."""
    body = source.manifests[("app", subject)][0]
    destination.manifest("mirror/app", body, OCI_INDEX, tag="1")
    for entry in json.loads(body)["manifests"]:
        destination.manifest("mirror/app", source.manifests[("app", entry["digest"])][0])


def find_index(source: MemoryRegistry, destination: MemoryRegistry, subject: str) -> Found:
    return run(find(Location(source, "app"), subject, [Location(destination, "mirror/app")], OCI_INDEX))


@pytest.mark.parametrize("source_api", [False, True])
def test_a_platform_manifests_signature_and_sbom_travel_with_the_index(source_api: bool) -> None:
    """`cosign sign --recursive` signs each platform's manifest; an SBOM tool attaches to one:
    both are copied, and a re-mirror reads the index from the destination, not the source."""
    source = MemoryRegistry("src", referrers_api=source_api)
    destination = MemoryRegistry("dst", referrers_api=False)
    subject, (amd64, arm64) = push_index(source)
    own_sig = sign(source, "app", subject)
    amd64_sig = sign(source, "app", amd64)
    sbom = attach_sbom(source, "app", arm64)
    keep_index(source, destination, subject)
    found = find_index(source, destination, subject)
    (plan,) = found.plans
    assert found.counts() == {"signature": 1}
    assert found.platform_counts() == {"signature": 1, "SBOM": 1}
    assert set(plan.children) == {amd64, arm64}
    assert [child for child, _ in plan.child_listings] == [arm64]
    copied = run(copy(Location(source, "app"), Location(destination, "mirror/app"), subject, plan))
    assert copied.outcome == "ok"
    assert sorted((i.kind, i.digest) for i in copied.copied) == sorted(
        [("signature", own_sig), ("signature", amd64_sig), ("SBOM", sbom)]
    )
    assert destination.tags[("mirror/app", digest_tag(amd64, "sig"))] == amd64_sig
    fallback = destination.manifests[("mirror/app", destination.tags[("mirror/app", digest_tag(arm64))])][0]
    assert [e["digest"] for e in json.loads(fallback)["manifests"]] == [sbom]
    # A re-mirror: nothing to copy; the index's body comes from the destination.
    source.asked.clear()
    destination.asked.clear()
    again = find_index(source, destination, subject)
    assert all(plan.empty for plan in again.plans)
    assert source.asked["GET manifest"] == 0 and destination.asked["GET manifest"] == 1
    if not source_api:
        # The tag list; a HEAD of each tag it names: `.sig` of the index and of amd64, arm64's
        # fallback tag.
        assert source.asked == Counter({"GET tags": 1, "HEAD manifest": 3, "GET referrers": 3})


def test_an_index_whose_platforms_have_nothing_attached_is_not_read() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), MemoryRegistry("dst", referrers_api=False)
    subject, _ = push_index(source)
    sign(source, "app", subject)
    keep_index(source, destination, subject)
    found = find_index(source, destination, subject)
    assert found.children == () and found.platform_counts() == {}
    assert source.asked["GET manifest"] == destination.asked["GET manifest"] == 0


def test_without_a_tag_list_each_platform_manifests_tags_are_asked_for() -> None:
    source = MemoryRegistry("src", referrers_api=False, tag_list=False)
    destination = MemoryRegistry("dst", referrers_api=False)
    subject, (amd64, arm64) = push_index(source)
    amd64_sig = sign(source, "app", amd64)
    (plan,) = find_index(source, destination, subject).plans
    assert [(i.tag, i.digest) for i in plan.items] == [(digest_tag(amd64, "sig"), amd64_sig)]
    assert plan.children == (amd64,)
    # 4 tags of the index, 4 of each platform manifest; the index read from the source.
    assert source.asked["HEAD manifest"] == 12 and source.asked["GET manifest"] == 1


def test_a_platform_manifests_referrer_may_name_it_and_no_other_manifest() -> None:
    source, destination = MemoryRegistry("src", referrers_api=False), MemoryRegistry("dst", referrers_api=True)
    subject, (amd64, _) = push_index(source)
    sbom = attach_sbom(source, "app", amd64)
    (plan,) = find_index(source, destination, subject).plans
    src, dst = Location(source, "app"), Location(destination, "mirror/app")
    # Handed a plan that does not name amd64 as a platform manifest, the copy refuses its SBOM.
    with pytest.raises(ReferrersError, match=f"^manifest {sbom} at src/app names {amd64} as its subject"):
        run(copy(src, dst, subject, Plan(plan.items)))
    with pytest.raises(ReferrersError, match=f"is of {amd64}, not of a manifest of {subject}"):
        run(copy(src, dst, subject, Plan(plan.items, child_listings=plan.child_listings)))
    assert not destination.manifests
    assert run(copy(src, dst, subject, plan)).outcome == "ok"
    assert listed_as_referrers(destination, "mirror/app", amd64) == [sbom]


def test_an_index_of_too_many_manifests_fails_its_image() -> None:
    from docker_mirror.probe.mirror_referrers import MAX_PLATFORM_MANIFESTS

    source, destination = MemoryRegistry("src", referrers_api=False), MemoryRegistry("dst", referrers_api=False)
    subject, children = push_index(source, platforms=[f"arch{n}" for n in range(MAX_PLATFORM_MANIFESTS + 1)])
    sign(source, "app", children[0])
    with pytest.raises(ReferrersError, match=f"lists more than {MAX_PLATFORM_MANIFESTS} manifests"):
        find_index(source, destination, subject)
