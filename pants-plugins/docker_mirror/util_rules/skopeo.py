"""`skopeo`, which copies `method="copy"` images: the rule that finds it, its command lines, and
what its errors mean.

Building a `Process` does not run it: everything here is pure but `find_skopeo`. Every reference
is passed with the `docker://` transport; credentials never appear in argv (skopeo reads them
from the Docker config or the containers auth file named by the environment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from docker_mirror.compat import binary_paths, concurrently, environment_vars
from docker_mirror.image_reference import registry_host, split_platform
from docker_mirror.subsystems.docker_mirror import DockerMirrorSubsystem
from docker_mirror.util_rules.registry_access import tls_verify
from pants.core.util_rules.system_binaries import (
    BashBinary,
    BinaryNotFoundError,
    BinaryPathRequest,
    BinaryPathTest,
)
from pants.engine.env_vars import EnvironmentVarsRequest
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

INSTALL_HINT = (
    "Install it with `apt-get install skopeo` (Debian, Ubuntu), `dnf install skopeo` (Fedora, "
    "RHEL) or `brew install skopeo` (macOS), or point `[docker-mirror].executable_search_paths` "
    "at the directory that holds it."
)


def docker_transport(reference: str) -> str:
    return f"docker://{reference}"


def tls_flag(option: str, verify: bool) -> tuple[str, ...]:
    """`--<option>=false` when TLS is not verified; nothing (skopeo verifies) otherwise."""
    return () if verify else (f"--{option}=false",)


def inspect_argv(skopeo: str, reference: str, *, verify_tls: bool) -> tuple[str, ...]:
    """Fetches the raw manifest of `reference` and nothing else: no config, no layer."""
    return (
        skopeo,
        "inspect",
        "--raw",
        *tls_flag("tls-verify", verify_tls),
        docker_transport(reference),
    )


def copy_argv(
    skopeo: str,
    source: str,
    destination: str,
    *,
    platform: str | None,
    verify_source_tls: bool,
    verify_destination_tls: bool,
) -> tuple[str, ...]:
    """Copies `source` to `destination` registry to registry, keeping every digest.

    Without `platform`: `--all`, every platform of an index and the index itself. With it: only
    that platform's manifest (`--override-os/--override-arch/--override-variant`, no `--all`).
    `--preserve-digests` makes skopeo fail rather than write anything under another digest.
    """
    if platform is None:
        selection: tuple[str, ...] = ("--all",)
    else:
        os_name, arch, variant = split_platform(platform)
        selection = ("--override-os", os_name, "--override-arch", arch)
        if variant:
            selection += ("--override-variant", variant)
    return (
        skopeo,
        "copy",
        *selection,
        "--preserve-digests",
        *tls_flag("src-tls-verify", verify_source_tls),
        *tls_flag("dest-tls-verify", verify_destination_tls),
        docker_transport(source),
        docker_transport(destination),
    )


# The copy runs as this script, so that it only ever writes what was decided: it re-reads the
# destination first, does nothing if it already serves the wanted digest, and refuses to write if
# the destination changed since it was checked. That matters beyond races with other writers:
# with pantsd, Pants re-runs the processes a previous run depended on while it checks whether
# their results can be reused, so a previous run's copy can run again; this guard makes that
# re-run a manifest read (it finds its own earlier copy in place) instead of a second push, and
# keeps it from overwriting a newer copy.
GUARDED_COPY_SCRIPT = r"""want=$1 seen=$2 count=$3; shift 3
inspect=("${@:1:$count}"); shift "$count"
if "${inspect[@]}" >destination-manifest 2>/dev/null; then
  current=$("${inspect[0]}" manifest-digest destination-manifest) || current=unreadable
else
  current=none
fi
if [ "$current" = "$want" ]; then
  echo "docker-mirror: up to date"
  exit 0
fi
if [ "$current" != "$seen" ]; then
  echo "docker-mirror: the destination changed since it was checked" \
    "(it served $seen, now $current); not overwriting it" >&2
  exit 75
