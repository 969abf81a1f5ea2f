"""The `pants package` JSON record and the publish summary entries: pure functions."""

from __future__ import annotations

import json
import subprocess

import pytest

from docker_mirror.goals.package import (
    mirror_record,
    required_identity,
    package_line,
    shared_record_paths,
    unreadable_destinations,
)
from docker_mirror.goals.publish import (
    CopyToRepositoryRequest,
    CopyToRepositoryResult,
    by_repository,
    copied_packages,
    copy_step,
    has_referrers_step,
    repository_result,
    repository_packages,
    split_up_to_date,
    unread_referrers_packages,
    unresolved_packages,
    up_to_date_packages,
)
from docker_mirror.oci.probe_protocol import CopyItem, CopyResult, Plan, ReferrersResult, TagCopy, TagOutcome
from docker_mirror_testutil.probe_results import failed as probe_failed
from docker_mirror_testutil.probe_results import INDEX, probed, served
from docker_mirror.util_rules.registry_reads import resolve_source
from docker_mirror.util_rules.destinations import Destination, mirror_destinations
from docker_mirror.oci.manifests import digest_of
from docker_mirror.oci.media_types import OCI_INDEX
from docker_mirror.util_rules.copies import CopyOutcome
from pants.engine.unions import UnionMembership
from pants.backend.docker.registries import DockerRegistries
from pants.engine.addresses import Address
from pants.engine.fs import FileContent
from pants.engine.process import InteractiveProcess

MANIFEST_UNKNOWN = "127.0.0.1:5000 answered 404 for team/app:1: manifest unknown"


REGISTRIES = DockerRegistries.from_dict(
    {
        "mirror": {
            "address": "127.0.0.1:5501",
            "default": True,
            "repository": "mirror/{target_repository}",
        },
        "backup": {"address": "backup.example.com", "skip_push": True},
        "local": {"address": "local.example.com", "use_local_alias": True},
    }
)


def destinations(registries=None, tags=("1",)) -> tuple[Destination, ...]:
    return mirror_destinations(
        Address("src", target_name="m", generated_name="app"),
        registries=registries,
        repository="team/app",
        image_tags=tags,
        docker_registries=REGISTRIES,
        default_repository="{name}",
        union_membership=UnionMembership.from_rules([]),
    )


def test_destinations_follow_docker_registries_configuration() -> None:
    default = destinations()
    assert [d.reference for d in default] == ["127.0.0.1:5501/mirror/team/app:1"]
    assert default[0].registry_name == "@mirror"
    chosen = destinations(["@backup", "@local", "plain.example.com:5000"], tags=("1", "latest"))
    assert [(d.reference, d.skipped_by) for d in chosen] == [
        ("backup.example.com/team/app:1", "`skip_push` on registry @backup"),
        ("backup.example.com/team/app:latest", "`skip_push` on registry @backup"),
        ("local.example.com/team/app:1", None),
        ("local.example.com/team/app:latest", None),
        ("plain.example.com:5000/team/app:1", None),
        ("plain.example.com:5000/team/app:latest", None),
    ]
    # No registry at all would mean Docker Hub: nothing is a destination then.
    assert destinations([]) == ()


def test_record_has_source_digest_media_type_platforms_and_destinations() -> None:
    source = resolve_source(
        "127.0.0.1:5000/team/app:1", None, probed(served("127.0.0.1:5000/team/app:1", INDEX))
    )
    record = json.loads(mirror_record("src:m#app", source, destinations()))
    assert record == {
        "version": 1,
        "address": "src:m#app",
        "source": {
            "reference": "127.0.0.1:5000/team/app:1",
            "registry": "127.0.0.1:5000",
            "platform": None,
            "digest": digest_of(INDEX),
            "media_type": OCI_INDEX,
            "platforms": ["linux/amd64", "linux/arm64"],
            "index_digest": None,
            "pinned": f"127.0.0.1:5000/team/app@{digest_of(INDEX)}",
            "archive": None,
            "platforms_asked": None,
            "platforms_missing": None,
        },
        "destinations": [
            {
                "reference": "127.0.0.1:5501/mirror/team/app:1",
                "registry": "127.0.0.1:5501",
                "alias": "mirror",
                "repository": "mirror/team/app",
                "tag": "1",
                "skip_push": False,
            }
        ],
        "error": None,
        "referrers": None,
        "require_signature": [],
    }
    failed = json.loads(
        mirror_record(
            "src:m#app", resolve_source("x:1", None, probed(probe_failed("x:1", "not_found", MANIFEST_UNKNOWN))), ()
        )
    )
    assert failed["source"]["digest"] is None and "not found" in failed["error"]


