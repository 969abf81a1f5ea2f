"""The `skopeo` command lines of `method="copy"`, and how its errors are reported."""

from __future__ import annotations

import os
import subprocess

import pytest
from docker_mirror.util_rules.skopeo import (
    GUARDED_COPY_SCRIPT,
    Skopeo,
    copy_argv,
    describe_failure,
    inspect_argv,
    skopeo_error_message,
)
from pants.engine.process import ProcessCacheScope
from pants.util.frozendict import FrozenDict

DIGEST = "sha256:" + "ab" * 32


def test_copy_keeps_every_platform_and_every_digest() -> None:
    argv = copy_argv(
        "/usr/bin/skopeo",
        f"registry.example.com/team/app@{DIGEST}",
        "mirror.example.com/mirror/team/app:1",
        platform=None,
        verify_source_tls=True,
        verify_destination_tls=True,
    )
    assert argv == (
        "/usr/bin/skopeo",
        "copy",
        "--all",
        "--preserve-digests",
        f"docker://registry.example.com/team/app@{DIGEST}",
        "docker://mirror.example.com/mirror/team/app:1",
    )


def test_copy_of_one_platform_selects_it_without_all() -> None:
    argv = copy_argv(
        "skopeo",
        "a.io/x@" + DIGEST,
        "b.io/x:1",
        platform="linux/arm/v7",
        verify_source_tls=True,
        verify_destination_tls=True,
    )
    assert "--all" not in argv
    assert argv[2:9] == (
        "--override-os",
        "linux",
        "--override-arch",
        "arm",
        "--override-variant",
        "v7",
        "--preserve-digests",
    )
    no_variant = copy_argv(
        "skopeo",
        "a.io/x@" + DIGEST,
        "b.io/x:1",
        platform="linux/arm64",
        verify_source_tls=True,
        verify_destination_tls=True,
    )
    assert "--override-variant" not in no_variant
    assert no_variant[2:6] == ("--override-os", "linux", "--override-arch", "arm64")


def test_tls_flags_only_where_tls_is_not_verified() -> None:
    argv = copy_argv(
        "skopeo",
        "127.0.0.1:5000/x@" + DIGEST,
        "b.io/x:1",
        platform=None,
        verify_source_tls=False,
        verify_destination_tls=True,
    )
    assert "--src-tls-verify=false" in argv
    assert not any(a.startswith("--dest-tls-verify") for a in argv)
    assert inspect_argv("skopeo", "localhost:5000/x:1", verify_tls=False) == (
        "skopeo",
        "inspect",
        "--raw",
        "--tls-verify=false",
        "docker://localhost:5000/x:1",
    )
    assert inspect_argv("skopeo", "ghcr.io/x:1", verify_tls=True) == (
        "skopeo",
        "inspect",
        "--raw",
        "docker://ghcr.io/x:1",
    )


def test_copies_retry_transient_failures() -> None:
    argv = copy_argv(
        "skopeo", "a.io/x@" + DIGEST, "b.io/x:1", platform=None, verify_source_tls=True,
        verify_destination_tls=True, retries=3,
    )  # fmt: skip
    assert "--retry-times=3" in argv
    assert not any(arg.startswith("--retry") for arg in copy_argv(
        "skopeo", "a.io/x@" + DIGEST, "b.io/x:1", platform=None, verify_source_tls=True,
        verify_destination_tls=True,
    ))  # fmt: skip
    skopeo = Skopeo("/usr/bin/skopeo", "/bin/bash", FrozenDict(), retries=2)
    assert "--retry-times=2" in skopeo.copy(
        "a.io/x@" + DIGEST, "b.io/x:1", platform=None, want=DIGEST, seen=None, run_id=7
    ).argv


