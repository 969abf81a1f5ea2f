"""The copy request's tags and the copy result's tag outcomes (issue 24's contract), both ways."""

from __future__ import annotations

import json
from typing import Any

import pytest

from docker_mirror.oci.probe_protocol import (
    CopyRequest, CopyResult, Listing, Plan, ProbeRequest, ProbeResult, ReferrersResult, RequestError, TagCopy, TagOutcome,
    encoded, parse_request, parse_result,
)

SUBJECT = "sha256:" + "1" * 64
SEEN = "sha256:" + "2" * 64


def _request(**copy: Any) -> dict:
    return {"version": 1, "copy": {"source": "a.io/x", "subject": SUBJECT, "destination": "b.io/m/x", **copy}}


def test_tags_survive_the_round_trip() -> None:
    copy = CopyRequest("a.io/x", SUBJECT, "b.io/m/x", Plan(), tags=(TagCopy("1.2", SEEN), TagCopy("latest", None)))
    document = json.loads(encoded(ProbeRequest((), copy=copy)))
    assert document["copy"]["tags"] == [{"tag": "1.2", "seen": SEEN}, {"tag": "latest", "seen": None}]
    assert parse_request(document).copy == copy


def test_no_tags_is_todays_request() -> None:
    copy = CopyRequest("a.io/x", SUBJECT, "b.io/m/x", Plan())
    document = json.loads(encoded(ProbeRequest((), copy=copy)))
    assert "tags" not in document["copy"]
    assert parse_request(document).copy == copy
    assert parse_request(_request(tags=[])).copy == copy


@pytest.mark.parametrize(
    "tags, message",
    [
        ("1.2", "copy.tags must be a list"),
        (["1.2"], r"copy.tags\[0\] must be an object with a valid tag"),
        ([{"tag": ".hidden", "seen": None}], r"copy.tags\[0\] must be an object with a valid tag"),
        ([{"tag": "x" * 129, "seen": None}], "valid tag"),
        ([{"tag": "1", "seen": "latest"}], r"copy.tags\[0\].seen must be a sha256 digest or null"),
        ([{"tag": "1", "seen": None}, {"tag": "1", "seen": SEEN}], "names a tag twice"),
    ],
)
def test_bad_tags(tags: Any, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_request(_request(tags=tags))


def test_a_missing_seen_is_none() -> None:
    copy = parse_request(_request(tags=[{"tag": "1"}])).copy
    assert copy is not None and copy.tags == (TagCopy("1", None),)


def test_tag_outcomes_survive_the_round_trip() -> None:
    result = CopyResult(
        "ok",
        tags=(
            TagOutcome("1.2", "copied", platforms=("linux/amd64", "linux/arm64/v8")),
            TagOutcome("1", "up_to_date", platforms=None),
            TagOutcome("latest", "changed", "the destination changed since it was checked (it served none, "
                       f"now {SEEN}); not overwriting it"),
            TagOutcome("edge", "failed", "b.io answered 500 for a blob upload", "error"),
        ),
    )
    document = json.loads(json.dumps({"results": [], "copy": result.to_json()}))
    assert document["copy"]["tags"][0] == {
        "tag": "1.2", "outcome": "copied", "message": None, "error_kind": None,
        "platforms": ["linux/amd64", "linux/arm64/v8"],
    }
    parsed = parse_result(json.dumps(document).encode()).copy
    assert parsed is not None and parsed == result
    assert parsed.tag_outcome("edge") == result.tags[3] and parsed.tag_outcome("nope") is None


def test_a_result_without_tags_has_none() -> None:
    assert "tags" not in CopyResult("ok").to_json()
    parsed = parse_result(json.dumps({"results": [], "copy": {"outcome": "unsigned"}}).encode()).copy
    assert parsed is not None and parsed.tags == ()


def test_the_peak_memory_and_cpu_time_are_carried_and_read_only_as_numbers() -> None:
    assert not {"peak_rss_kib", "cpu_seconds"} & set(ProbeResult([]).to_json())
    parsed = parse_result(json.dumps(ProbeResult([], peak_rss_kib=51234, cpu_seconds=0.2345).to_json()).encode())
    assert (parsed.peak_rss_kib, parsed.cpu_seconds) == (51234, 0.234)
    for odd in ("51234", 1.5, True, None):
        assert parse_result(json.dumps({"results": [], "peak_rss_kib": odd}).encode()).peak_rss_kib is None
    for not_seconds in ("0.5", True, None, [1]):
        assert parse_result(json.dumps({"results": [], "cpu_seconds": not_seconds}).encode()).cpu_seconds is None


def test_tag_outcomes_are_read_leniently() -> None:
    tags = [
        {"tag": "a", "outcome": "copied", "platforms": None},
        {"tag": "b", "outcome": "teleported", "message": None},  # another probe's outcome: failed, named
        {"tag": "c", "outcome": "failed", "error_kind": "cosmic rays"},  # an unknown kind: error
        {"tag": 3, "outcome": "copied"},  # unreadable: left out
        {"outcome": "copied"},  # unreadable: left out
        {"tag": "d", "outcome": "up_to_date", "error_kind": "denied"},  # a kind only for "failed"
    ]
    parsed = parse_result(json.dumps({"results": [], "copy": {"outcome": "ok", "tags": tags}}).encode()).copy
    assert parsed is not None and parsed.tags == (
        TagOutcome("a", "copied"),
        TagOutcome("b", "failed", "teleported", "error"),
        TagOutcome("c", "failed", None, "error"),
        TagOutcome("d", "up_to_date"),
    )


CHILD = "sha256:" + "3" * 64


def test_a_plan_with_platform_manifests_and_their_listings_survives_the_round_trip() -> None:
    listing = Listing.of(b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}')
    plan = Plan(children=(CHILD,), child_listings=((CHILD, listing),))
    copy = CopyRequest("a.io/x", SUBJECT, "b.io/m/x", plan)
    assert parse_request(json.loads(encoded(ProbeRequest((), copy=copy)))).copy == copy
    assert not plan.empty and Plan(children=(CHILD,)).empty
    result = ReferrersResult("a.io/x:1", None, SUBJECT, (("signature", 1),), (("b.io/m/x", plan),),
                             on_platforms=(("SBOM", 2),))  # fmt: skip
    assert ReferrersResult.from_json(json.loads(json.dumps(result.to_json()))) == result
    assert result.summary == "1 signature; of its platform manifests: 2 SBOMs"
    assert ReferrersResult("a.io/x:1", None, on_platforms=(("signature", 1),)).summary == (
        "none; of its platform manifests: 1 signature"
    )


@pytest.mark.parametrize(
    "plan, message",
    [
        ({"children": ["sha256:x"]}, "has a child without a sha256 digest"),
        (
            {"children": [], "child_listings": {CHILD: {"digest": SEEN, "body": "e30="}}},
            "is not the bytes of its digest of a child",
        ),
    ],
)
def test_a_plans_platform_manifests_are_checked(plan: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_request(_request(**plan))
