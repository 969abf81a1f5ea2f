"""The `pants package` JSON record and the publish summary entries: pure functions."""

from __future__ import annotations

import json

from docker_mirror.goals.package import mirror_record
from docker_mirror.goals.publish import (
    by_repository,
    copied_packages,
    split_up_to_date,
    unresolved_packages,
    up_to_date_packages,
)
from docker_mirror.testutil.probe_results import failed as probe_failed
from docker_mirror.testutil.probe_results import INDEX, probed, served
from docker_mirror.util_rules.manifest_reads import resolve_source
from docker_mirror.util_rules.destinations import Destination, mirror_destinations
from docker_mirror.util_rules.manifests import OCI_INDEX, manifest_digest
from docker_mirror.util_rules.skopeo import CopyOutcome
from pants.engine.unions import UnionMembership
from pants.backend.docker.registries import DockerRegistries
from pants.engine.addresses import Address
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
            "digest": manifest_digest(INDEX),
            "media_type": OCI_INDEX,
            "platforms": ["linux/amd64", "linux/arm64"],
            "index_digest": None,
            "pinned": f"127.0.0.1:5000/team/app@{manifest_digest(INDEX)}",
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


def test_summary_entries_are_honest() -> None:
    source = resolve_source(
        "127.0.0.1:5000/team/app:1", None, probed(served("127.0.0.1:5000/team/app:1", INDEX))
    )
    (destination,) = destinations()

    up_to_date = up_to_date_packages(source, destination)
    assert up_to_date.process is None  # rendered "skipped (up to date: ...)"
    assert (up_to_date.description or "").startswith("(up to date: @mirror already serves sha256:")

    copied = copied_packages(
        source, destination, CopyOutcome(destination.reference, 0), bash="/bin/bash"
    )
    assert isinstance(copied.process, InteractiveProcess)
    assert copied.process.process.env["DOCKER_MIRROR_EXIT_CODE"] == "0"
    assert (copied.description or "").startswith(
        "@mirror (copied from 127.0.0.1:5000/team/app:1, sha256:"
    )

    failure = copied_packages(
        source,
        destination,
        CopyOutcome(destination.reference, 1, "copy ...: registry unreachable"),
        bash="/bin/bash",
    )
    assert isinstance(failure.process, InteractiveProcess)
    assert failure.process.process.env["DOCKER_MIRROR_EXIT_CODE"] == "1"
    assert failure.description == "copy ...: registry unreachable"

    missing = resolve_source(
        "127.0.0.1:5000/team/app:1",
        None,
        probed(probe_failed("127.0.0.1:5000/team/app:1", "not_found", MANIFEST_UNKNOWN)),
    )
    unresolved = unresolved_packages(missing, destinations(), bash="/bin/bash")
    assert unresolved.names == ("127.0.0.1:5501/mirror/team/app:1",)
    assert isinstance(unresolved.process, InteractiveProcess)
    assert unresolved.process.process.env["DOCKER_MIRROR_EXIT_CODE"] == "1"
    assert "at registry 127.0.0.1:5000: not found" in (unresolved.description or "")
