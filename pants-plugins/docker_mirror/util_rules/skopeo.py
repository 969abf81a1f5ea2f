"""`skopeo`, which copies copy-mode images: finding it, its command lines (credentials never in
argv), and what its errors mean."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence


from docker_mirror.compat import binary_paths
from docker_mirror.oci.reference import registry_host, split_platform
from docker_mirror.subsystems.docker_mirror import DockerMirrorSubsystem
from docker_mirror.oci.manifests import ManifestError, parse_manifest
from docker_mirror.oci.registry_access import tls_verify
from docker_mirror.util_rules.registry_client import RegistryClientEnvironment
from docker_mirror.util_rules.registry_failures import access_denied, named_registry
from pants.core.util_rules.system_binaries import (
    BashBinary,
    BinaryNotFoundError,
    BinaryPathRequest,
    BinaryPathTest,
)
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


def timeout_flag(seconds: int) -> tuple[str, ...]:
    """skopeo's own time limit for the whole command (0: none)."""
    return (f"--command-timeout={seconds}s",) if seconds > 0 else ()


def inspect_argv(
    skopeo: str, reference: str, *, verify_tls: bool, timeout: int = 0
) -> tuple[str, ...]:
    """Fetches the raw manifest of `reference` and nothing else: no config, no layer."""
    return (
        skopeo,
        *timeout_flag(timeout),
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
    retries: int = 0,
    timeout: int = 0,
) -> tuple[str, ...]:
    """Copies `source` to `destination` registry to registry, keeping every digest.

    Without `platform`: `--all`, every platform of an index and the index itself. With it: only
    that platform's manifest (`--override-os/--override-arch/--override-variant`, no `--all`).
    `--preserve-digests` makes skopeo fail rather than write anything under another digest.
    `timeout` bounds the whole copy (a registry that stalls mid-transfer fails it).
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
        *timeout_flag(timeout),
        "copy",
        *selection,
        "--preserve-digests",
        *((f"--retry-times={retries}",) if retries else ()),
        *tls_flag("src-tls-verify", verify_source_tls),
        *tls_flag("dest-tls-verify", verify_destination_tls),
        docker_transport(source),
        docker_transport(destination),
    )


# The copy runs as this script, so that it only ever writes what was decided: it re-reads the
# destination first, does nothing if it already serves the wanted digest, and refuses to write if
# the destination changed since it was checked, by another writer or another run (with pantsd,
# Pants may re-run a previous run's rules while it checks which of their results still hold; see
# `copy_to_repository`). After a copy it reads back what the destination serves,
# so the summary tells what was written (its platforms) without a request to the source.
#
# skopeo's `--retry-times` retries what it recognises as transient (a connection reset while
# reading, a refused connection, 429), but not a connection cut while it writes a blob (`use of
# closed network connection`, `connection reset by peer`), nor a 5xx answer: those the script
# retries itself, up to `retries` times with backoff (1 s, 2 s, 4 s...), checking the
# destination again before each attempt. Bash builtins only (`read -t` waits), but `rm`.
GUARDED_COPY_SCRIPT = r"""want=$1 seen=$2 retries=$3 count=$4; shift 4
inspect=("${@:1:$count}"); shift "$count"
attempt=0
while :; do
  if "${inspect[@]}" >destination-manifest 2>/dev/null; then
    current=$("${inspect[0]}" manifest-digest destination-manifest) || current=unreadable
  else
    current=none
  fi
  if [ "$current" = "$want" ]; then
    # After a failed attempt, its copy landed after all.
    [ "$attempt" -gt 0 ] || echo "docker-mirror: up to date"
    exit 0
  fi
  if [ "$current" != "$seen" ]; then
    echo "docker-mirror: the destination changed since it was checked" \
      "(it served $seen, now $current); not overwriting it" >&2
    exit 75
  fi
  "$@" 2>copy-stderr && break
  code=$?
  error=$(<copy-stderr)
  attempt=$((attempt + 1))
  case "$error" in
    *"use of closed network connection"* | *"connection reset by peer"* | \
      *"unexpected HTTP status: 5"* | *"from registry 5"*) ;;
    *) attempt=$((retries + 1)) ;;
  esac
  if [ "$attempt" -gt "$retries" ]; then
    printf '%s\n' "$error" >&2
    exit "$code"
  fi
  read -rt $((1 << (attempt - 1))) <> <(:) || true