def test_only_destinations_serving_another_digest_are_copied() -> None:
    a, b, c = (Destination("r.io", None, "x", tag) for tag in ("1", "2", "3"))
    up_to_date, stale = split_up_to_date(
        "sha256:new",
        (a, b, c),
        {a.reference: "sha256:new", b.reference: "sha256:old", c.reference: None},
    )
    assert up_to_date == (a,) and stale == (b, c)


def test_tags_of_one_repository_are_copied_together() -> None:
    a1, a2 = Destination("r.io", None, "a", "1"), Destination("r.io", None, "a", "2")
    b1, other = Destination("r.io", None, "b", "1"), Destination("s.io", None, "a", "1")
    assert by_repository((a1, b1, a2, other)) == ((a1, a2), (b1,), (other,))


def exit_code(entry) -> str:
    """The exit code of the process that reports an entry, as it ran (printing nothing)."""
    if entry.process is None:
        return "-"
    argv = ["bash", *entry.process.process.argv[1:]]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (result.stdout, result.stderr) == ("", ""), "a failure is told once, by the summary"
    return str(result.returncode)


def test_summary_entries_are_honest() -> None:
    source = resolve_source(
        "127.0.0.1:5000/team/app:1", None, probed(served("127.0.0.1:5000/team/app:1", INDEX))
    )
    (destination,) = destinations()

    up_to_date = up_to_date_packages(source, destination)
    assert up_to_date.process is None  # rendered "skipped (up to date: ...)"
    assert (up_to_date.description or "").startswith("(up to date: @mirror already serves sha256:")

    copied = copied_packages(
        source, destination, CopyOutcome(destination.reference), bash="/bin/bash"
    )
    assert isinstance(copied.process, InteractiveProcess)
    assert exit_code(copied) == "0"
    assert (copied.description or "").startswith(
        "@mirror (copied from 127.0.0.1:5000/team/app:1, sha256:"
    )

    failure = copied_packages(
        source,
        destination,
        CopyOutcome(destination.reference, "copy ...: registry unreachable"),
        bash="/bin/bash",
    )
    assert isinstance(failure.process, InteractiveProcess)
    assert exit_code(failure) == "1"
    assert failure.description == "copy ...: registry unreachable"

    missing = resolve_source(
        "127.0.0.1:5000/team/app:1",
        None,
        probed(probe_failed("127.0.0.1:5000/team/app:1", "not_found", MANIFEST_UNKNOWN)),
    )
    unresolved = unresolved_packages(missing, destinations(), bash="/bin/bash")
    assert unresolved.names == ("127.0.0.1:5501/mirror/team/app:1",)
    assert isinstance(unresolved.process, InteractiveProcess)
    assert exit_code(unresolved) == "1"
    assert "at registry 127.0.0.1:5000: not found" in (unresolved.description or "")


# ---------------------------------------------------------------------------------------------
# What refers to the image: recorded by `package`, copied first by `publish`, and reported.

SIG = CopyItem("signature", "sha256:" + "5" * 64, "application/vnd.oci.image.manifest.v1+json", "sha256-x.sig")
SBOM = CopyItem("SBOM", "sha256:" + "6" * 64, "application/vnd.oci.image.manifest.v1+json")


def resolved():
    return resolve_source("127.0.0.1:5000/team/app:1", None, probed(served("127.0.0.1:5000/team/app:1", INDEX)))


