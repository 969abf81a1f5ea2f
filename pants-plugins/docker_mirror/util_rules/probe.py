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
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from docker_mirror.compat import (
    created_digest,
    digest_contents,
    path_globs_contents,
    process_result,
    venv_pex_process,
)
from docker_mirror.oci.reference import registry_host
from docker_mirror.subsystems.docker_mirror import DockerMirrorSubsystem
from docker_mirror.subsystems.registry_probe import RegistryProbe
from docker_mirror.util_rules.referrers import (
    CopiedReferrers,
    CopyReferrersRequest,
    ProbedReferrers,
    ReferrersRead,
    parse_copy_result,
    parse_referrers_results,
)
from docker_mirror.util_rules.registry_client import RegistryClientEnvironment
from docker_mirror.util_rules.registry_failures import ACCESS_DENIED, access_denied
from docker_mirror.util_rules.skopeo import RUN_ID_ENV_VAR
from pants.backend.python.util_rules.pex import VenvPexProcess
from pants.engine.fs import CreateDigest, Digest, DigestContents, FileContent, GlobMatchErrorBehavior, PathGlobs
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

PROBE_VERSION = 1
REQUEST_FILE = "probe-request.json"
RESULT_FILE = "probe-result.json"

OK = "ok"
NOT_FOUND = "not_found"

