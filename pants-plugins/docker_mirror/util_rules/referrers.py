"""Copying what refers to a mirrored image with the registry probe, behind the `require_signature`
gate, before `skopeo` copies the image."""

from __future__ import annotations

from dataclasses import dataclass

from docker_mirror.compat import (
    created_digest,
    digest_contents,
    path_globs_contents,
    process_result,
    venv_pex_process,
)
from docker_mirror.oci.probe_protocol import CopyRequest, CopyResult, Plan, ProbeRequest, encoded
from docker_mirror.subsystems.docker_mirror import DockerMirrorSubsystem
from docker_mirror.subsystems.registry_probe import RegistryProbe
from docker_mirror.util_rules.registry_client import RegistryClientEnvironment
from docker_mirror.util_rules.registry_reads import (
    REQUEST_FILE,
    failed_probe_message,
    probe_process,
    probe_settings,
    read_result,
)
from docker_mirror.util_rules.skopeo import RUN_ID_ENV_VAR
from pants.engine.fs import CreateDigest, FileContent, GlobMatchErrorBehavior, PathGlobs
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import collect_rules, rule
from pants.util.logging import LogLevel


@dataclass(frozen=True)
class CopyReferrersRequest:
    """Copy `plan` from the source repository (`registry/repository`) to a destination one, for
    the image `subject`; first, when `signature_keys` (paths from the build root) are given,
    check that a cosign signature of `subject` verifies against one of them, and copy nothing
    otherwise."""

    source_repository: str
    subject: str
    destination_repository: str
    plan: Plan
    # The Pants run that copies (see `Skopeo.copy`).
    run_id: int
    signature_keys: tuple[str, ...] = ()

    def copy_request(self, keys: tuple[tuple[str, bytes], ...]) -> CopyRequest:
        """What the probe is asked, with the keys' (path, PEM) as read."""
        return CopyRequest(
            self.source_repository,
            self.subject,
            self.destination_repository,
            self.plan,
            tuple((name, pem.decode("ascii", errors="replace")) for name, pem in keys),
        )


@rule(desc="Copying what refers to an image", level=LogLevel.DEBUG)
async def copy_referrers(
    request: CopyReferrersRequest,
    probe: RegistryProbe,
    subsystem: DockerMirrorSubsystem,
    environment: RegistryClientEnvironment,
) -> CopyResult:
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
    probe_request = ProbeRequest((), copy=request.copy_request(keys), **probe_settings(subsystem))
    input_digest = await created_digest(CreateDigest([FileContent(REQUEST_FILE, encoded(probe_request))]))
    source = f"{request.source_repository}@{request.subject[:19]}"
    process = await venv_pex_process(
        probe_process(
            probe,
            input_digest,
            description=(
                f"Copying {request.plan.summary} of {source} to {request.destination_repository}"
                if not request.plan.empty
                else f"Checking the signature of {source}"
            ),
            env={**environment.env, RUN_ID_ENV_VAR: str(request.run_id)},
            # Like a copy by skopeo: once, in the run that copies (see `Skopeo.copy`).
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