def test_the_record_says_what_refers_to_the_source_and_what_each_repository_lacks() -> None:
    referrers = ReferrersResult(
        "127.0.0.1:5000/team/app:1",
        None,
        subject=digest_of(INDEX),
        found=(("signature", 1), ("SBOM", 1)),
        plans=(("127.0.0.1:5501/mirror/team/app", Plan((SIG, SBOM))), ("other/x", Plan())),
        on_platforms=(("signature", 2),),
    )
    record = json.loads(mirror_record("src:m#app", resolved(), destinations(), referrers, ("keys/cosign.pub",)))
    assert record["referrers"] == {
        "subject": digest_of(INDEX),
        "at_source": {"signature": 1, "SBOM": 1},
        "of_platform_manifests": {"signature": 2},
        "to_copy": {
            "127.0.0.1:5501/mirror/team/app": [
                {"kind": "signature", "digest": SIG.digest, "tag": "sha256-x.sig"},
                {"kind": "SBOM", "digest": SBOM.digest, "tag": None},
            ]
        },
        "error": None,
    }
    assert record["require_signature"] == ["keys/cosign.pub"]


def test_one_probe_run_copies_the_referrers_then_the_image_and_its_stale_tags() -> None:
    source = resolved()
    stale = (TagCopy("1", None), TagCopy("latest", "sha256:" + "7" * 64))
    repository = "127.0.0.1:5501/mirror/team/app"
    image_only = CopyToRepositoryRequest(source, stale, repository)
    step = copy_step(image_only, 1)
    assert not has_referrers_step(image_only) and step.plan.empty and step.signature_keys == ()
    assert step.tags == stale and step.destination_repository == repository
    assert step.source_repository == "127.0.0.1:5000/team/app" and step.subject == source.digest
    assert step.description == (
        f"Copying 127.0.0.1:5000/team/app@{source.digest[:19]} to {repository}:1, latest (all platforms)"
    )
    assert [image_only.destination(tag) for tag in stale] == [f"{repository}:1", f"{repository}:latest"]
    plan = Plan((SIG,))
    referrers_only = CopyToRepositoryRequest(source, (), repository, plan)
    step = copy_step(referrers_only, 7)
    assert has_referrers_step(referrers_only) and step.plan == plan and step.tags == ()
    assert step.description == f"Copying 1 signature of 127.0.0.1:5000/team/app@{source.digest[:19]} to {repository}"
    # It belongs to the run that copies.
    assert step.run_id == 7
    # The gate guards a copy of the image, not an image that is already there.
    assert not has_referrers_step(CopyToRepositoryRequest(source, (), "r", signature_keys=("k.pub",)))
    gated = copy_step(CopyToRepositoryRequest(source, stale, "r", signature_keys=("k.pub",)), 1)
    assert gated.signature_keys == ("k.pub",) and gated.plan.empty and gated.tags == stale


REPOSITORY = "127.0.0.1:5501/mirror/team/app"


def summary(result: CopyResult, *, plan: Plan = Plan(), keys: tuple[str, ...] = (), up_to_date: bool = False):
    """The summary entries of `1` (stale) and `latest` (stale, or with `up_to_date` already
    serving the image) when the probe's copy to their repository answered `result`."""
    source = resolved()
    first, second = destinations(tags=("1", "latest"))
    stale = (first,) if up_to_date else (first, second)
    request = CopyToRepositoryRequest(
        source, tuple(TagCopy(d.tag, None) for d in stale), REPOSITORY, plan, signature_keys=keys
    )
    copied = repository_result(request, result)
    return copied, repository_packages(source, (first, second), stale, copied, bash="/bin/bash")


def test_each_tag_outcome_of_the_probe_is_summarised_as_before() -> None:
    changed = "the destination changed since it was checked (it served none, now sha256:9); not overwriting it"
    result = CopyResult(
        "ok",
        tags=(
            TagOutcome("1", "copied", platforms=("linux/amd64", "linux/arm64")),
            TagOutcome("latest", "changed", changed),
        ),
    )
    copied, (one, latest) = summary(result)
    assert copied.referrers is None and not copied.image_failed
    assert [exit_code(e) for e in (one, latest)] == ["0", "1"]
    assert (one.description or "").startswith("@mirror (copied from 127.0.0.1:5000/team/app:1, sha256:")
    assert (one.description or "").endswith(", 2 platforms: linux/amd64, linux/arm64)")
    assert latest.description == (
        f"copy from 127.0.0.1:5000/team/app:1 to {REPOSITORY}:latest at registry 127.0.0.1:5501: {changed}"
    )
    found = CopyResult("ok", tags=(TagOutcome("1", "up_to_date"), TagOutcome("latest", "up_to_date")))
    _, entries = summary(found)
    assert all((e.description or "").startswith("(up to date: @mirror already serves sha256:") for e in entries)