fi
exec "$@"
"""
UP_TO_DATE_OUTPUT = b"docker-mirror: up to date"
DESTINATION_CHANGED_EXIT_CODE = 75
NOTHING = "none"


def guarded_copy_argv(
    bash: str,
    *,
    want: str,
    seen: str | None,
    inspect_destination: tuple[str, ...],
    copy: tuple[str, ...],
) -> tuple[str, ...]:
    """Runs `copy` unless the destination (read with `inspect_destination`) already serves
    `want`, or no longer serves `seen` (None: nothing), what it served when it was checked."""
    return (
        bash,
        "-c",
        GUARDED_COPY_SCRIPT,
        "docker-mirror-copy",
        want,
        seen or NOTHING,
        str(len(inspect_destination)),
        *inspect_destination,
        *copy,
    )


# Reads the manifests of many references in one process, a few at a time. A `Process` per
# reference cost Pants a sandbox and skopeo a start-up each, which was most of a re-mirror's
# time. Arguments: the parallelism, then per reference the length of its argv and the argv.
# Reference n's result lands in `manifest-<n>` (stdout), `manifest-<n>.err` and
# `manifest-<n>.exit`. Builtins only: the process gets no PATH.
READ_MANIFESTS_SCRIPT = r"""parallel=$1; shift
index=0 running=0
while [ "$#" -gt 0 ]; do
  count=$1; shift
  ("${@:1:$count}" >"manifest-$index" 2>"manifest-$index.err"
   echo "$?" >"manifest-$index.exit") &
  shift "$count"
  index=$((index + 1)) running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then wait -n; running=$((running - 1)); fi
done
wait
"""
# Registry reads wait on the network, so more run at once than Pants runs processes (one per
# core); few enough to stay polite to a rate-limited registry.
READ_MANIFESTS_PARALLELISM = 8


def manifest_read_path(index: int) -> str:
    return f"manifest-{index}"


@dataclass(frozen=True)
class ManifestRead:
    """`skopeo inspect --raw <reference>`: its exit code and output."""

    reference: str
    exit_code: int
    stdout: bytes
    stderr: bytes


def manifest_reads(
    references: Sequence[str], outputs: Mapping[str, bytes], *, batch_stderr: bytes = b""
) -> tuple[ManifestRead, ...]:
    """The result of each reference of a `Skopeo.read_manifests` process, from its output files
    (path -> content). A reference without a result (the batch itself failed) gets a failure
    carrying the batch's stderr."""
    reads = []
    for index, reference in enumerate(references):
        path = manifest_read_path(index)
        exit_text = outputs.get(f"{path}.exit", b"").strip()
        if not exit_text.isdigit():
            reads.append(
                ManifestRead(reference, 1, b"", batch_stderr or b"the manifest was not read")
            )
            continue
        reads.append(
            ManifestRead(
                reference, int(exit_text), outputs.get(path, b""), outputs.get(f"{path}.err", b"")
            )
        )
    return tuple(reads)


@dataclass(frozen=True)
class Skopeo:
    """The `skopeo` binary with the environment and TLS settings every invocation shares."""

    path: str
    bash: str
    env: FrozenDict[str, str]
    insecure_registries: tuple[str, ...] = ()

    def verifies_tls(self, reference: str) -> bool:
        return tls_verify(registry_host(reference), self.insecure_registries)

    def read_manifests(self, references: Sequence[str]) -> Process:
        """Reads the raw manifest of each reference (no config, no layer); see
        `READ_MANIFESTS_SCRIPT` and `manifest_reads`."""
        argv = [
            self.bash,
            "-c",
            READ_MANIFESTS_SCRIPT,
            "docker-mirror-read-manifests",
            str(READ_MANIFESTS_PARALLELISM),
        ]
        for reference in references:
            inspect = inspect_argv(self.path, reference, verify_tls=self.verifies_tls(reference))
            argv += [str(len(inspect)), *inspect]
        more = f" and {len(references) - 1} more" if len(references) > 1 else ""
        return Process(
            argv=tuple(argv),
            description=f"Reading the manifests of {references[0]}{more}",
            level=LogLevel.DEBUG,
            env=self.env,
            output_files=tuple(
                manifest_read_path(index) + suffix
                for index in range(len(references))
                for suffix in ("", ".err", ".exit")
            ),
            # Registries change between runs: ask them again in every run, once per run.
            cache_scope=ProcessCacheScope.PER_SESSION,
        )

    def copy(
        self, source: str, destination: str, *, platform: str | None, want: str, seen: str | None
    ) -> Process:
        """Copies `source` (pinned to the digest `want`) to `destination`, which served `seen`
        when it was checked; see `GUARDED_COPY_SCRIPT`."""
        what = f"the {platform} image" if platform else "all platforms"
        return Process(
            argv=guarded_copy_argv(
                self.bash,
                want=want,
                seen=seen,
                inspect_destination=inspect_argv(
                    self.path, destination, verify_tls=self.verifies_tls(destination)
                ),
                copy=copy_argv(
                    self.path,
                    source,
                    destination,
                    platform=platform,
                    verify_source_tls=self.verifies_tls(source),
                    verify_destination_tls=self.verifies_tls(destination),
                ),
            ),
            description=f"Copying {source} to {destination} ({what})",
            env=self.env,
            cache_scope=ProcessCacheScope.PER_SESSION,
        )


