"""What the plugin asks the registry probe to copy of what refers to an image, and what it makes
of the answer: pure functions."""

from __future__ import annotations

import json

from docker_mirror.oci.probe_protocol import (
    CopyItem,
    Listing,
    Plan,
    ProbeRequest,
    counted,
    encoded,
    parse_result,
)
from docker_mirror.util_rules.referrers import CopyReferrersRequest

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
    request = CopyReferrersRequest("a.io/x", "sha256:" + "1" * 64, "b.io/m/x", Plan((SIG,)), 1, ("k.pub",))
    copy = request.copy_request((("k.pub", b"-----BEGIN PUBLIC KEY-----"),))
    document = json.loads(encoded(ProbeRequest((), copy=copy)))
    assert document["copy"]["require_signature"] == [{"name": "k.pub", "pem": "-----BEGIN PUBLIC KEY-----"}]
    assert document["copy"]["items"] == [SIG.to_json()] and document["attempts"] == 4
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