def test_a_failed_image_fails_its_stale_tags_with_its_reason_and_its_up_to_date_tags_for_the_referrers() -> None:
    reason = "failed at 127.0.0.1:5501 for a blob upload: answered 500 Internal Server Error"
    failed = CopyResult("error", reason, error_kind="error", tags=(TagOutcome("1", "failed", reason, "error"),))
    copied, (one, latest) = summary(failed, plan=Plan((SIG,)), up_to_date=True)
    assert copied.image_failed
    assert [exit_code(e) for e in (one, latest)] == ["1", "1"]
    assert one.description == (
        f"copy from 127.0.0.1:5000/team/app:1 to {REPOSITORY}:1 at registry 127.0.0.1:5501: "
        f"the registry answered with a server error ({reason})"
    )
    subject = f"127.0.0.1:5000/team/app:1 ({resolved().digest[:19]})"
    assert latest.description == (
        f"copying what refers to {subject} to {REPOSITORY}:latest at registry 127.0.0.1:5501: {reason}"
    )
    # Without referrers to copy, the failure is the image's alone.
    copied, (one, latest) = summary(failed, keys=("k.pub",), up_to_date=True)
    assert copied.referrers is None and exit_code(latest) == "-"


def test_a_refused_gate_leaves_every_tag_not_attempted_and_names_the_reason() -> None:
    refused = CopyResult(
        "unsigned", "no cosign signature verifies against k.pub",
        tags=(TagOutcome("1", "not_attempted", "x"), TagOutcome("latest", "not_attempted", "x")),
    )  # fmt: skip
    copied, entries = summary(refused, keys=("k.pub",))
    assert copied.referrers == refused and not copied.image_failed
    assert [e.description for e in entries] == ["`require_signature`: no cosign signature verifies against k.pub"] * 2


def test_a_probe_that_answered_nothing_fails_every_tag_with_what_it_said() -> None:
    _, entries = summary(CopyResult("error", "the registry probe failed: exit code 1"))
    assert [e.description for e in entries] == [
        f"copy from 127.0.0.1:5000/team/app:1 to {REPOSITORY}:{tag} at registry 127.0.0.1:5501: "
        "the registry probe failed: exit code 1"
        for tag in ("1", "latest")
    ]


def test_referrers_copied_with_the_image_are_named_once_per_repository() -> None:
    source = resolved()
    first, second = destinations(tags=("1", "latest"))
    copied = CopyResult("ok", copied=(SIG, SBOM))
    result = CopyToRepositoryResult(
        (CopyOutcome(first.reference), CopyOutcome(second.reference)), copied
    )
    entries = repository_packages(source, (first, second), (first, second), result, bash="/bin/bash")
    assert [exit_code(e) for e in entries] == ["0", "0"]
    assert (entries[0].description or "").endswith("; with 1 signature, 1 SBOM)")
    assert "signature" not in (entries[1].description or "")
    assert entries[0].data["referrers_copied"] == (SIG.digest, SBOM.digest)


def test_referrers_added_upstream_later_are_copied_to_an_up_to_date_image() -> None:
    source = resolved()
    (destination,) = destinations()
    result = CopyToRepositoryResult((), CopyResult("ok", copied=(SIG,)))
    (entry,) = repository_packages(source, (destination,), (), result, bash="/bin/bash")
    assert exit_code(entry) == "0"  # "published", since something was written
    assert entry.description == (
        f"@mirror (the image was up to date: @mirror already serves {source.digest[:19]}; with 1 signature)"
    )
    (untouched,) = repository_packages(source, (destination,), (), None, bash="/bin/bash")
    assert untouched.process is None and (untouched.description or "").startswith("(up to date:")


