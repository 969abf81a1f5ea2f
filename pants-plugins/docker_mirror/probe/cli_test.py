"""The request and result files, and the command line's exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from docker_mirror.probe.cli import main
from docker_mirror.oci.probe_protocol import (
    ProbeRequest, ProbeResult, ManifestRead, ManifestResult, RequestCounts, RequestError, parse_request,
)


def test_defaults() -> None:
    request = parse_request({"version": 1, "requests": [{"reference": "python:3"}], "future_key": 1})
    assert request == ProbeRequest(requests=(ManifestRead("python:3", False),))
    assert (request.max_concurrency_per_registry, request.attempts, request.timeout_seconds,
            request.max_retry_after_seconds) == (8, 4, 30.0, 60.0)


def test_everything_given() -> None:
    request = parse_request({
        "version": 1, "requests": [{"reference": "a", "need_body": True}],
        "insecure_registries": ["h", "h:1", "10.0.0.0/8"], "max_concurrency_per_registry": 2,
        "attempts": 1, "timeout_seconds": 2.5, "max_retry_after_seconds": 0, "deadline_seconds": 9,
    })
    assert request == ProbeRequest((ManifestRead("a", True),), ("h", "h:1", "10.0.0.0/8"), 2, 1, 2.5, 0.0, 9.0)


@pytest.mark.parametrize(
    "document, message",
    [
        ([], "not a JSON object"),
        ({"requests": []}, "unsupported request version"),
        ({"version": 2, "requests": []}, "unsupported request version"),
        ({"version": 1}, "requests must be a list"),
        ({"version": 1, "requests": [{"reference": 1}]}, r"requests\[0\]"),
        ({"version": 1, "requests": [{"reference": "a", "need_body": "yes"}]}, "need_body"),
        ({"version": 1, "requests": [], "insecure_registries": "h"}, "insecure_registries"),
        ({"version": 1, "requests": [], "attempts": 0}, "attempts"),
        ({"version": 1, "requests": [], "attempts": True}, "attempts"),
        ({"version": 1, "requests": [], "timeout_seconds": "30"}, "timeout_seconds"),
        ({"version": 1, "requests": [], "max_concurrency_per_registry": 1.5}, "max_concurrency"),
    ],
)
def test_bad_requests(document: Any, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_request(document)


def test_result_document() -> None:
    result = ProbeResult(
        results=[
            ManifestResult("a:1", "ok", "sha256:" + "0" * 64, "application/x", 12, b"{}", "GET", 200),
            ManifestResult("b:1", "rate_limited", method="HEAD", http_status=429, retry_after_seconds=3600.0,
                            message="rate limited by docker.io (429), retry after 3600 s"),
            ManifestResult("c:1", "unreachable", retry_after_seconds=1.5),
        ],
        requests_sent={"docker.io": RequestCounts(HEAD=2, token=1)},
    )
    document = result.to_json()
    assert document["version"] == 1
    assert document["results"][0] == {
        "reference": "a:1", "outcome": "ok", "digest": "sha256:" + "0" * 64, "media_type": "application/x",
        "size": 12, "body": "e30=", "method": "GET", "http_status": 200, "retry_after_seconds": None,
        "message": None,
    }
    assert document["results"][1]["retry_after_seconds"] == 3600
    assert document["results"][2]["retry_after_seconds"] == 1.5
    assert document["requests_sent"] == {"docker.io": {"HEAD": 2, "GET": 0, "token": 1}}
    assert json.loads(json.dumps(document)) == document


def _run(tmp_path: Path, *args: str) -> "tuple[int, str]":
    stderr = io.StringIO()
    code = main(list(args), stderr=stderr)
    return code, stderr.getvalue()


def test_usage(tmp_path: Path) -> None:
    code, stderr = _run(tmp_path, "only-one")
    assert code == 2 and stderr == "docker_mirror.probe: usage: python -m docker_mirror.probe REQUEST.json RESULT.json | tar INDEX.json STORE OUTPUT.tar\n"


@pytest.mark.parametrize("content, message", [
    (None, "cannot read the request"), ("{", "it is not valid JSON"), ('{"version": 9, "requests": []}', "version"),
])
def test_unreadable_requests_exit_2_with_one_line(tmp_path: Path, content: Any, message: str) -> None:
    request = tmp_path / "request.json"
    if content is not None:
        request.write_text(content)
    code, stderr = _run(tmp_path, str(request), str(tmp_path / "result.json"))
    assert code == 2 and message in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "result.json").exists()


def test_an_empty_request_and_invalid_references_are_results(tmp_path: Path) -> None:
    request, result = tmp_path / "request.json", tmp_path / "result.json"
    request.write_text(json.dumps({"version": 1, "requests": [{"reference": "Not A Reference"}]}))
    assert _run(tmp_path, str(request), str(result)) == (0, "")
    document = json.loads(result.read_text())
    assert document["results"][0]["outcome"] == "error"
    assert document["results"][0]["message"].startswith("invalid image reference")
    assert document["requests_sent"] == {}
    request.write_text(json.dumps({"version": 1, "requests": []}))
    assert _run(tmp_path, str(request), str(result)) == (0, "")
    document = json.loads(result.read_text())
    peak, cpu = document.pop("peak_rss_kib"), document.pop("cpu_seconds")
    assert document == {"version": 1, "results": [], "requests_sent": {}}
    assert 0 < cpu < 60, cpu
    # The process's own peak: an interpreter with the probe's modules loaded (tens of MiB).
    assert 8 * 1024 < peak < 1024 * 1024, peak


def test_the_peak_memory_reported_is_the_probes_own_not_its_parents(tmp_path: Path) -> None:
    """A parent holding 256 MiB (as pantsd holds hundreds of MB) starts the probe: the probe
    reports its own peak, not the parent's, which `getrusage`'s `ru_maxrss` carries over exec."""
    import subprocess
    import sys

    request, result = tmp_path / "request.json", tmp_path / "result.json"
    request.write_text(json.dumps({"version": 1, "requests": []}))
    held = bytearray(256 * 1024 * 1024)
    for page in range(0, len(held), 4096):
        held[page] = 1
    main_ = "import sys; from docker_mirror.probe.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", main_, str(request), str(result)],
                          capture_output=True, text=True, env={"PYTHONPATH": ":".join(sys.path)})  # fmt: skip
    del held
    assert (done.returncode, done.stderr) == (0, "")
    peak = json.loads(result.read_text())["peak_rss_kib"]
    assert 8 * 1024 < peak < 128 * 1024, peak


def test_an_unwritable_result(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"version": 1, "requests": []}))
    code, stderr = _run(tmp_path, str(request), str(tmp_path / "missing-dir" / "result.json"))
    assert code == 1 and "cannot write the result" in stderr


def test_a_failure_says_what_kind_it_is_so_the_plugin_can_say_what_to_do() -> None:
    import asyncio
    from types import SimpleNamespace

    from docker_mirror.probe.distribution import Distribution
    from docker_mirror.oci.probe_protocol import CopyResult, ReferrersResult
    from docker_mirror.probe.referrers import ReferrersError
    from docker_mirror.probe.registry import RegistryError
    from docker_mirror.probe.run import _kind

    assert _kind(RegistryError("unauthorized", "unauthorized by r")) == "unauthorized"
    assert _kind(ReferrersError("the listing is not JSON")) == "error"
    assert ReferrersResult("a", None, error="x", error_kind="denied").to_json()["error_kind"] == "denied"
    assert CopyResult("error", "x", error_kind="unreachable").to_json()["error_kind"] == "unreachable"
    # A 401 or 403 past the session's own auth (a push refused) is a refusal, not any error.
    async def outcomes() -> list:
        registry = Distribution(SimpleNamespace(registry="r.lan"))  # type: ignore[arg-type]
        return [registry._failed("x", status).outcome for status in (401, 403, 500)]

    assert asyncio.run(outcomes()) == ["unauthorized", "denied", "error"]


def test_the_probe_starts_without_cryptography(tmp_path: Path) -> None:
    """Every copy and read pays the probe's start-up; only a signature check needs `cryptography`."""
    import subprocess
    import sys

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"version": 1, "requests": []}))
    check = (
        "import sys\nfrom docker_mirror.probe.cli import main\n"
        "assert main(sys.argv[1:]) == 0\n"
        "assert 'cryptography' not in sys.modules, 'cryptography imported at start-up'\n"
    )
    done = subprocess.run([sys.executable, "-c", check, str(request), str(tmp_path / "result.json")],
                          capture_output=True, text=True, env={"PYTHONPATH": ":".join(sys.path)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "result.json").read_text())["results"] == []


def test_the_probe_starts_without_loading_ca_certificates_for_aiohttp() -> None:
    """aiohttp's import-time TLS contexts (never used: each HTTPS request gets the probe's own)
    load no CA certificates; a context made afterwards loads the system's as before."""
    import subprocess
    import sys

    check = (
        "import ssl\nimport docker_mirror.probe.cli\nfrom aiohttp import connector\n"
        "print(connector._SSL_CONTEXT_VERIFIED.cert_store_stats()['x509_ca'],"
        " ssl.create_default_context().cert_store_stats()['x509_ca'],"
        " 'set_default_verify_paths' in ssl.SSLContext.__dict__)\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          env={"PYTHONPATH": ":".join(sys.path)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    aiohttps, afterwards, patched = done.stdout.split()
    assert aiohttps == "0" and patched == "False", done.stdout
    assert int(afterwards) > 0, "this machine has no system CA certificates to compare with"