done
"${inspect[@]}" >destination-manifest 2>/dev/null || rm -f destination-manifest
"""
UP_TO_DATE_OUTPUT = b"docker-mirror: up to date"
DESTINATION_MANIFEST = "destination-manifest"
# The Pants run a copy belongs to (see `Skopeo.copy`).
RUN_ID_ENV_VAR = "DOCKER_MIRROR_PANTS_RUN"
DESTINATION_CHANGED_EXIT_CODE = 75
NOTHING = "none"


def guarded_copy_argv(
    bash: str,
    *,
    want: str,
    seen: str | None,
    inspect_destination: tuple[str, ...],
    copy: tuple[str, ...],
    retries: int = 0,
) -> tuple[str, ...]:
    """Runs `copy` unless the destination (read with `inspect_destination`) already serves
    `want`, or no longer serves `seen` (None: nothing), what it served when it was checked;
    retries a copy cut by a transient fault up to `retries` times (see `GUARDED_COPY_SCRIPT`)."""
    return (
        bash,
        "-c",
        GUARDED_COPY_SCRIPT,
        "docker-mirror-copy",
        want,
        seen or NOTHING,
        str(retries),
        str(len(inspect_destination)),
        *inspect_destination,
        *copy,
    )


@dataclass(frozen=True)
class Skopeo:
    """The `skopeo` binary with the environment and TLS settings every invocation shares."""

    path: str
    bash: str
    env: FrozenDict[str, str]
    insecure_registries: tuple[str, ...] = ()
    # Times to retry a transient failure (`--retry-times`, and the guard's own retries).
    retries: int = 0
    # Seconds one guard read of the destination (`read_timeout`) and one copy attempt
    # (`copy_timeout`) may take; 0: no limit.
    read_timeout: int = 0
    copy_timeout: int = 0

    def verifies_tls(self, reference: str) -> bool:
        return tls_verify(registry_host(reference), self.insecure_registries)

    def copy(
        self,
        source: str,
        destination: str,
        *,
        platform: str | None,
        want: str,
        seen: str | None,
        run_id: int,
    ) -> Process:
        """Copies `source` (pinned to the digest `want`) to `destination`, which served `seen`
        when it was checked; see `GUARDED_COPY_SCRIPT`.

        A copy runs once, in the Pants run `run_id` (`RunId`), and never again. With pantsd, the
        next run speculatively re-requests what the previous run depended on while it checks
        what it can reuse (Pants' graph "cleaning"): a copy cached only for its session would
        run again then. Kept in memory for the daemon's life (`PER_RESTART_ALWAYS`), it is not;
        and the run id in its environment makes every later run's copy another process. The id
        must be the engine's, not one derived from what the registries answered: the engine
        reuses a rule's result when its inputs are equal, and a run that reads what an earlier
        run read would reuse that run's copy without copying.
        """
        what = f"the {platform} image" if platform else "all platforms"
        return Process(
            argv=guarded_copy_argv(
                self.bash,
                want=want,
                seen=seen,
                inspect_destination=inspect_argv(
                    self.path,
                    destination,
                    verify_tls=self.verifies_tls(destination),
                    timeout=self.read_timeout,
                ),
                copy=copy_argv(
                    self.path,
                    source,
                    destination,
                    platform=platform,
                    verify_source_tls=self.verifies_tls(source),
                    verify_destination_tls=self.verifies_tls(destination),
                    retries=self.retries,
                    timeout=self.copy_timeout,
                ),
                retries=self.retries,
            ),
            description=f"Copying {source} to {destination} ({what})",
            env=FrozenDict({**self.env, RUN_ID_ENV_VAR: str(run_id)}),
            # What the destination serves after the copy (see `GUARDED_COPY_SCRIPT`).
            output_files=(DESTINATION_MANIFEST,),
            cache_scope=ProcessCacheScope.PER_RESTART_ALWAYS,
        )


# skopeo logs like logrus: time="..." level=fatal msg="...".
_LOG_MESSAGE = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_NOISE_PREFIXES = (
    re.compile(r'^Error parsing image name "[^"]*": '),
    re.compile(r"^initializing source docker://\S+: "),
    re.compile(r"^initializing destination docker://\S+: "),
)

# How to trust a registry's CA: what Docker, skopeo and the registry probe all read.
TRUST_HINT = (
    "trust its CA: put the CA certificate in /etc/docker/certs.d/{registry}/ca.crt (or "
    "/etc/containers/certs.d/{registry}/ca.crt), or add it to the system's CA bundle; or list "
    "the registry in `[docker-mirror].insecure_registries` to skip verification"
)

# (what the message contains, what it means), checked in order. `{registry}` is the registry
# the message names.
_PROBLEMS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("manifest unknown", "name unknown", "not found"), "not found"),
    (
        ("server gave HTTP response to HTTPS client",),
        "the registry speaks plain HTTP; list it in `[docker-mirror].insecure_registries`",
    ),
    (("x509:", "certificate"), "TLS verification of {registry} failed; " + TRUST_HINT),
    (("toomanyrequests", "too many requests"), "rate limited"),
    (
        ("context deadline exceeded",),
        "timed out (`[docker-mirror].copy_timeout` bounds a copy, `registry_timeout` a read)",
    ),
    (
        ("use of closed network connection", "broken pipe", "unexpected EOF"),
        "the connection to the registry was lost",
    ),
    (
        ("unexpected HTTP status: 5", "from registry 5"),
        "the registry answered with a server error",
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
# Where skopeo's messages name the registry: `pinging container registry <host>`, a URL.
_NAMED_REGISTRY = re.compile(
    r"(?:container registry |https?://)([A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9A-Fa-f:.]+\](?::[0-9]+)?)"
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


# A refused request: 401 (no or wrong credentials), or 403 (`denied`).
_UNAUTHORIZED = ("unauthorized", "authentication required")
_DENIED = ("denied",)


def describe_failure(
    stderr: bytes | str, *, subject: str, registries: Sequence[str] = ()
) -> str:
    """One line: `subject` (which image, at which registry), what went wrong in plain words, and
    skopeo's own message in parentheses; for a refusal, the registry (of `registries`, the one
    the message names) and how to log in, without the request that was refused."""
    message = skopeo_error_message(stderr)
    lowered = message.lower()
    if any(needle in lowered for needle in (*_UNAUTHORIZED, *_DENIED)):
        kind = "unauthorized" if any(n in lowered for n in _UNAUTHORIZED) else "denied"
        named = _NAMED_REGISTRY.search(message)
        registry = (
            named_registry(message, registries)
            or (named.group(1) if named else None)
            or (registries[0] if registries else "<host:port>")
        )
        return f"{subject}: {access_denied(kind, registry)}"
    for needles, meaning in _PROBLEMS:
        if any(needle.lower() in lowered for needle in needles):
            break
    else:
        meaning = "failed"
    if "{registry}" in meaning:
        named = _NAMED_REGISTRY.search(message)
        meaning = meaning.replace("{registry}", named.group(1) if named else "<host:port>")
    return f"{subject}: {meaning} ({message})"


def at_registry(reference: str) -> str:
    """`<reference> at registry <host>`, naming Docker Hub when the reference has no host."""
    return f"{reference} at registry {registry_host(reference)}"


@dataclass(frozen=True)
class CopyOutcome:
    """What a guarded `skopeo copy` did for one destination reference."""

    destination: str
    exit_code: int
    # One line naming image, registry and reason, when it failed.
    error: str | None = None
    # The destination turned out to serve the source digest already (nothing was written).
    up_to_date: bool = False
    # The platforms the destination serves after the copy, when it serves an image index.
    platforms: tuple[str, ...] | None = None


def copy_outcome(
    source: str,
    destination: str,
    result: FallibleProcessResult,
    destination_manifest: bytes | None = None,
) -> CopyOutcome:
    """The outcome of `Skopeo.copy` from `source` to `destination`, from its process result and
    what the destination served after it (`DESTINATION_MANIFEST`)."""
    if result.exit_code == 0:
        platforms = None
        if destination_manifest:
            try:
                platforms = parse_manifest(destination_manifest).platforms
            except ManifestError:
                platforms = None
        return CopyOutcome(
            destination,
            0,
            up_to_date=UP_TO_DATE_OUTPUT in result.stdout,
            platforms=platforms,
        )
    subject = f"copy from {source} to {at_registry(destination)}"
    if result.exit_code == DESTINATION_CHANGED_EXIT_CODE:
        message = skopeo_error_message(result.stderr).replace("docker-mirror: ", "", 1)
        return CopyOutcome(destination, result.exit_code, f"{subject}: {message}")
    return CopyOutcome(
        destination,
        result.exit_code,
        describe_failure(
            result.stderr,
            subject=subject,
            registries=(registry_host(destination), registry_host(source)),
        ),
    )


@rule(desc="Finding the `skopeo` binary", level=LogLevel.DEBUG)
async def find_skopeo(
    subsystem: DockerMirrorSubsystem,
    env_aware: DockerMirrorSubsystem.EnvironmentAware,
    environment: RegistryClientEnvironment,
    bash: BashBinary,
) -> Skopeo:
    request = BinaryPathRequest(
        binary_name="skopeo",
        search_path=env_aware.executable_search_path,
        test=BinaryPathTest(args=["--version"]),
    )
    paths = await binary_paths(request)
    if not paths.first_path:
        raise BinaryNotFoundError.from_request(
            request,
            rationale='mirror images with `docker_mirror_images(method="copy")`',
            alternative_solution=INSTALL_HINT,
        )
    return Skopeo(
        path=paths.first_path.path,
        bash=bash.path,
        env=environment.env,
        insecure_registries=tuple(subsystem.insecure_registries),
        retries=subsystem.retries,
        read_timeout=subsystem.registry_timeout,
        copy_timeout=subsystem.copy_timeout,
    )


def rules():
    return collect_rules()