def test_an_unsigned_image_fails_alone_and_names_the_reason() -> None:
    source = resolved()
    first, second = destinations(tags=("1", "latest"))
    refused = CopyResult("unsigned", "no signature of sha256:... verifies against keys/cosign.pub")
    result = CopyToRepositoryResult(
        (CopyOutcome(first.reference, "not copied"), CopyOutcome(second.reference, "not copied")), refused
    )
    entries = repository_packages(source, (first, second), (first, second), result, bash="/bin/bash")
    assert [exit_code(e) for e in entries] == ["1", "1"]
    assert entries[0].description == (
        "`require_signature`: no signature of sha256:... verifies against keys/cosign.pub"
    )


def test_referrers_that_cannot_be_copied_keep_the_image_out_and_fail_every_tag() -> None:
    source = resolved()
    first, second = destinations(tags=("1", "latest"))
    failed_step = CopyResult("error", "127.0.0.1:5501 answered 500 for a mount of sha256:x", error_kind="error")
    # `latest` was up to date; `1` was to be copied.
    result = CopyToRepositoryResult((CopyOutcome(first.reference, "not copied"),), failed_step)
    entries = repository_packages(source, (first, second), (first,), result, bash="/bin/bash")
    assert [exit_code(e) for e in entries] == ["1", "1"]
    subject = f"127.0.0.1:5000/team/app:1 ({source.digest[:19]})"
    assert entries[0].description == (
        f"copying what refers to {subject} to 127.0.0.1:5501/mirror/team/app:1 at registry 127.0.0.1:5501: "
        "127.0.0.1:5501 answered 500 for a mount of sha256:x; so the image was not copied"
    )
    assert entries[1].description == (
        f"copying what refers to {subject} to 127.0.0.1:5501/mirror/team/app:latest at registry 127.0.0.1:5501: "
        "127.0.0.1:5501 answered 500 for a mount of sha256:x"
    )


def test_a_refused_referrers_copy_names_the_registry_and_how_to_log_in() -> None:
    source = resolved()
    (destination,) = destinations()
    refused = CopyResult(
        "error", "127.0.0.1:5501 answered 403 Forbidden for an upload of sha256:x into mirror/team/app", error_kind="denied"
    )
    result = CopyToRepositoryResult((CopyOutcome(destination.reference, "not copied"),), refused)
    (entry,) = repository_packages(source, (destination,), (destination,), result, bash="/bin/bash")
    assert (entry.description or "").endswith(
        ": access denied by registry 127.0.0.1:5501 (403: these credentials may not do this); log in with "
        "`docker login 127.0.0.1:5501` (or `skopeo login 127.0.0.1:5501`) as an account that may; "
        "so the image was not copied"
    )
    assert "upload" not in (entry.description or "")


def unread(error: str, kind: str) -> ReferrersResult:
    return ReferrersResult("127.0.0.1:5000/team/app:1", None, error=error, error_kind=kind)


def test_referrers_that_cannot_be_read_fail_the_image_offering_referrers_off_only_when_it_helps() -> None:
    source = resolved()
    subject = f"127.0.0.1:5000/team/app:1 ({source.digest[:19]})"
    broken = unread("the referrers index sha256:x at 127.0.0.1:5000/team/app is not JSON", "error")
    entry = unread_referrers_packages(source, destinations(), broken, bash="/bin/bash")
    assert exit_code(entry) == "1"
    assert entry.description == (
        f"what refers to {subject} at registry 127.0.0.1:5000: could not be read (the referrers "
        "index sha256:x at 127.0.0.1:5000/team/app is not JSON), so the image is not copied; "
        "`referrers=False` copies it without its signatures, attestations and SBOMs"
    )
    # A registry that cannot be reached, or refuses: `referrers=False` would not get past it.
    down = unread("registry 127.0.0.1:5000 unreachable: connection refused (4 attempts)", "unreachable")
    assert unread_referrers_packages(source, destinations(), down, bash="/bin/bash").description == (
        f"what refers to {subject} at registry 127.0.0.1:5000: registry 127.0.0.1:5000 "
        "unreachable: connection refused (4 attempts); so the image is not copied"
    )
    refused = unread("unauthorized by 127.0.0.1:5000 for sha256-x.sig: ...", "unauthorized")
    description = unread_referrers_packages(source, destinations(), refused, bash="/bin/bash").description or ""
    assert "access denied by registry 127.0.0.1:5000 (401 unauthorized); log in with `docker login 127.0.0.1:5000`" in description
    assert "referrers=False" not in description and "sha256-x.sig" not in description


