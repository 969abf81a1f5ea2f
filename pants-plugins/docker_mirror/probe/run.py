"""A probe run: every requested reference, concurrently, one session per registry."""

from __future__ import annotations

import asyncio
import os
from typing import Awaitable, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar

from docker_mirror.probe import mirror_referrers
from docker_mirror.probe.access import Routes
from docker_mirror.probe.credentials import CredentialStore
from docker_mirror.probe.distribution import Distribution
from docker_mirror.probe.manifests import probe_manifest
from docker_mirror.probe.mirror_referrers import Location
from docker_mirror.oci.probe_protocol import (
    CopyRequest,
    CopyResult,
    ProbeRequest,
    ProbeResult,
    ManifestResult,
    ReferrersRead,
    ReferrersResult,
)
from docker_mirror.probe.reference import InvalidReference, Reference
from docker_mirror.probe.referrers import ReferrersError
from docker_mirror.probe.registry import RegistryError, RegistrySession
from docker_mirror.probe.signatures import InvalidKey, load_public_key
from docker_mirror.oci.manifests import ManifestError, parse_manifest, select_platform
from docker_mirror.probe.retry import RetryPolicy
from docker_mirror.probe.secrets import SECRETS, Secrets, one_line
from docker_mirror.probe.transport import HttpClient


async def run_probe(
    request: ProbeRequest,
    *,
    env: Optional[Mapping[str, str]] = None,
    secrets: Secrets = SECRETS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    credentials: Optional[CredentialStore] = None,
) -> ProbeResult:
    env = dict(os.environ if env is None else env)
    store = credentials or CredentialStore(env, timeout=request.timeout_seconds, secrets=secrets)
    policy = RetryPolicy(
        attempts=request.attempts, max_retry_after_seconds=request.max_retry_after_seconds
    )
    routes = Routes(env, request.insecure_registries, secrets=secrets)
    http = HttpClient(routes, timeout=request.timeout_seconds)
    sessions: Dict[str, RegistrySession] = {}

    def session_for(reference: Reference) -> RegistrySession:
        # Docker Hub's names (`docker.io`, `index.docker.io`) are one registry.
        key = "docker.io" if reference.is_docker_hub else reference.registry.lower()
        if key not in sessions:
            sessions[key] = RegistrySession(
                "docker.io" if reference.is_docker_hub else reference.registry,
                reference.endpoint,
                http=http,
                credentials=store,
                policy=policy,
                max_concurrency=request.max_concurrency_per_registry,
                timeout=request.timeout_seconds,
                secrets=secrets,
                sleep=sleep,
            )
        return sessions[key]

    distributions: Dict[str, Distribution] = {}

    def location(reference: Reference) -> Location:
        session = session_for(reference)
        if session.registry not in distributions:
            distributions[session.registry] = Distribution(session)
        return Location(distributions[session.registry], reference.remote_name)

    # The same reference asked twice is probed once.
    jobs: Dict[Tuple[str, bool], "asyncio.Future[ManifestResult]"] = {}
    order: List[Tuple[str, bool]] = []
    early: Dict[Tuple[str, bool], ManifestResult] = {}
    registry_of: Dict[Tuple[str, bool], str] = {}

    def manifest_job(text: str, need_body: bool) -> "Optional[asyncio.Future[ManifestResult]]":
        key = (text, need_body)
        if key in jobs or key in early:
            return jobs.get(key)
        try:
            reference = Reference.parse(text)
        except InvalidReference as e:
            early[key] = ManifestResult(text, "error", message=one_line(f"{e}: {text}", 200))
            return None
        session = session_for(reference)
        registry_of[key] = session.registry
        jobs[key] = asyncio.ensure_future(probe_manifest(session, reference, need_body))
        return jobs[key]

    for entry in request.requests:
        order.append((entry.reference, entry.need_body))
        manifest_job(entry.reference, entry.need_body)

    async def referrers_of(read: ReferrersRead) -> ReferrersResult:
        try:
            reference = Reference.parse(read.reference)
            subject = reference.digest if read.platform is None else None
            if subject is None:
                job = manifest_job(read.reference, read.platform is not None)
                source = await job if job is not None else early[(read.reference, read.platform is not None)]
                subject = _subject(source, read.platform)
            destinations = [location(Reference.parse(d)) for d in read.destinations]
            found = await mirror_referrers.find(location(reference), subject, destinations)
        except (RegistryError, ReferrersError, InvalidReference, ManifestError, _Unresolved) as e:
            return ReferrersResult(
                read.reference, read.platform, error=secrets.clean(str(e)), error_kind=_kind(e)
            )
        return ReferrersResult(
            read.reference, read.platform, subject, tuple(sorted(found.counts().items())),
            tuple(zip(read.destinations, found.plans)),
        )

    referrers = [asyncio.ensure_future(referrers_of(read)) for read in request.referrers]
    copying = asyncio.ensure_future(_copy(request.copy, location, secrets)) if request.copy else None
    everything: "List[asyncio.Future[object]]" = [*jobs.values(), *referrers, *([copying] if copying else [])]  # type: ignore[list-item]
    try:
        if everything:
            await asyncio.wait(everything, timeout=request.deadline_seconds)
        finished: Dict[Tuple[str, bool], ManifestResult] = dict(early)
        for key, job in jobs.items():
            if job.done() and not job.cancelled():
                error = job.exception()
                # A failure nobody foresaw fails this reference alone; the others go on.
                finished[key] = job.result() if error is None else ManifestResult(
                    key[0], "error", message=secrets.clean(
                        f"{registry_of[key]}: internal error: {type(error).__name__}: {error}"
                    ),
                )
            else:
                job.cancel()
                finished[key] = ManifestResult(
                    key[0],
                    "unreachable",
                    message=f"no answer from {registry_of[key]} within the probe's deadline of "
                    f"{request.deadline_seconds:g} s",
                )
        late = f"no answer within the probe's deadline of {request.deadline_seconds:g} s"
        referrer_results = []
        for read, referrers_job in zip(request.referrers, referrers):
            found = _outcome(referrers_job)
            referrer_results.append(found or ReferrersResult(
                read.reference, read.platform, error=_failure(referrers_job, late, secrets)
            ))  # fmt: skip
        copied = None
        if copying is not None:
            copied = _outcome(copying) or CopyResult("error", _failure(copying, late, secrets))
    finally:
        pending = [unfinished for unfinished in everything if not unfinished.done()]
        for unfinished in pending:
            unfinished.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        await http.aclose()

    return ProbeResult(
        results=[_with_reference(finished[key], key[0]) for key in order],
        requests_sent={s.registry: s.counts for s in sessions.values()},
        referrers=referrer_results,
        copy=copied,
    )


