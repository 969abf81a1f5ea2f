"""`pants package` of a `docker_mirror_archive`: which images go in under which name, and what
is said of those that could not (pure functions; end to end: archive_integration_test.py)."""

from __future__ import annotations

import json

import pytest

from docker_mirror.goals.archive import archive_failures, export_failure, export_images, tar_summary
from docker_mirror.oci.probe_protocol import (
    CopyResult,
    ExportedImage,
    ExportImage,
    ExportRequest,
    ExportResult,
    ProbeRequest,
    ProbeResult,
    TagOutcome,
    encoded,
    parse_request,
    parse_result,
)
from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException

ARCHIVE = Address("src", target_name="offline")
DIGEST = "sha256:" + "a" * 64


def test_each_name_goes_in_once_and_docker_hub_names_are_spelled_out() -> None:
    images = export_images(
        ARCHIVE,
        [
            (Address("a", target_name="m"), ExportImage("python:3.12")),
            (Address("b", target_name="m"), ExportImage("docker.io/library/python:3.12")),
            (Address("b", target_name="m"), ExportImage("GHCR.io/team/tool@" + DIGEST)),
        ],
    )
    assert [i.reference for i in images] == ["GHCR.io/team/tool@" + DIGEST, "python:3.12"]


def test_two_images_that_would_share_a_name_differently_are_refused_naming_both() -> None:
    with pytest.raises(InvalidFieldException, match=r"src:offline: `images` names a:m and b:m, which would both be docker.io/library/python:3.12"):
        export_images(
            ARCHIVE,
            [
                (Address("a", target_name="m"), ExportImage("python:3.12")),
                (Address("b", target_name="m"), ExportImage("python:3.12", platforms=("linux/amd64",))),
            ],
        )


def test_what_kept_an_image_out_is_said_in_one_line() -> None:
    unsigned = ExportedImage("x:1", CopyResult("unsigned", "no cosign signature of sha256:… verifies against k.pub"))
    assert export_failure(unsigned) == "x:1: refused by `require_signature`: no cosign signature of sha256:… verifies against k.pub"
    failed_tag = ExportedImage("x:1", CopyResult("ok", tags=(TagOutcome("1", "failed", "registry unreachable", "unreachable"),)))
    assert export_failure(failed_tag) == "x:1: registry unreachable"
    assert export_failure(ExportedImage("x:1", CopyResult("ok"), name="reg/x:1", digest=DIGEST)) is None


def test_an_image_the_result_does_not_hold_fails_with_the_problem() -> None:
    images = (ExportImage("x:1"), ExportImage("y:1"))
    result = ProbeResult([], export=ExportResult("{}", (ExportedImage("x:1", CopyResult("ok"), "docker.io/library/x:1", DIGEST),)))
    assert archive_failures(result, "no result", images) == ["y:1: no result"]
    assert archive_failures(None, "the probe failed", images) == ["x:1: the probe failed", "y:1: the probe failed"]


def test_an_export_request_and_result_survive_the_round_trip() -> None:
    request = ProbeRequest((), export=ExportRequest(".store", (ExportImage("x:1", None, ("linux/amd64",), False, (("k.pub", "PEM"),)),)))
    assert parse_request(json.loads(encoded(request))) == request
    archived = ProbeRequest((), archive="/abs/offline.tar", archived=("docker.io/library/x",))
    assert parse_request(json.loads(encoded(archived))) == archived
    result = ProbeResult([], export=ExportResult('{"manifests":[]}', (ExportedImage("x:1", CopyResult("ok"), "docker.io/library/x:1", DIGEST),)))
    assert parse_result(encoded(result)).export == result.export


def test_the_tar_summary_is_read_leniently() -> None:
    assert tar_summary(b'{"blobs": 12, "bytes": 52428800}\n') == "12 blobs, 50.0 MiB"
    assert tar_summary(b"garbage") == "written"