def test_a_destination_that_refused_its_read_is_named_as_the_cause_at_package_and_publish() -> None:
    source = resolved()
    (destination,) = destinations()
    reads = probed(
        served("127.0.0.1:5000/team/app:1", INDEX),
        probe_failed(
            destination.reference, "unauthorized",
            "unauthorized by 127.0.0.1:5501 (401) for mirror/team/app:1: no credentials for "
            "127.0.0.1:5501 in the Docker config or containers auth files",
        ),
    )  # fmt: skip
    unreadable = unreadable_destinations((destination,), reads)
    refusal = (
        "destination 127.0.0.1:5501/mirror/team/app:1 at registry 127.0.0.1:5501: access denied by "
        "registry 127.0.0.1:5501 (no credentials for 127.0.0.1:5501 in the Docker config or "
        "containers auth files); log in with `docker login 127.0.0.1:5501` (or `skopeo login 127.0.0.1:5501`)"
    )
    assert unreadable == (refusal,)
    # `pants package` says so, before anything is copied.
    assert package_line(source, None, unreadable) == (
        f"Resolved 127.0.0.1:5000/team/app:1 to {source.summary}; {refusal}"
    )
    # What refers to the image could not be checked there: the refusal is the cause, and
    # `referrers=False` is not offered.
    referrers = unread("unauthorized by 127.0.0.1:5501 for mirror/team/app:sha256-x.sig", "unauthorized")
    entry = unread_referrers_packages(source, (destination,), referrers, unreadable=unreadable, bash="/bin/bash")
    assert entry.description == (
        f"{refusal}; what refers to 127.0.0.1:5000/team/app:1 ({source.digest[:19]}) could not be "
        "checked there, so the image is not copied"
    )
    assert package_line(source, referrers, unreadable).endswith(entry.description or "")
    # A destination that serves nothing yet is no failure.
    missing = probed(probe_failed(destination.reference, "not_found", "mirror/team/app:1 not found"))
    assert unreadable_destinations((destination,), missing) == ()


def test_the_package_line_says_what_the_source_resolved_to_or_why_not() -> None:
    source = resolved()
    found = ReferrersResult("127.0.0.1:5000/team/app:1", None, subject=source.digest, found=(("signature", 1),))
    assert package_line(source, found) == (
        f"Resolved 127.0.0.1:5000/team/app:1 to {source.summary}; referrers at the source: 1 signature"
    )
    missing = resolve_source(
        "127.0.0.1:5000/team/app:1", None,
        probed(probe_failed("127.0.0.1:5000/team/app:1", "not_found", MANIFEST_UNKNOWN)),
    )  # fmt: skip
    assert package_line(missing, None) == f"Could not resolve {missing.error}"


def test_one_digest_holds_the_records_that_only_one_image_writes() -> None:
    records = [FileContent(path, b"{}") for path in ("a.json", "b.json", "c.json", "b.json")]
    assert shared_record_paths(records) == {"a.json", "c.json"}
    assert shared_record_paths([]) == frozenset()


def test_the_identity_a_signature_must_name_is_the_source_repository_only_when_asked_and_gated() -> None:
    assert required_identity("source_repository", "key", "python:3.12", ["k.pub"]) == "docker.io/library/python"
    assert required_identity(None, "source_repository", "ghcr.io/team/app:1", ["k.pub"]) == "ghcr.io/team/app"
    assert required_identity("key", "source_repository", "ghcr.io/team/app:1", ["k.pub"]) is None
    assert required_identity("source_repository", "key", "ghcr.io/team/app:1", []) is None
    with pytest.raises(ValueError, match="must be one of key, source_repository, not 'repo'"):
        required_identity(None, "repo", "ghcr.io/team/app:1", ["k.pub"])