class _Unresolved(Exception):
    """The image whose referrers were asked for could not be resolved (its own result says why)."""


def _subject(source: ManifestResult, platform: Optional[str]) -> str:
    """The digest an image's referrers refer to: the manifest read, or with `platform`, that
    platform's manifest in the index read."""
    if source.outcome != "ok" or source.digest is None:
        raise _Unresolved(f"the image could not be read: {source.message or source.outcome}")
    if platform is None:
        return source.digest
    if source.body is None:
        raise _Unresolved("the registry sent no image index")
    manifest = parse_manifest(source.body)
    return select_platform(manifest, platform).digest if manifest.is_index else manifest.digest


T = TypeVar("T")


def _outcome(job: "asyncio.Future[T]") -> Optional[T]:
    """A job's result; None if it raised what nobody foresaw, or ran out of time."""
    if job.done() and not job.cancelled() and job.exception() is None:
        return job.result()
    return None


def _failure(job: "asyncio.Future[T]", late: str, secrets: Secrets) -> str:
    """Why a job has no result, in one line."""
    if not job.done() or job.cancelled():
        return late
    error = job.exception()
    return secrets.clean(f"internal error: {type(error).__name__}: {error}")


async def _copy(request: CopyRequest, location: Callable[[Reference], Location], secrets: Secrets) -> CopyResult:
    try:
        keys = [load_public_key(name, pem.encode()) for name, pem in request.keys]
        source = location(Reference.parse(f"{request.source}@{request.subject}"))
        destination = location(Reference.parse(request.destination))
        return await mirror_referrers.copy(source, destination, request.subject, request.plan, keys)
    except (RegistryError, ReferrersError, InvalidReference, InvalidKey) as e:
        return CopyResult("error", secrets.clean(str(e)), error_kind=_kind(e))


def _kind(error: Exception) -> str:
    """What went wrong, as one of the probe's outcomes: a registry's own (`unauthorized`,
    `unreachable`...), or `error` for anything else (a listing that does not parse, say)."""
    return error.outcome if isinstance(error, RegistryError) else "error"


def _with_reference(result: ManifestResult, reference: str) -> ManifestResult:
    return result if result.reference == reference else ManifestResult(
        reference, result.outcome, result.digest, result.media_type, result.size, result.body,
        result.method, result.http_status, result.retry_after_seconds, result.message,
    )


def run(request: ProbeRequest, env: Optional[Mapping[str, str]] = None) -> ProbeResult:
    return asyncio.run(run_probe(request, env=env))
