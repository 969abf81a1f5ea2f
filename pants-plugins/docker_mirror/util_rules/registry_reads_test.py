"""What the plugin asks registries for through the probe, and what it makes of the answers: pure
functions."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from docker_mirror_testutil.probe_results import (
    AMD64_DIGEST,
    ARM64_DIGEST,
    INDEX,
    failed,
    probed,
    served,
)
from docker_mirror.util_rules.destinations import Destination
from docker_mirror.util_rules.registry_reads import (
    RegistryReads,
    destinations_to_check,
    failed_probe_message,
    manifest_reads,
    merge_needs,
    merge_reads,
    read_failure,
    read_result,
    reads_owner,
    resolve_source,
    source_read,
    source_referrers,
)
from docker_mirror.oci.manifests import digest_of, narrowed_index
from docker_mirror.oci.media_types import OCI_INDEX, OCI_MANIFEST
from docker_mirror.oci.probe_protocol import (
    CopyItem,
    ManifestRead,
    ProbeRequest,
    ReferrersRead,
    ReferrersResult,
    encoded,
)
from pants.engine.fs import FileContent
from pants.util.frozendict import FrozenDict
from pants.engine.addresses import Address

SOURCE = "127.0.0.1:5000/team/app:1"


def test_resolve_all_platforms() -> None:
    source = resolve_source(SOURCE, None, probed(served(SOURCE, INDEX)))
    assert source.error is None
    assert source.digest == digest_of(INDEX)
    assert source.media_type == OCI_INDEX
    assert source.platforms == ("linux/amd64", "linux/arm64")
    assert source.pinned == f"127.0.0.1:5000/team/app@{digest_of(INDEX)}"
    assert source.summary.endswith("2 platforms: linux/amd64, linux/arm64")
    # An index of one platform (and, say, its attestation) is one platform, not "1 platforms".
    one = dataclasses.replace(source, platforms=("linux/amd64",))
    assert one.summary.endswith(", 1 platform: linux/amd64")


def test_a_head_resolves_the_digest_without_the_body() -> None:
    source = resolve_source(SOURCE, None, probed(served(SOURCE, INDEX, with_body=False)))
    assert source.error is None
    assert (source.digest, source.media_type) == (digest_of(INDEX), OCI_INDEX)
    # The platforms are in the body, which a no-op re-mirror never fetches.
    assert source.platforms is None
    assert source.summary.endswith(", an image index, every platform")


def test_resolve_one_platform_pins_its_manifest() -> None:
    source = resolve_source("team/app:1", "linux/arm64", probed(served("team/app:1", INDEX)))
    assert source.digest == ARM64_DIGEST
    assert source.index_digest == digest_of(INDEX)
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


# ---------------------------------------------------------------------------------------------
# The probe's request and result files, as the plugin writes and reads them

DIGEST = "sha256:" + "a" * 64
SIG = CopyItem("signature", "sha256:" + "5" * 64, "application/vnd.oci.image.manifest.v1+json", "sha256-x.sig")
SETTINGS: dict[str, Any] = dict(
    insecure_registries=("registry.lan:5000",),
    max_concurrency_per_registry=8,
    attempts=4,
    timeout_seconds=30.0,
    max_retry_after_seconds=60.0,
)


def answered(content: bytes, references: list[str], referrers: tuple[ReferrersRead, ...] = ()) -> RegistryReads:
    return RegistryReads.answered(
        *read_result([FileContent("probe-result.json", content)]), references, referrers
    )


def test_the_request_lists_each_reference_once_in_order_with_the_settings() -> None:
    request = json.loads(encoded(ProbeRequest(manifest_reads({"b.io/x:1": False, "a.io/y:2": True}), **SETTINGS)))
    assert request == {
        "version": 1,
        "requests": [
            {"reference": "a.io/y:2", "need_body": True},
            {"reference": "b.io/x:1", "need_body": False},
        ],
        "insecure_registries": ["registry.lan:5000"],
        "max_concurrency_per_registry": 8,
        "attempts": 4,
        "timeout_seconds": 30,
        "max_retry_after_seconds": 60,
        "deadline_seconds": 600,
    }


def test_the_request_carries_the_referrer_reads() -> None:
    reads = (ReferrersRead("a:1", None, ("r/x",)),)
    document = json.loads(encoded(ProbeRequest((ManifestRead("a:1"),), referrers=reads)))
    assert document["referrers"] == [{"reference": "a:1", "platform": None, "destinations": ["r/x"]}]
    assert "referrers" not in json.loads(encoded(ProbeRequest((ManifestRead("a:1"),))))


def test_results_are_matched_by_reference() -> None:
    body = b'{"schemaVersion": 2}'
    result = json.dumps(
        {
            "version": 1,
            "results": [
                {"reference": "b.io/x:1", "outcome": "not_found", "message": "manifest unknown"},
                {
                    "reference": "a.io/y:2",
                    "outcome": "ok",
                    "digest": DIGEST,
                    "media_type": "application/vnd.oci.image.index.v1+json",
                    "body": base64.b64encode(body).decode(),
                },
            ],
        }
    ).encode()
    found = answered(result, ["a.io/y:2", "b.io/x:1"])
    assert found.get("a.io/y:2").found and found.get("a.io/y:2").digest == DIGEST
    assert found.get("a.io/y:2").body == body
    assert not found.get("b.io/x:1").found
    assert read_failure(found.get("b.io/x:1"), "source b.io/x:1") == (
        "source b.io/x:1: not found (manifest unknown)"
    )


def test_the_fingerprint_tells_reads_apart_by_what_was_read_and_only_that() -> None:
    """What a copy carries in place of its generator's reads: equal reads, equal fingerprints
    (the run that decided the copy is still the one running), and any difference shows."""

    def result(digest: str, *, sent: int = 1) -> bytes:
        return json.dumps({"version": 1, "results": [{"reference": "a.io/y:2", "outcome": "ok", "digest": digest}],
                           "requests_sent": {"a.io": {"HEAD": sent, "GET": 0, "token": 0}},
                           "peak_rss_kib": 40000 + sent, "cpu_seconds": 0.1 * sent}).encode()  # fmt: skip

    first = answered(result(DIGEST), ["a.io/y:2"])
    assert answered(result(DIGEST), ["a.io/y:2"]).fingerprint == first.fingerprint
    # How the probe went about it is not what it read.
    assert answered(result(DIGEST, sent=3), ["a.io/y:2"]).fingerprint == first.fingerprint
    assert answered(result("sha256:" + "9" * 64), ["a.io/y:2"]).fingerprint != first.fingerprint
    assert answered(result(DIGEST), ["a.io/y:2", "b.io/x:1"]).fingerprint != first.fingerprint
    assert len(first.fingerprint) == 64


def test_a_refusal_names_the_registry_and_how_to_log_in_and_keeps_why() -> None:
    no_credentials = failed(
        "r.lan:5000/x:1", "unauthorized",
        "unauthorized by r.lan:5000 (401) for x:1: no credentials for r.lan:5000 in the Docker "
        "config or containers auth files",
    )  # fmt: skip
    assert read_failure(no_credentials, "source r.lan:5000/x:1") == (
        "source r.lan:5000/x:1: access denied by registry r.lan:5000 (no credentials for "
        "r.lan:5000 in the Docker config or containers auth files); log in with "
        "`docker login r.lan:5000` (or `skopeo login r.lan:5000`)"
    )
    denied = failed("ghcr.io/x:1", "denied", "access denied by ghcr.io (403) to x:1")
    assert read_failure(denied, "destination ghcr.io/x:1").startswith(
        "destination ghcr.io/x:1: access denied by registry ghcr.io (403: "
    )
    # Docker Hub, for a reference that names no registry.
    assert "`docker login docker.io`" in read_failure(failed("python:3", "unauthorized", "?"), "s")


def test_a_missing_or_broken_result_fails_the_references_it_does_not_answer() -> None:
    # An answer the probe never gave must not read as "serves nothing", which would copy, nor
    # as up to date.
    partial = json.dumps({"results": [{"reference": "a.io/y:2", "outcome": "ok", "digest": DIGEST}]})
    found = answered(partial.encode(), ["a.io/y:2", "b.io/x:1"])
    assert found.get("b.io/x:1").outcome == "error" and not found.get("b.io/x:1").found
    for broken in (b"", b"not json", b"[]", b'{"results": 3}', b'{"results": [{"reference": 1}]}'):
        (result,) = answered(broken, ["a.io/y:2"]).by_reference.values()
        assert result.outcome == "error" and result.message


def test_a_failed_probe_process_says_its_last_error_line() -> None:
    assert failed_probe_message(b"Traceback ...\nValueError: bad request\n", 1) == (
        "the registry probe failed: ValueError: bad request"
    )
    assert failed_probe_message(b"", 9) == "the registry probe failed: exit code 9"


# ---------------------------------------------------------------------------------------------
# What refers to the source


def test_reads_are_merged_by_reference_and_platform() -> None:
    reads = merge_reads(
        [
            ReferrersRead("a:1", None, ("r/x",)),
            ReferrersRead("a:1", "linux/arm64", ("r/x",)),
            ReferrersRead("a:1", None, ("r/y", "r/x")),
        ]
    )
    assert reads == (
        ReferrersRead("a:1", None, ("r/x", "r/y")),
        ReferrersRead("a:1", "linux/arm64", ("r/x",)),
    )


def test_referrers_by_reference_and_platform_and_missing_ones_are_errors() -> None:
    reads = (ReferrersRead("a:1", None, ("r/x",)), ReferrersRead("b:1", None, ("r/y",)))
    results = [
        {
            "reference": "a:1",
            "platform": None,
            "subject": "sha256:" + "1" * 64,
            "found": {"signature": 1, "SBOM": 1},
            "destinations": {"r/x": {"items": [SIG.to_json()], "listing": None}},
            "error": None,
        },
        "garbage",
    ]
    parsed = answered(json.dumps({"results": [], "referrers": results}).encode(), [], reads)
    found = parsed.referrers_of("a:1", None)
    assert found.summary == "1 signature, 1 SBOM" and found.error is None
    assert found.plan_for("r/x").items == (SIG,) and found.plan_for("r/other").empty
    assert parsed.referrers_of("b:1", None).error == "the registry probe gave no result for it"


def test_a_failure_keeps_its_kind_so_the_summary_can_say_what_to_do() -> None:
    read = ReferrersRead("a:1", None, ("r/x",))
    result = {"reference": "a:1", "platform": None, "error": "registry a unreachable", "error_kind": "unreachable"}
    found = answered(json.dumps({"results": [], "referrers": [result]}).encode(), [], (read,))
    assert (found.referrers_of("a:1", None).error, found.referrers_of("a:1", None).error_kind) == (
        "registry a unreachable", "unreachable",
    )  # fmt: skip


def test_referrers_must_be_those_of_the_resolved_digest() -> None:
    reference = "127.0.0.1:5000/team/app:1"
    subject = digest_of(INDEX)
    reads = probed(served(reference, INDEX))
    source = resolve_source(reference, None, reads)

    def with_referrers(found_subject: str) -> RegistryReads:
        return RegistryReads(
            reads.by_reference,
            referrers=FrozenDict({(reference, None, ()): ReferrersResult(reference, None, subject=found_subject)}),
        )

    assert source_referrers(source, with_referrers(subject)).error is None  # type: ignore[union-attr]
    mismatch = source_referrers(source, with_referrers("sha256:" + "9" * 64))
    assert mismatch is not None and mismatch.error == (
        f"they were read for sha256:{'9' * 64}, not for {subject}"
    )
    unread = source_referrers(source, reads)
    assert unread is not None and unread.error == "they were not read"


def test_a_subset_of_platforms_resolves_to_the_filtered_index_and_pins_the_sources() -> None:
    reads = probed(served(SOURCE, INDEX))
    assert source_read(SOURCE, None, ("linux/arm64",)) == (SOURCE, True)
    source = resolve_source(SOURCE, None, reads, ("linux/arm64", "linux/riscv64"))
    assert source.error is None
    assert source.digest == narrowed_index(INDEX, ("linux/arm64",)).digest != digest_of(INDEX)
    assert (source.index_digest, source.platforms, source.missing) == (digest_of(INDEX), ("linux/arm64",), ("linux/riscv64",))
    assert source.pinned == f"127.0.0.1:5000/team/app@{digest_of(INDEX)}"
    assert source.summary.endswith(
        f"1 of 2 platforms: linux/arm64 (filtered from the source's index {digest_of(INDEX)[:19]}, "
        "whose own signatures do not name this digest; it has no linux/riscv64)"
    )
    whole = resolve_source(SOURCE, None, reads, ("linux/arm64", "linux/amd64"))
    assert whole.digest == whole.index_digest == digest_of(INDEX)
    assert whole.summary.endswith("2 platforms: linux/amd64, linux/arm64 (all it has, so the source's index as it is)")
    none = resolve_source(SOURCE, None, reads, ("windows/amd64",))
    assert none.error == (
        "source 127.0.0.1:5000/team/app:1 at registry 127.0.0.1:5000: the image index has none of the platforms "
        "windows/amd64 (it has: linux/amd64, linux/arm64)"
    )
    # The platforms' referrers are read with the source's index, whose digest they carry.
    referrers = ReferrersResult("127.0.0.1:5000/team/app:1", None, digest_of(INDEX), platforms=("linux/arm64", "linux/riscv64"))
    reads = dataclasses.replace(reads, referrers=FrozenDict({referrers.key: referrers}))
    assert source_referrers(source, reads) == referrers
