"""The registry probe's request and result files, as the plugin writes and reads them."""

from __future__ import annotations

import base64
import json

from docker_mirror_testutil.probe_results import failed
from docker_mirror.util_rules.probe import (
    ProbeSettings,
    failed_probe,
    parse_probe_result,
    probe_request_json,
)

SETTINGS = ProbeSettings(
    insecure_registries=("registry.lan:5000",),
    max_concurrency_per_registry=8,
    attempts=4,
    timeout_seconds=30,
    max_retry_after_seconds=60,
)
DIGEST = "sha256:" + "a" * 64


def test_the_request_lists_each_reference_once_in_order_with_the_settings() -> None:
    request = json.loads(probe_request_json({"b.io/x:1": False, "a.io/y:2": True}, SETTINGS))
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
    }


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
    found = parse_probe_result(result, ["a.io/y:2", "b.io/x:1"])
    assert found["a.io/y:2"].found and found["a.io/y:2"].digest == DIGEST
    assert found["a.io/y:2"].body == body
    assert not found["b.io/x:1"].found
    assert found["b.io/x:1"].describe_failure("source b.io/x:1") == (
        "source b.io/x:1: not found (manifest unknown)"
    )


def test_a_refusal_names_the_registry_and_how_to_log_in_and_keeps_why() -> None:
    no_credentials = failed(
        "r.lan:5000/x:1", "unauthorized",
        "unauthorized by r.lan:5000 (401) for x:1: no credentials for r.lan:5000 in the Docker "
        "config or containers auth files",
    )  # fmt: skip
    assert no_credentials.describe_failure("source r.lan:5000/x:1") == (
        "source r.lan:5000/x:1: access denied by registry r.lan:5000 (no credentials for "
        "r.lan:5000 in the Docker config or containers auth files); log in with "
        "`docker login r.lan:5000` (or `skopeo login r.lan:5000`)"
    )
    denied = failed("ghcr.io/x:1", "denied", "access denied by ghcr.io (403) to x:1")
    assert denied.describe_failure("destination ghcr.io/x:1").startswith(
        "destination ghcr.io/x:1: access denied by registry ghcr.io (403: "
    )
    # Docker Hub, for a reference that names no registry.
    assert "`docker login docker.io`" in failed("python:3", "unauthorized", "?").describe_failure("s")


def test_a_missing_or_broken_result_fails_the_references_it_does_not_answer() -> None:
    # An answer the probe never gave must not read as "serves nothing", which would copy, nor
    # as up to date.
    partial = json.dumps({"results": [{"reference": "a.io/y:2", "outcome": "ok", "digest": DIGEST}]})
    found = parse_probe_result(partial.encode(), ["a.io/y:2", "b.io/x:1"])
    assert found["b.io/x:1"].outcome == "error" and not found["b.io/x:1"].found
    for broken in (b"", b"not json", b"[]", b'{"results": 3}'):
        (result,) = parse_probe_result(broken, ["a.io/y:2"]).values()
        assert result.outcome == "error" and result.message


def test_a_failed_probe_process_fails_every_reference_with_its_last_error_line() -> None:
    failed = failed_probe(["a:1", "b:1"], b"Traceback ...\nValueError: bad request\n", 1)
    assert {r.message for r in failed.values()} == {
        "the registry probe failed: ValueError: bad request"
    }
    assert failed_probe(["a:1"], b"", 9)["a:1"].message == "the registry probe failed: exit code 9"
