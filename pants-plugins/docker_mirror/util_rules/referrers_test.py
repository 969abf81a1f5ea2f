"""What the plugin asks the registry probe about referrers, and what it makes of the answers:
pure functions."""

from __future__ import annotations

import json

from docker_mirror_testutil.probe_results import INDEX, probed, served
from docker_mirror.util_rules.manifest_reads import resolve_source, source_referrers
from docker_mirror.oci.manifests import manifest_digest
from docker_mirror.util_rules.probe import ProbedManifests, ProbeSettings, copy_request_json, probe_request_json
from docker_mirror.util_rules.referrers import (
    CopyReferrersRequest,
    ProbedReferrers,
    ReferrerCopy,
    ReferrersPlan,
    ReferrersRead,
    counted,
    merge_reads,
    parse_copy_result,
    parse_referrers_results,
)
from pants.util.frozendict import FrozenDict

SIG = ReferrerCopy("signature", "sha256:" + "5" * 64, "application/vnd.oci.image.manifest.v1+json", "sha256-x.sig")
SBOM = ReferrerCopy("SBOM", "sha256:" + "6" * 64, "application/vnd.oci.image.manifest.v1+json")
SETTINGS = ProbeSettings((), 8, 4, 30, 60)


def test_counted_in_a_fixed_order() -> None:
    assert counted({"SBOM": 2, "signature": 1, "other": 3}) == "1 signature, 2 SBOMs"
    assert counted({}) == ""


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


def test_the_request_carries_the_referrer_reads() -> None:
    document = json.loads(
        probe_request_json({"a:1": False}, SETTINGS, (ReferrersRead("a:1", None, ("r/x",)),))
    )
    assert document["referrers"] == [{"reference": "a:1", "platform": None, "destinations": ["r/x"]}]
    assert "referrers" not in json.loads(probe_request_json({"a:1": False}, SETTINGS))


def test_plans_survive_the_round_trip_and_say_what_they_hold() -> None:
    plan = ReferrersPlan((SIG, SBOM), "sha256:" + "7" * 64, b'{"manifests":[]}')
    assert ReferrersPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert plan.summary == "1 signature, 1 SBOM"
    assert ReferrersPlan().empty and ReferrersPlan().summary == "the referrers listing"
    assert not ReferrersPlan((), "sha256:" + "7" * 64, b"{}").empty


def test_results_by_reference_and_platform_and_missing_ones_are_errors() -> None:
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
    parsed = parse_referrers_results(results, reads)
    found = parsed[("a:1", None)]
    assert found.found == "1 signature, 1 SBOM" and found.error is None
    assert found.plan_for("r/x").items == (SIG,) and found.plan_for("r/other").empty
    assert parsed[("b:1", None)].error == "the registry probe gave no result for them"


def test_referrers_must_be_those_of_the_resolved_digest() -> None:
    reference = "127.0.0.1:5000/team/app:1"
    subject = manifest_digest(INDEX)
    reads = probed(served(reference, INDEX))
    source = resolve_source(reference, None, reads)

    def with_referrers(found_subject: str) -> ProbedManifests:
        return ProbedManifests(
            reads.by_reference,
            referrers=FrozenDict({(reference, None): ProbedReferrers(reference, None, subject=found_subject)}),
        )

    assert source_referrers(source, with_referrers(subject)).error is None  # type: ignore[union-attr]
    mismatch = source_referrers(source, with_referrers("sha256:" + "9" * 64))
    assert mismatch is not None and mismatch.error == (
        f"they were read for sha256:{'9' * 64}, not for {subject}"
    )
    unread = source_referrers(source, reads)
    assert unread is not None and unread.error == "they were not read"


def test_the_copy_request_and_its_result() -> None:
    request = CopyReferrersRequest("a.io/x", "sha256:" + "1" * 64, "b.io/m/x", ReferrersPlan((SIG,)), 1, ("k.pub",))
    document = json.loads(copy_request_json(request, [("k.pub", b"-----BEGIN PUBLIC KEY-----")], SETTINGS.to_json()))
    assert document["copy"]["require_signature"] == [{"name": "k.pub", "pem": "-----BEGIN PUBLIC KEY-----"}]
    assert document["copy"]["items"] == [SIG.to_json()] and document["attempts"] == 4
    copied = parse_copy_result(
        json.dumps({"copy": {"outcome": "ok", "copied": [SIG.to_json()], "verified_by": "k.pub"}}).encode()
    )
    assert copied.ok and copied.copied == (SIG,) and copied.verified_by == "k.pub"
    broken = parse_copy_result(b"{}")
    assert broken.outcome == "error" and "no readable result" in (broken.message or "")


def test_a_failure_keeps_its_kind_so_the_summary_can_say_what_to_do() -> None:
    read = ReferrersRead("a:1", None, ("r/x",))
    (found,) = parse_referrers_results(
        [{"reference": "a:1", "platform": None, "error": "registry a unreachable", "error_kind": "unreachable"}],
        (read,),
    ).values()
    assert (found.error, found.error_kind) == ("registry a unreachable", "unreachable")
    copied = parse_copy_result(
        json.dumps({"copy": {"outcome": "error", "message": "m", "error_kind": "denied"}}).encode()
    )
    assert (copied.ok, copied.error_kind) == (False, "denied")
    # A probe from before error kinds: none.
    assert parse_copy_result(json.dumps({"copy": {"outcome": "error", "message": "m"}}).encode()).error_kind is None
