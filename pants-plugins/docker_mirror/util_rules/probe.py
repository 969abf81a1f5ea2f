"""Asking registries what they serve, with the registry probe (`docker_mirror.probe`).

`method="copy"` needs, for each image, the digest its source serves and the digest each
destination tag serves. The probe reads all of a generator's references in one process, a few at
a time per registry over reused connections, with one `HEAD` per reference: a registry answers
a `HEAD` with the manifest's digest (`Docker-Content-Digest`), and Docker Hub counts no pull for
it. It `GET`s a manifest only where the body is needed (a `--platform=` line picks its platform
from the image index) or the registry sends no digest.

The JSON the probe reads and writes is built and read here (pure functions); `run_probe` is the
only rule, and the only place that runs the probe.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from docker_mirror.compat import created_digest, digest_contents, process_result, venv_pex_process
from docker_mirror.subsystems.docker_mirror import DockerMirrorSubsystem
from docker_mirror.subsystems.registry_probe import RegistryProbe
from docker_mirror.util_rules.registry_client import RegistryClientEnvironment
from pants.backend.python.util_rules.pex import VenvPexProcess
from pants.engine.fs import CreateDigest, FileContent
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

PROBE_VERSION = 1
REQUEST_FILE = "probe-request.json"
RESULT_FILE = "probe-result.json"

OK = "ok"
NOT_FOUND = "not_found"

# What a probe outcome means, in the words the summary uses for skopeo's failures too.
OUTCOME_MEANINGS = {
    NOT_FOUND: "not found",
    "unauthorized": (
        "access denied (credentials come from the Docker config or the containers auth file)"
    ),
    "denied": "access denied (credentials come from the Docker config or the containers auth file)",
    "rate_limited": "rate limited",
    "unreachable": "registry unreachable",
    # The probe's own message says how to trust the registry's CA, or to list it as insecure.
    "tls": "TLS failed",
    "error": "failed",
}


@dataclass(frozen=True)
class ProbedManifest:
    """What a registry served for one reference, as the probe saw it."""

    reference: str
    outcome: str
    digest: str | None = None
    media_type: str | None = None
    # The raw manifest, when it was fetched (`need_body`, or no digest header).
    body: bytes | None = None
    message: str | None = None

    @property
    def found(self) -> bool:
        return self.outcome == OK and self.digest is not None

    def describe_failure(self, subject: str) -> str:
        """One line: `subject`, what went wrong in plain words, and the probe's own message."""
        meaning = OUTCOME_MEANINGS.get(self.outcome, "failed")
        return f"{subject}: {meaning} ({self.message or self.outcome})"


@dataclass(frozen=True)
class ProbeSettings:
    insecure_registries: tuple[str, ...]
    max_concurrency_per_registry: int
    attempts: int
    timeout_seconds: int
    max_retry_after_seconds: int

    @classmethod
    def from_options(cls, subsystem: DockerMirrorSubsystem) -> ProbeSettings:
        return cls(
            insecure_registries=tuple(subsystem.insecure_registries),
            max_concurrency_per_registry=subsystem.registry_concurrency,
            attempts=subsystem.retries + 1,
            timeout_seconds=subsystem.registry_timeout,
            max_retry_after_seconds=subsystem.max_retry_wait,
        )


def probe_request_json(
    references: Mapping[str, bool], settings: ProbeSettings
) -> bytes:
    """The probe's request for `references` (reference -> whether its body is needed)."""
    document = {
        "version": PROBE_VERSION,
        "requests": [
            {"reference": reference, "need_body": need_body}
            for reference, need_body in sorted(references.items())
        ],
        "insecure_registries": list(settings.insecure_registries),
        "max_concurrency_per_registry": settings.max_concurrency_per_registry,
        "attempts": settings.attempts,
        "timeout_seconds": settings.timeout_seconds,
        "max_retry_after_seconds": settings.max_retry_after_seconds,
    }
    return json.dumps(document, indent=1).encode()


