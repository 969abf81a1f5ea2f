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
    reporter_script,
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
    assert copy.argv[4:7] == (DIGEST, "none", "5")
    assert copy.argv[7:12] == inspect_argv(
        "/usr/bin/skopeo", "registry.lan:5000/x:1", verify_tls=False
    )
    assert copy.argv[12:] == copy_argv(
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
        ("reading manifest 1 in r/x: unauthorized: authentication required", "access denied"),
        (
            'pinging container registry r.lan: Get "https://r.lan/v2/": http: server gave HTTP response to HTTPS client',
            "insecure_registries",
        ),
        (
            "pinging container registry r.lan: x509: certificate signed by unknown authority",
            "TLS verification failed",
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


@pytest.mark.parametrize("exit_code", [0, 1, 2])
def test_reporter_script_prints_the_message_and_exits_with_the_code(exit_code: int) -> None:
    message = 'docker-mirror: it\'s $HOME `and` "quotes"'
    result = subprocess.run(
        ["bash", "-c", reporter_script()],
        env={
            **os.environ,
            "DOCKER_MIRROR_MESSAGE": message,
            "DOCKER_MIRROR_EXIT_CODE": str(exit_code),
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == exit_code
    assert result.stderr == message + "\n"
    assert result.stdout == ""
