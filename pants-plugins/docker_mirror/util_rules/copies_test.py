"""What the plugin asks the registry probe to copy (what refers to an image, the image, its tags),
and what it makes of the answer: pure functions."""

from __future__ import annotations

import json

from docker_mirror.oci.probe_protocol import (
    CopyItem,
    CopyResult,
    Listing,
    Plan,
    ProbeRequest,
    TagCopy,
    TagOutcome,
    counted,
    encoded,
    parse_result,
)
from docker_mirror.util_rules.copies import (
    CopyImageRequest,
    CopyOutcome,
    copy_deadline,
    tag_copy_outcome,
)

SIG = CopyItem("signature", "sha256:" + "5" * 64, "application/vnd.oci.image.manifest.v1+json", "sha256-x.sig")
SBOM = CopyItem("SBOM", "sha256:" + "6" * 64, "application/vnd.oci.image.manifest.v1+json")


def test_counted_in_a_fixed_order() -> None:
    assert counted({"SBOM": 2, "signature": 1, "other": 3}) == "1 signature, 2 SBOMs"
    assert counted({}) == ""


def test_plans_survive_the_round_trip_and_say_what_they_hold() -> None:
    plan = Plan((SIG, SBOM), Listing.of(b'{"manifests":[]}'))
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert plan.summary == "1 signature, 1 SBOM"
    assert Plan().empty and Plan().summary == "the referrers listing"
    assert not Plan((), Listing.of(b"{}")).empty


def test_the_copy_request_and_its_result() -> None:
    request = CopyImageRequest(
        "a.io/x", "sha256:" + "1" * 64, "b.io/m/x", Plan((SIG,)), 1, ("k.pub",), (TagCopy("1", None),)
    )
    copy = request.copy_request((("k.pub", b"-----BEGIN PUBLIC KEY-----"),))
    document = json.loads(encoded(ProbeRequest((), copy=copy)))
    assert document["copy"]["require_signature"] == [{"name": "k.pub", "pem": "-----BEGIN PUBLIC KEY-----"}]
    assert document["copy"]["items"] == [SIG.to_json()] and document["attempts"] == 4
    assert document["copy"]["tags"] == [{"tag": "1", "seen": None}]
    assert request.description == "Copying a.io/x@sha256:111111111111 to b.io/m/x:1 (all platforms, with 1 signature)"
    copied = parse_result(
        json.dumps({"results": [], "copy": {"outcome": "ok", "copied": [SIG.to_json()], "verified_by": "k.pub"}}).encode()
    ).copy
    assert copied is not None and copied.ok and copied.copied == (SIG,) and copied.verified_by == "k.pub"


def test_a_failure_keeps_its_kind_so_the_summary_can_say_what_to_do() -> None:
    def copied(result: dict) -> object:
        return parse_result(json.dumps({"results": [], "copy": result}).encode()).copy

    failed = copied({"outcome": "error", "message": "m", "error_kind": "denied"})
    assert (failed.ok, failed.error_kind) == (False, "denied")  # type: ignore[attr-defined]
    # A probe from before error kinds: none.
    assert copied({"outcome": "error", "message": "m"}).error_kind is None  # type: ignore[attr-defined]
    # A copy result that is no copy result: none, and the rule says the probe wrote none.
    assert copied({"copied": 3}) is None


def test_copy_timeout_is_the_probes_deadline_and_zero_the_longest_it_takes() -> None:
    assert copy_deadline(3600) == 3600.0
    assert copy_deadline(0) == copy_deadline(10**9) == 86400.0


SOURCE = "src.lan/team/app:1"
DESTINATION = "dst.lan:5000/mirror/team/app:1"
SUBJECT = f"copy from {SOURCE} to {DESTINATION} at registry dst.lan:5000"


def outcome(tag: TagOutcome | None, result: CopyResult = CopyResult("ok")) -> CopyOutcome:
    return tag_copy_outcome(SOURCE, DESTINATION, tag, result)