def parse_probe_result(content: bytes, references: Iterable[str]) -> dict[str, ProbedManifest]:
    """What the probe found for each of `references`; a reference it did not answer for is an
    `error`, so that a broken probe fails images instead of passing them as up to date."""
    try:
        document = json.loads(content)
        results = document["results"]
    except (ValueError, KeyError, TypeError) as e:
        document, results = {}, []
        problem = f"the registry probe wrote no readable result ({e})"
    else:
        problem = "the registry probe gave no result for it"
    found = {}
    for result in results if isinstance(results, list) else ():
        if not isinstance(result, dict) or not isinstance(result.get("reference"), str):
            continue
        body = result.get("body")
        found[result["reference"]] = ProbedManifest(
            reference=result["reference"],
            outcome=str(result.get("outcome") or "error"),
            digest=result.get("digest") if isinstance(result.get("digest"), str) else None,
            media_type=(
                result.get("media_type") if isinstance(result.get("media_type"), str) else None
            ),
            body=base64.b64decode(body) if isinstance(body, str) else None,
            message=result.get("message") if isinstance(result.get("message"), str) else None,
        )
    return {
        reference: found.get(reference) or ProbedManifest(reference, "error", message=problem)
        for reference in references
    }


def failed_probe(references: Iterable[str], stderr: bytes, exit_code: int) -> dict[str, ProbedManifest]:
    """Every reference of a probe process that failed, as failed: its last line of stderr."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    message = f"the registry probe failed: {lines[-1] if lines else f'exit code {exit_code}'}"
    return {reference: ProbedManifest(reference, "error", message=message) for reference in references}


def merge_needs(needs: Iterable[tuple[str, bool]]) -> dict[str, bool]:
    """One entry per reference; its body is needed if any asker needs it."""
    merged: dict[str, bool] = {}
    for reference, need_body in needs:
        merged[reference] = merged.get(reference, False) or need_body
    return merged


# ---------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class ProbeRequest:
    """References to read (reference -> whether its body is needed), and who asks."""

    references: FrozenDict[str, bool]
    description: str


@dataclass(frozen=True)
class ProbedManifests:
    by_reference: FrozenDict[str, ProbedManifest]
    # The Pants run that asked the registries (the probe runs afresh in every run): what is
    # decided from these reads belongs to that run (see `Skopeo.copy`).
    run_id: int = 0

    def get(self, reference: str) -> ProbedManifest:
        return self.by_reference.get(reference) or ProbedManifest(
            reference, "error", message="it was not read"
        )

    def served_digest(self, reference: str) -> str | None:
        """The digest `reference` serves now; None if it serves nothing, or could not be read
        (then a copy is attempted, and reports the real problem)."""
        probed = self.get(reference)
        return probed.digest if probed.found else None


@rule(desc="Reading registries", level=LogLevel.DEBUG)
async def run_probe(
    request: ProbeRequest,
    probe: RegistryProbe,
    subsystem: DockerMirrorSubsystem,
    environment: RegistryClientEnvironment,
) -> ProbedManifests:
    if not request.references:
        return ProbedManifests(FrozenDict())
    settings = ProbeSettings.from_options(subsystem)
    input_digest = await created_digest(
        CreateDigest(
            [FileContent(REQUEST_FILE, probe_request_json(request.references, settings))]
        )
    )
    process = await venv_pex_process(
        VenvPexProcess(
            probe.pex,
            argv=(REQUEST_FILE, RESULT_FILE),
            description=(
                f"Reading {len(request.references)} image references for {request.description}"
            ),
            input_digest=input_digest,
            output_files=(RESULT_FILE,),
            extra_env=environment.env,
            level=LogLevel.DEBUG,
            # Registries change between runs: ask them again in every run, once per run.
            cache_scope=ProcessCacheScope.PER_SESSION,
        )
    )
    result = await process_result(process)
    run_id = result.metadata.source_run_id
    if result.exit_code != 0:
        return ProbedManifests(
            FrozenDict(failed_probe(request.references, result.stderr, result.exit_code)), run_id
        )
    contents = await digest_contents(result.output_digest)
    content = next((file.content for file in contents if file.path == RESULT_FILE), b"")
    return ProbedManifests(FrozenDict(parse_probe_result(content, request.references)), run_id)


def rules():
    return collect_rules()