def test_copies_decide_tls_per_registry_and_each_belongs_to_one_run() -> None:
    skopeo = Skopeo(
        "/usr/bin/skopeo", "/bin/bash", FrozenDict({"HOME": "/home/me"}), ("registry.lan",)
    )
    copy = skopeo.copy(
        "127.0.0.1:5000/x@" + DIGEST,
        "registry.lan:5000/x:1",
        platform=None,
        want=DIGEST,
        seen=None,
        run_id=7,
    )
    # The guard reads the destination with its own TLS setting, then the copy runs.
    assert copy.argv[:3] == ("/bin/bash", "-c", GUARDED_COPY_SCRIPT)
    # want, seen, the guard's retries (none configured), the length of the inspect argv.
    assert copy.argv[4:8] == (DIGEST, "none", "0", "5")
    assert copy.argv[8:13] == inspect_argv(
        "/usr/bin/skopeo", "registry.lan:5000/x:1", verify_tls=False
    )
    assert copy.argv[13:] == copy_argv(
        "/usr/bin/skopeo",
        "127.0.0.1:5000/x@" + DIGEST,
        "registry.lan:5000/x:1",
        platform=None,
        verify_source_tls=False,
        verify_destination_tls=False,
    )
    to_hub = skopeo.copy(
        "ghcr.io/x@" + DIGEST, "docker.io/me/x:1", platform=None, want=DIGEST, seen=DIGEST, run_id=7
    )
    assert not any("tls-verify" in arg for arg in to_hub.argv)
    for process in (copy, to_hub):
        # Run once while pantsd lives (its graph cleaning would otherwise run a previous run's
        # copy again), and never reused by another run: the run id is part of the process.
        assert process.cache_scope == ProcessCacheScope.PER_RESTART_ALWAYS
        assert process.env == FrozenDict({"HOME": "/home/me", "DOCKER_MIRROR_PANTS_RUN": "7"})
    next_run = skopeo.copy(
        "ghcr.io/x@" + DIGEST, "docker.io/me/x:1", platform=None, want=DIGEST, seen=DIGEST, run_id=8
    )
    assert next_run != to_hub


SKOPEO_NOT_FOUND = (
    'time="2024-01-01T00:00:00Z" level=fatal msg="Error parsing image name '
    '\\"docker://127.0.0.1:5000/team/missing:1\\": reading manifest 1 in '
    '127.0.0.1:5000/team/missing: manifest unknown: manifest unknown"\n'
)


def test_error_message_drops_skopeo_boilerplate() -> None:
    assert skopeo_error_message(SKOPEO_NOT_FOUND.encode()) == (
        "reading manifest 1 in 127.0.0.1:5000/team/missing: manifest unknown: manifest unknown"
    )
    assert skopeo_error_message(b"plain text\nlast line\n") == "last line"
    assert skopeo_error_message(b"") == "no error message"


@pytest.mark.parametrize(
    "message, meaning",
    [
        ("reading manifest 1 in r/x: manifest unknown", "not found"),
        (
            'pinging container registry r.lan: Get "https://r.lan/v2/": http: server gave HTTP response to HTTPS client',
            "insecure_registries",
        ),
        (
            "pinging container registry r.lan: x509: certificate signed by unknown authority",
            # The registry named, and how to trust its CA.
            "TLS verification of r.lan failed; trust its CA: put the CA certificate in "
            "/etc/docker/certs.d/r.lan/ca.crt",
        ),
        (
            "writing blob: Patch \"http://127.0.0.1:5000/v2/x/blobs/uploads/u\": write tcp: "
            "use of closed network connection",
            "the connection to the registry was lost",
        ),
        (
            "reading manifest 1 in r.lan/x: toomanyrequests: too many requests",
            "rate limited",
        ),
        (
            "received unexpected HTTP status: 503 Service Unavailable",
            "the registry answered with a server error",
        ),
        (
            'Get "http://127.0.0.1:4040/v2/": dial tcp 127.0.0.1:4040: connect: connection refused',
            "unreachable",
        ),
        ("something else entirely", "failed"),
    ],
)
def test_failures_are_explained(message: str, meaning: str) -> None:
    escaped = message.replace('"', '\\"')  # as logrus writes it
    stderr = f'time="x" level=fatal msg="{escaped}"'
    described = describe_failure(stderr, subject="source r/x:1 at registry r")
    assert described.startswith("source r/x:1 at registry r: ")
    assert meaning in described
    assert described.endswith(f"({message})")


@pytest.mark.parametrize(
    "message, registry, meaning",
    [
        (
            "reading manifest 1 in src.lan/x: unauthorized: authentication required",
            "src.lan",
            "access denied by registry src.lan (401 unauthorized); log in with "
            "`docker login src.lan` (or `skopeo login src.lan`)",
        ),
        (
            # skopeo's own words for where it met the 401 are internals: not repeated.
            "trying to reuse blob sha256:99 at destination: checking whether a blob sha256:99 "
            "exists in dst.lan:5000/mirror/x: unauthorized: authentication required",
            "dst.lan:5000",
            "access denied by registry dst.lan:5000 (401 unauthorized); log in with "
            "`docker login dst.lan:5000` (or `skopeo login dst.lan:5000`)",
        ),
        (
            "writing manifest: uploading manifest 1 to dst.lan:5000/mirror/x: denied: "
            "requested access to the resource is denied",
            "dst.lan:5000",
            "access denied by registry dst.lan:5000 (403: these credentials may not do this); "
            "log in with `docker login dst.lan:5000` (or `skopeo login dst.lan:5000`) as an "
            "account that may",
        ),
        (
            # A message that names neither registry: the first one given (the destination).
            "unauthorized: authentication required",
            "dst.lan:5000",
            "access denied by registry dst.lan:5000 (401 unauthorized)",
        ),
    ],
)
def test_a_refusal_names_the_registry_and_how_to_log_in(message: str, registry: str, meaning: str) -> None:
    stderr = f'time="x" level=fatal msg="{message}"'
    described = describe_failure(
        stderr, subject="copy from src.lan/x:1 to dst.lan:5000/mirror/x:1", registries=("dst.lan:5000", "src.lan")
    )
    assert described.startswith("copy from src.lan/x:1 to dst.lan:5000/mirror/x:1: " + meaning)
    assert "sha256:99" not in described and "authentication required" not in described


