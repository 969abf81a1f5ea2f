"""Copying an image to one destination repository with the registry probe, in one process: behind
the `require_signature` gate, what refers to the image first, then the image and its tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from docker_mirror.compat import (
    created_digest,
    digest_contents,
    path_globs_contents,
    process_result,
    venv_pex_process,
)
from docker_mirror.oci.probe_protocol import (
    CopyRequest,
    CopyResult,
    Plan,
    ProbeRequest,
    TagCopy,
    TagOutcome,
    encoded,
)
from docker_mirror.oci.reference import registry_host
from docker_mirror.subsystems.docker_mirror import DockerMirrorSubsystem
from docker_mirror.subsystems.registry_probe import RegistryProbe
from docker_mirror.util_rules.registry_client import RegistryClientEnvironment
from docker_mirror.util_rules.registry_failures import (
    ACCESS_DENIED,
    access_denied,
    at_registry,
    named_registry,
)
from docker_mirror.util_rules.registry_reads import (
    OUTCOME_MEANINGS,
    REQUEST_FILE,
    archive_settings,
    failed_probe_message,
    provenance_settings,
    probe_process,
    probe_settings,
    read_result,
)
from pants.base.build_root import BuildRoot
from pants.engine.fs import CreateDigest, FileContent, GlobMatchErrorBehavior, PathGlobs
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import collect_rules, rule
from pants.util.logging import LogLevel

# The Pants run a copy belongs to (see `copy_image`).
RUN_ID_ENV_VAR = "DOCKER_MIRROR_PANTS_RUN"
# The longest deadline the probe accepts (`parse_request`): `copy_timeout = 0`, no limit, gets it.
LONGEST_DEADLINE = 86400

NO_RESULT = "the registry probe gave no result for it"


@dataclass(frozen=True)
class CopyImageRequest:
    """Copy the image `subject` from the source repository to a destination one (each
    `registry/repository`): first, when `signature_keys` (paths from the build root) are given,
    check that a cosign signature of `subject` verifies against one of them, and copy nothing
    otherwise; then `plan`, what refers to the image that the destination lacks; then, with
    `tags`, the image itself, and each tag that still serves what it served when checked."""

    source_repository: str
    subject: str
    destination_repository: str
    plan: Plan
    # The Pants run that copies (see `copy_image`).
    run_id: int
    signature_keys: tuple[str, ...] = ()
    tags: tuple[TagCopy, ...] = ()
    # The platform `subject` is the manifest of, if any: for the process's description only.
    platform: str | None = None
    # `subject` is the source's index `index_digest` filtered to `platforms` (`narrowed_index`).
    platforms: tuple[str, ...] = ()
    index_digest: str | None = None
    # With `signature_keys`: the repository a verifying signature must have been signed for.
    identity: str | None = None
    # With `plan.attest`: the source reference as written, which the attestation names.
    provenance_source: str | None = None

    def copy_request(self, keys: tuple[tuple[str, bytes], ...]) -> CopyRequest:
        """What the probe is asked, with the keys' (path, PEM) as read."""
        return CopyRequest(
            self.source_repository,
            self.subject,
            self.destination_repository,
            self.plan,
            tuple((name, pem.decode("ascii", errors="replace")) for name, pem in keys),
            self.tags,
            self.platforms,
            self.index_digest,
            self.identity,
            self.provenance_source,
        )

    @property
    def description(self) -> str:
        source = f"{self.source_repository}@{self.subject[:19]}"
        if self.tags:
            tags = ", ".join(tag.tag for tag in self.tags)
            what = f"the {self.platform} image" if self.platform else "all platforms"
            along = "" if self.plan.empty else f", with {self.plan.summary}"
            return f"Copying {source} to {self.destination_repository}:{tags} ({what}{along})"
        if not self.plan.empty:
            return f"Copying {self.plan.summary} of {source} to {self.destination_repository}"
        return f"Checking the signature of {source}"


def copy_deadline(copy_timeout: int) -> float:
    """The probe's deadline for a copy: `[docker-mirror].copy_timeout` (0: none, so the longest)."""
    return float(min(copy_timeout, LONGEST_DEADLINE) if copy_timeout > 0 else LONGEST_DEADLINE)


@dataclass(frozen=True)
class CopyOutcome:
    """What a copy did for one destination reference."""

    destination: str
    # One line naming image, registry and reason, when it failed.
    error: str | None = None
    # The destination turned out to serve the source digest already (nothing was written).
    up_to_date: bool = False
    # The platforms the destination serves after the copy, when it serves an image index.
    platforms: tuple[str, ...] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# What a failed copy's message says, beyond its kind (`OUTCOME_MEANINGS`): checked in order.