# skopeo logs like logrus: time="..." level=fatal msg="...".
_LOG_MESSAGE = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_NOISE_PREFIXES = (
    re.compile(r'^Error parsing image name "[^"]*": '),
    re.compile(r"^initializing source docker://\S+: "),
    re.compile(r"^initializing destination docker://\S+: "),
)

# (what the message contains, what it means), checked in order.
_PROBLEMS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("manifest unknown", "name unknown", "not found"), "not found"),
    (
        ("unauthorized", "authentication required", "denied"),
        "access denied (credentials come from the Docker config or the containers auth file)",
    ),
    (
        ("server gave HTTP response to HTTPS client",),
        "the registry speaks plain HTTP; list it in `[docker-mirror].insecure_registries`",
    ),
    (
        ("x509:", "certificate"),
        "TLS verification failed; list the registry in `[docker-mirror].insecure_registries` "
        "if that is expected",
    ),
    (
        (
            "connection refused",
            "no such host",
            "i/o timeout",
            "connection reset",
            "network is unreachable",
        ),
        "registry unreachable",
    ),
    (("policy.json", "trust policy"), "skopeo's signature policy refused the image"),
)


def skopeo_error_message(stderr: bytes | str) -> str:
    """The message of skopeo's last error line, without the boilerplate it wraps it in."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "no error message"
    for line in reversed(lines):
        match = _LOG_MESSAGE.search(line)
        if match:
            message = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
            break
    else:
        message = lines[-1].strip()
    for prefix in _NOISE_PREFIXES:
        message = prefix.sub("", message)
    return message


def describe_failure(stderr: bytes | str, *, subject: str) -> str:
    """One line: `subject` (which image, at which registry), what went wrong in plain words, and
    skopeo's own message in parentheses."""
    message = skopeo_error_message(stderr)
    lowered = message.lower()
    for needles, meaning in _PROBLEMS:
        if any(needle.lower() in lowered for needle in needles):
            break
    else:
        meaning = "failed"
    return f"{subject}: {meaning} ({message})"


def at_registry(reference: str) -> str:
    """`<reference> at registry <host>`, naming Docker Hub when the reference has no host."""
    return f"{reference} at registry {registry_host(reference)}"


def reporter_script() -> str:
    """A shell script that prints `$DOCKER_MIRROR_MESSAGE` (if any) to stderr and exits with
    `$DOCKER_MIRROR_EXIT_CODE`: how a copy that already ran reports its outcome to `publish`."""
    return (
        'if [ -n "$DOCKER_MIRROR_MESSAGE" ]; then printf "%s\\n" "$DOCKER_MIRROR_MESSAGE" >&2; fi; '
        'exit "$DOCKER_MIRROR_EXIT_CODE"'
    )


@dataclass(frozen=True)
class CopyOutcome:
    """What a guarded `skopeo copy` did for one destination reference."""

    destination: str
    exit_code: int
    # One line naming image, registry and reason, when it failed.
    error: str | None = None
    # The destination turned out to serve the source digest already (nothing was written).
    up_to_date: bool = False


def copy_outcome(source: str, destination: str, result: FallibleProcessResult) -> CopyOutcome:
    """The outcome of `Skopeo.copy` from `source` to `destination`, from its process result."""
    if result.exit_code == 0:
        return CopyOutcome(destination, 0, up_to_date=UP_TO_DATE_OUTPUT in result.stdout)
    subject = f"copy from {source} to {at_registry(destination)}"
    if result.exit_code == DESTINATION_CHANGED_EXIT_CODE:
        message = skopeo_error_message(result.stderr).replace("docker-mirror: ", "", 1)
        return CopyOutcome(destination, result.exit_code, f"{subject}: {message}")
    return CopyOutcome(
        destination, result.exit_code, describe_failure(result.stderr, subject=subject)
    )


@rule(desc="Finding the `skopeo` binary", level=LogLevel.DEBUG)
async def find_skopeo(
    subsystem: DockerMirrorSubsystem,
    env_aware: DockerMirrorSubsystem.EnvironmentAware,
    bash: BashBinary,
) -> Skopeo:
    request = BinaryPathRequest(
        binary_name="skopeo",
        search_path=env_aware.executable_search_path,
        test=BinaryPathTest(args=["--version"]),
    )
    paths, env = await concurrently(
        binary_paths(request), environment_vars(EnvironmentVarsRequest(env_aware.env_vars))
    )
    if not paths.first_path:
        raise BinaryNotFoundError.from_request(
            request,
            rationale='mirror images with `docker_mirror_images(method="copy")`',
            alternative_solution=INSTALL_HINT,
        )
    return Skopeo(
        path=paths.first_path.path,
        bash=bash.path,
        env=env,
        insecure_registries=tuple(subsystem.insecure_registries),
    )


def rules():
    return collect_rules()
