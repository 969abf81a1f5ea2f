"""What copy mode asks registries for, and how it resolves a source from the probe's answers:
pure functions."""

from __future__ import annotations

import dataclasses

from docker_mirror_testutil.probe_results import (
    AMD64_DIGEST,
    ARM64_DIGEST,
    INDEX,
    failed,
    probed,
    served,
)
from docker_mirror.util_rules.destinations import Destination
from docker_mirror.util_rules.manifest_reads import (
    destinations_to_check,
    reads_owner,
    resolve_source,
    source_read,
)
from docker_mirror.oci.manifests import manifest_digest
from docker_mirror.oci.media_types import OCI_INDEX, OCI_MANIFEST
from docker_mirror.util_rules.probe import merge_needs
from pants.engine.addresses import Address

SOURCE = "127.0.0.1:5000/team/app:1"


def test_resolve_all_platforms() -> None:
    source = resolve_source(SOURCE, None, probed(served(SOURCE, INDEX)))
    assert source.error is None
    assert source.digest == manifest_digest(INDEX)
    assert source.media_type == OCI_INDEX
    assert source.platforms == ("linux/amd64", "linux/arm64")
    assert source.pinned == f"127.0.0.1:5000/team/app@{manifest_digest(INDEX)}"
    assert source.summary.endswith("2 platforms: linux/amd64, linux/arm64")
    # An index of one platform (and, say, its attestation) is one platform, not "1 platforms".
    one = dataclasses.replace(source, platforms=("linux/amd64",))
    assert one.summary.endswith(", 1 platform: linux/amd64")


def test_a_head_resolves_the_digest_without_the_body() -> None:
    source = resolve_source(SOURCE, None, probed(served(SOURCE, INDEX, with_body=False)))
    assert source.error is None
    assert (source.digest, source.media_type) == (manifest_digest(INDEX), OCI_INDEX)
    # The platforms are in the body, which a no-op re-mirror never fetches.
    assert source.platforms is None
    assert source.summary.endswith(", an image index, every platform")


def test_resolve_one_platform_pins_its_manifest() -> None:
    source = resolve_source("team/app:1", "linux/arm64", probed(served("team/app:1", INDEX)))
    assert source.digest == ARM64_DIGEST
    assert source.index_digest == manifest_digest(INDEX)
    assert source.media_type == OCI_MANIFEST
    assert source.pinned == f"team/app@{ARM64_DIGEST}"


def test_resolve_failures_name_image_and_registry() -> None:
    missing = resolve_source(
        SOURCE, None, probed(failed(SOURCE, "not_found", "manifest unknown"))
    )
    assert missing.digest is None
    assert missing.error == (
        "source 127.0.0.1:5000/team/app:1 at registry 127.0.0.1:5000: not found "
        "(manifest unknown)"
    )
    no_platform = resolve_source("team/app:1", "linux/s390x", probed(served("team/app:1", INDEX)))
    assert no_platform.error == (
        "source team/app:1 at registry docker.io: the image index has no linux/s390x image "
        "(it has: linux/amd64, linux/arm64)"
    )
    unread = resolve_source(SOURCE, None, probed())
    assert unread.error is not None and "not read" in unread.error


def test_a_source_pinned_by_digest_needs_no_request() -> None:
    pinned = f"127.0.0.1:5000/team/app:1@{AMD64_DIGEST}"
    assert source_read(pinned, None) is None
    source = resolve_source(pinned, None, probed())
    assert (source.error, source.digest) == (None, AMD64_DIGEST)
    assert source.pinned == f"127.0.0.1:5000/team/app@{AMD64_DIGEST}"
    # A platform of a pinned index: the index is needed, by its digest.
    assert source_read(pinned, "linux/arm64") == (f"127.0.0.1:5000/team/app@{AMD64_DIGEST}", True)


def test_what_the_source_registry_is_asked_for() -> None:
    assert source_read("a.io/x:1", None) == ("a.io/x:1", False)
    assert source_read("a.io/x", None) == ("a.io/x:latest", False)
    assert source_read("a.io/x:1", "linux/amd64") == ("a.io/x:1", True)


def test_a_reference_is_read_once_with_its_body_if_anyone_needs_it() -> None:
    assert merge_needs([("a:1", False), ("b:1", False), ("a:1", True), ("b:1", False)]) == {
        "a:1": True,
        "b:1": False,
    }


def test_generated_images_share_their_generators_reads() -> None:
    generated = Address("src", target_name="mirror", generated_name="python")
    assert reads_owner(generated) == Address("src", target_name="mirror")
    by_hand = Address("src", target_name="python")
    assert reads_owner(by_hand) == by_hand


def test_only_destinations_that_would_be_written_are_checked() -> None:
    pushed = Destination("127.0.0.1:5000", "mirror", "mirror/app", "1")
    skipped = Destination("archive.lan", "archive", "app", "1", skipped_by="`skip_push`")
    assert destinations_to_check((pushed, skipped), skip_push=False) == (pushed,)
    assert destinations_to_check((pushed, skipped), skip_push=True) == ()