# What a probe outcome means, in the words the summary uses for skopeo's failures too (a 401 or
# 403 is `registry_failures.access_denied`).
OUTCOME_MEANINGS = {
    NOT_FOUND: "not found",
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
        """One line: `subject`, what went wrong in plain words, and the probe's own message; for
        a refusal, the registry and how to log in instead."""
        if self.outcome in ACCESS_DENIED:
            why = _WHY_UNAUTHORIZED.search(self.message or "")
            registry = registry_host(self.reference)
            return f"{subject}: {access_denied(self.outcome, registry, why and why.group(1))}"
        meaning = OUTCOME_MEANINGS.get(self.outcome, "failed")
        return f"{subject}: {meaning} ({self.message or self.outcome})"


# What the probe says of a 401 beyond its status: no credentials found, or whose were refused.
_WHY_UNAUTHORIZED = re.compile(
    r": (no credentials for \S+ in the Docker config or containers auth files|"
    r"it refused the credentials from .+|it redirected to .+)$"
)


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

    def to_json(self) -> dict[str, object]:
        """The settings every request file of the probe carries."""
        return {
            "insecure_registries": list(self.insecure_registries),
            "max_concurrency_per_registry": self.max_concurrency_per_registry,
            "attempts": self.attempts,
            "timeout_seconds": self.timeout_seconds,
            "max_retry_after_seconds": self.max_retry_after_seconds,
        }


def probe_request_json(
    references: Mapping[str, bool],
    settings: ProbeSettings,
    referrers: Sequence[ReferrersRead] = (),
) -> bytes:
    """The probe's request for `references` (reference -> whether its body is needed) and for
    what refers to the digests of `referrers`."""
    document = {
        "version": PROBE_VERSION,
        "requests": [
            {"reference": reference, "need_body": need_body}
            for reference, need_body in sorted(references.items())
        ],
        **({"referrers": [read.to_json() for read in referrers]} if referrers else {}),
        **settings.to_json(),
    }
    return json.dumps(document, indent=1).encode()


def copy_request_json(
    request: CopyReferrersRequest, keys: Sequence[tuple[str, bytes]], settings: Mapping[str, Any]
) -> bytes:
    document = {
        "version": PROBE_VERSION,
        **settings,
        "copy": {
            "source": request.source_repository,
            "subject": request.subject,
            "destination": request.destination_repository,
            **request.plan.to_json(),
            "require_signature": [
                {"name": name, "pem": pem.decode("ascii", errors="replace")} for name, pem in keys
            ] or None,
        },
    }
    return json.dumps(document, indent=1).encode()


def decode_probe_result(content: bytes) -> tuple[dict[str, Any], str]:
    """The probe's result document, and what to say of a reference it holds no result for."""
    try:
        document = json.loads(content)
        if not isinstance(document, dict) or not isinstance(document["results"], list):
            raise TypeError("no list of results")
    except (ValueError, KeyError, TypeError) as e:
        return {}, f"the registry probe wrote no readable result ({e})"
    return document, "the registry probe gave no result for it"


def manifest_results(
    document: Mapping[str, Any], problem: str, references: Iterable[str]
) -> dict[str, ProbedManifest]:
    """What the probe found for each of `references`; a reference it did not answer for is an
    `error` (`problem`), so that a broken probe fails images instead of passing them as up to
    date."""
    found = {}
    for result in document.get("results") or ():
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


def parse_probe_result(content: bytes, references: Iterable[str]) -> dict[str, ProbedManifest]:
    return manifest_results(*decode_probe_result(content), references)


def failed_probe_message(stderr: bytes, exit_code: int) -> str:
    """A probe process that failed, in one line: its last line of stderr."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    return f"the registry probe failed: {lines[-1] if lines else f'exit code {exit_code}'}"


def failed_probe(references: Iterable[str], stderr: bytes, exit_code: int) -> dict[str, ProbedManifest]:
    """Every reference of a probe process that failed, as failed."""
    message = failed_probe_message(stderr, exit_code)
    return {reference: ProbedManifest(reference, "error", message=message) for reference in references}


def merge_needs(needs: Iterable[tuple[str, bool]]) -> dict[str, bool]:
    """One entry per reference; its body is needed if any asker needs it."""
    merged: dict[str, bool] = {}
    for reference, need_body in needs:
        merged[reference] = merged.get(reference, False) or need_body
    return merged


def probe_process(
    probe: RegistryProbe,
    input_digest: Digest,
    *,
    description: str,
    env: Mapping[str, str],
    cache_scope: ProcessCacheScope,
) -> VenvPexProcess:
    """The probe, reading `REQUEST_FILE` from `input_digest` and writing `RESULT_FILE`."""
    return VenvPexProcess(
        probe.pex,
        argv=(REQUEST_FILE, RESULT_FILE),
        description=description,
        input_digest=input_digest,
        output_files=(RESULT_FILE,),
        extra_env=FrozenDict(env),
        level=LogLevel.DEBUG,
        cache_scope=cache_scope,
    )


def result_file(contents: DigestContents) -> bytes:
    return next((file.content for file in contents if file.path == RESULT_FILE), b"")


# ---------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class ProbeRequest:
    """References to read (reference -> whether its body is needed), and who asks."""

    references: FrozenDict[str, bool]
    description: str
    referrers: tuple[ReferrersRead, ...] = ()


@dataclass(frozen=True)
class ProbedManifests:
    by_reference: FrozenDict[str, ProbedManifest]
    # What refers to each source digest asked for, by (reference, platform).
    referrers: FrozenDict[tuple[str, str | None], ProbedReferrers] = FrozenDict()

    def referrers_of(self, reference: str, platform: str | None) -> ProbedReferrers:
        return self.referrers.get((reference, platform)) or ProbedReferrers(
            reference, platform, error="they were not read"
        )

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
    if not request.references and not request.referrers:
        return ProbedManifests(FrozenDict())
    settings = ProbeSettings.from_options(subsystem)
    input_digest = await created_digest(
        CreateDigest(
            [
                FileContent(
                    REQUEST_FILE,
                    probe_request_json(request.references, settings, request.referrers),
                )
            ]
        )
    )
    process = await venv_pex_process(
        probe_process(
            probe,
            input_digest,
            description=(
                f"Reading {len(request.references)} image references for {request.description}"
            ),
            env=environment.env,
            # Registries change between runs: ask them again in every run, once per run.
            cache_scope=ProcessCacheScope.PER_SESSION,
        )
    )
    result = await process_result(process)
    if result.exit_code != 0:
        document: dict[str, Any] = {}
        problem = failed_probe_message(result.stderr, result.exit_code)
    else:
        contents = await digest_contents(result.output_digest)
        document, problem = decode_probe_result(result_file(contents))
    return ProbedManifests(
        FrozenDict(manifest_results(document, problem, request.references)),
        FrozenDict(parse_referrers_results(document.get("referrers"), request.referrers, problem)),
    )


@rule(desc="Copying what refers to an image", level=LogLevel.DEBUG)
async def copy_referrers(
    request: CopyReferrersRequest,
    probe: RegistryProbe,
    subsystem: DockerMirrorSubsystem,
    environment: RegistryClientEnvironment,
) -> CopiedReferrers:
    keys: list[tuple[str, bytes]] = []
    if request.signature_keys:
        contents = await path_globs_contents(
            PathGlobs(
                request.signature_keys,
                glob_match_error_behavior=GlobMatchErrorBehavior.error,
                description_of_origin="the `require_signature` field",
            )
        )
        keys = [(file.path, file.content) for file in sorted(contents, key=lambda f: f.path)]
    settings = ProbeSettings.from_options(subsystem).to_json()
    input_digest = await created_digest(
        CreateDigest([FileContent(REQUEST_FILE, copy_request_json(request, keys, settings))])
    )
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
        return CopiedReferrers("error", failed_probe_message(result.stderr, result.exit_code))
    contents = await digest_contents(result.output_digest)
    return parse_copy_result(result_file(contents))


def rules():
    return collect_rules()