def test_a_tag_copied_or_found_up_to_date_carries_the_platforms_it_serves() -> None:
    copied = outcome(TagOutcome("1", "copied", platforms=("linux/amd64", "linux/arm64")))
    assert copied == CopyOutcome(DESTINATION, platforms=("linux/amd64", "linux/arm64")) and copied.ok
    assert outcome(TagOutcome("1", "up_to_date")) == CopyOutcome(DESTINATION, up_to_date=True)


def test_a_tag_that_changed_since_it_was_checked_is_refused_in_the_probes_words() -> None:
    changed = "the destination changed since it was checked (it served none, now sha256:9); not overwriting it"
    assert outcome(TagOutcome("1", "changed", changed)).error == f"{SUBJECT}: {changed}"


def test_a_failed_tag_names_image_registry_and_fault() -> None:
    def failed(message: str, kind: str) -> str | None:
        return outcome(TagOutcome("1", "failed", message, kind)).error

    assert failed("dst.lan:5000 answered 500 Internal Server Error for a blob upload", "error") == (
        f"{SUBJECT}: the registry answered with a server error "
        "(dst.lan:5000 answered 500 Internal Server Error for a blob upload)"
    )
    assert failed("registry dst.lan:5000 unreachable: timed out (writing blob sha256:1)", "unreachable") == (
        f"{SUBJECT}: timed out (`[docker-mirror].copy_timeout` bounds a copy, `registry_timeout` a read) "
        "(registry dst.lan:5000 unreachable: timed out (writing blob sha256:1))"
    )
    cut = (
        "registry dst.lan:5000 unreachable: connection reset, uploading blob sha256:1 to "
        "dst.lan:5000/mirror/team/app (4 attempts)"
    )
    assert failed(cut, "unreachable") == f"{SUBJECT}: the connection to the registry was lost ({cut})"
    assert failed("registry dst.lan:5000 unreachable: connection refused", "unreachable") == (
        f"{SUBJECT}: registry unreachable (registry dst.lan:5000 unreachable: connection refused)"
    )
    assert failed("src.lan answered 429", "rate_limited") == f"{SUBJECT}: rate limited (src.lan answered 429)"
    # A refusal: the registry it came from, and how to log in; not the request refused.
    assert failed("src.lan answered 401 for a read of sha256:1", "unauthorized") == (
        f"{SUBJECT}: access denied by registry src.lan (401 unauthorized); "
        "log in with `docker login src.lan` (or `skopeo login src.lan`)"
    )
    assert failed("answered 403 for an upload", "denied") == (
        f"{SUBJECT}: access denied by registry dst.lan:5000 (403: these credentials may not do this); "
        "log in with `docker login dst.lan:5000` (or `skopeo login dst.lan:5000`) as an account that may"
    )


def test_a_tag_the_probe_said_nothing_of_fails_with_what_it_did_say() -> None:
    assert outcome(None).error == f"{SUBJECT}: the registry probe gave no result for it"
    crashed = CopyResult("error", "the registry probe failed: exit code 1")
    assert outcome(None, crashed).error == f"{SUBJECT}: the registry probe failed: exit code 1"
    # A copy that could not start: why, in the same words as a failed one.
    down = CopyResult("error", "registry src.lan unreachable: connection refused", error_kind="unreachable")
    assert outcome(TagOutcome("1", "not_attempted", down.message), down).error == (
        f"{SUBJECT}: registry unreachable (registry src.lan unreachable: connection refused)"
    )
    refused = CopyResult("error", "unauthorized by src.lan for a read", error_kind="unauthorized")
    assert outcome(TagOutcome("1", "not_attempted"), refused).error == (
        f"{SUBJECT}: access denied by registry src.lan (401 unauthorized); "
        "log in with `docker login src.lan` (or `skopeo login src.lan`)"
    )