_COPY_PROBLEMS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("timed out", "deadline"),
        "timed out (`[docker-mirror].copy_timeout` bounds a copy, `registry_timeout` a read)",
    ),
    (("answered 5",), "the registry answered with a server error"),
    (
        ("connection reset", "closed the connection", "connection broke"),
        "the connection to the registry was lost",
    ),
)


def copy_failure(
    subject: str, message: str, kind: str | None, registries: Sequence[str]
) -> str:
    """One line: `subject` (which image, to which registry), what went wrong in plain words, and
    the probe's own message in parentheses; for a refusal, the registry (of `registries`, the
    one the message names, else the first) and how to log in, without the request refused."""
    if kind in ACCESS_DENIED:
        registry = named_registry(message, registries) or registries[0]
        return f"{subject}: {access_denied(kind, registry)}"
    lowered = message.lower()
    meaning = next(
        (meaning for needles, meaning in _COPY_PROBLEMS if any(n in lowered for n in needles)),
        OUTCOME_MEANINGS.get(kind or "error", "failed"),
    )
    return f"{subject}: {meaning} ({message})"


def tag_copy_outcome(
    source: str, destination: str, outcome: TagOutcome | None, result: CopyResult
) -> CopyOutcome:
    """What the probe's copy (`result`) from `source` (a reference) did for `destination`, the
    reference of one of its tags (`outcome`, None if the result holds none for it)."""
    subject = f"copy from {source} to {at_registry(destination)}"
    if outcome is None:
        problem = result.message if not result.ok and result.message else NO_RESULT
        return CopyOutcome(destination, f"{subject}: {problem}")
    if outcome.outcome in ("copied", "up_to_date"):
        return CopyOutcome(
            destination, up_to_date=outcome.outcome == "up_to_date", platforms=outcome.platforms
        )
    if outcome.outcome == "changed":
        return CopyOutcome(destination, f"{subject}: {outcome.message or 'the destination changed'}")
    registries = (registry_host(destination), registry_host(source))
    if outcome.outcome == "not_attempted":
        # What kept the copy from starting (the gate's refusal and a failed referrers step are
        # reported by the caller, in their own words).
        return CopyOutcome(
            destination,
            copy_failure(subject, result.message or "not attempted", result.error_kind, registries),
        )
    return CopyOutcome(
        destination,
        copy_failure(subject, outcome.message or "failed", outcome.error_kind, registries),
    )


@rule(desc="Copying an image with the registry probe", level=LogLevel.DEBUG)
async def copy_image(
    request: CopyImageRequest,
    probe: RegistryProbe,
    subsystem: DockerMirrorSubsystem,
    environment: RegistryClientEnvironment,
    build_root: BuildRoot,
) -> CopyResult:
    """Runs the probe's copy once, in the Pants run `request.run_id` (`RunId`), and never again.

    With pantsd, the next run speculatively re-requests what the previous run depended on while
    it checks what it can reuse (Pants' graph "cleaning"): a copy cached only for its session
    would run again then. Kept in memory for the daemon's life (`PER_RESTART_ALWAYS`), it is
    not; and the run id in its environment makes every later run's copy another process. The id
    must be the engine's, not one derived from what the registries answered: the engine reuses a
    rule's result when its inputs are equal, and a run that reads what an earlier run read would
    reuse that run's copy without copying.
    """
    keys: tuple[tuple[str, bytes], ...] = ()
    if request.signature_keys:
        contents = await path_globs_contents(
            PathGlobs(
                request.signature_keys,
                glob_match_error_behavior=GlobMatchErrorBehavior.error,
                description_of_origin="the `require_signature` field",
            )
        )
        keys = tuple((file.path, file.content) for file in sorted(contents, key=lambda f: f.path))
    probe_request = ProbeRequest(
        (),
        copy=request.copy_request(keys),
        **{**probe_settings(subsystem), "deadline_seconds": copy_deadline(subsystem.copy_timeout)},
        **archive_settings(subsystem, build_root, [f"{request.source_repository}@{request.subject}"]),
        **provenance_settings(subsystem, build_root),
    )
    input_digest = await created_digest(CreateDigest([FileContent(REQUEST_FILE, encoded(probe_request))]))
    process = await venv_pex_process(
        probe_process(
            probe,
            input_digest,
            description=request.description,
            env={**environment.env, RUN_ID_ENV_VAR: str(request.run_id)},
            cache_scope=ProcessCacheScope.PER_RESTART_ALWAYS,
        )
    )
    result = await process_result(process)
    if result.exit_code != 0:
        return CopyResult("error", failed_probe_message(result.stderr, result.exit_code))
    answer, problem = read_result(await digest_contents(result.output_digest))
    if answer is None:
        return CopyResult("error", problem)
    return answer.copy or CopyResult("error", "the registry probe wrote no readable result (no copy)")


def rules():
    return collect_rules()