def test_copies_and_reads_are_bounded_in_time() -> None:
    skopeo = Skopeo(
        "/usr/bin/skopeo", "/bin/bash", FrozenDict(), retries=1, read_timeout=30, copy_timeout=600
    )
    argv = skopeo.copy(
        "a.io/x@" + DIGEST, "b.io/x:1", platform=None, want=DIGEST, seen=None, run_id=7
    ).argv
    # The guard's read of the destination, then the copy: each with its own global limit.
    assert argv[8:11] == ("/usr/bin/skopeo", "--command-timeout=30s", "inspect")
    assert argv[13:16] == ("/usr/bin/skopeo", "--command-timeout=600s", "copy")
    unbounded = Skopeo("/usr/bin/skopeo", "/bin/bash", FrozenDict()).copy(
        "a.io/x@" + DIGEST, "b.io/x:1", platform=None, want=DIGEST, seen=None, run_id=7
    )
    assert not any("timeout" in arg for arg in unbounded.argv)


# A stand-in for skopeo that plays a script of outcomes, one per `copy` call: `ok` (the
# destination serves `want` from then on), or an error message (exit 1). `inspect` prints the
# manifest the destination "serves" (file `served`), or fails when there is none;
# `manifest-digest` prints that manifest (here, the digest itself).
FAKE_SKOPEO = r"""#!/bin/bash
cd "$FAKE_DIR"
case "$1" in
  inspect) [ -f served ] && cat served || { echo "manifest unknown" >&2; exit 1; } ;;
  manifest-digest) cat "$2" ;;
  copy)
    n=$(cat calls 2>/dev/null || echo 0); echo $((n + 1)) >calls
    outcome=$(sed -n "$((n + 1))p" outcomes)
    if [ "$outcome" = ok ]; then printf %s "$WANT" >served; exit 0; fi
    if [ "$outcome" = "someone-else" ]; then printf other >served; echo "use of closed network connection" >&2; exit 1; fi
    echo "$outcome" >&2; exit 1 ;;
esac
"""


@pytest.mark.parametrize(
    "outcomes, retries, exit_code, copies, stderr",
    [
        # A connection cut while a blob is written, twice, then success: retried.
        (["write: use of closed network connection", "use of closed network connection", "ok"],
         2, 0, 3, ""),
        # A connection reset by the registry while a blob is written: retried.
        (["writing blob: Patch \"http://r/v2/x/blobs/uploads/u\": read: connection reset by peer", "ok"],
         1, 0, 2, ""),
        # A 5xx answer: retried.
        (["received unexpected HTTP status: 503 Service Unavailable", "ok"], 1, 0, 2, ""),
        # More cuts than retries: the last error is reported.
        (["use of closed network connection"] * 3, 2, 1, 3, "use of closed network connection"),
        # A refusal is not transient: no retry.
        (["unauthorized: authentication required", "ok"], 3, 1, 1, "unauthorized"),
        # Someone else wrote the tag during a failed attempt: not overwritten.
        (["someone-else", "ok"], 3, 75, 1, "the destination changed since it was checked"),
    ],
)
def test_the_guard_retries_only_transient_failures_and_checks_again_before_each_attempt(
    tmp_path, outcomes, retries, exit_code, copies, stderr
) -> None:
    fake = tmp_path / "skopeo"
    fake.write_text(FAKE_SKOPEO)
    fake.chmod(0o755)
    (tmp_path / "outcomes").write_text("\n".join(outcomes) + "\n")
    skopeo = Skopeo(str(fake), "/bin/bash", FrozenDict(), retries=retries)
    process = skopeo.copy(
        "a.io/x@" + DIGEST, "b.io/x:1", platform=None, want=DIGEST, seen=None, run_id=7
    )
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        process.argv, cwd=work, capture_output=True, text=True, timeout=60,
        env={"FAKE_DIR": str(tmp_path), "WANT": DIGEST, "PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert result.returncode == exit_code, result.stderr
    assert int((tmp_path / "calls").read_text()) == copies
    assert stderr in result.stderr
    if exit_code == 0:
        assert (tmp_path / "served").read_text() == DIGEST
        assert "up to date" not in result.stdout
