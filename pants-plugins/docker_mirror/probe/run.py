"""A probe run: every requested reference, concurrently, one session per registry."""

from __future__ import annotations

import asyncio
import os
from typing import Awaitable, Callable, Dict, List, Mapping, Optional, Tuple

from docker_mirror.probe.access import Routes
from docker_mirror.probe.credentials import CredentialStore
from docker_mirror.probe.manifests import probe_manifest
from docker_mirror.probe.protocol import ProbeRequest, ProbeResult, ReferenceResult
from docker_mirror.probe.reference import InvalidReference, Reference
from docker_mirror.probe.registry import RegistrySession
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

    # The same reference asked twice is probed once.
    jobs: Dict[Tuple[str, bool], "asyncio.Task[ReferenceResult]"] = {}
    order: List[Tuple[str, bool]] = []
    early: Dict[Tuple[str, bool], ReferenceResult] = {}
    registry_of: Dict[Tuple[str, bool], str] = {}
    for entry in request.requests:
        key = (entry.reference, entry.need_body)
        order.append(key)
        if key in jobs or key in early:
            continue
        try:
            reference = Reference.parse(entry.reference)
        except InvalidReference as e:
            early[key] = ReferenceResult(
                entry.reference, "error", message=one_line(f"{e}: {entry.reference}", 200)
            )
            continue
        session = session_for(reference)
        registry_of[key] = session.registry
        jobs[key] = asyncio.ensure_future(probe_manifest(session, reference, entry.need_body))

    try:
        if jobs:
            await asyncio.wait(list(jobs.values()), timeout=request.deadline_seconds)
        finished: Dict[Tuple[str, bool], ReferenceResult] = dict(early)
        for key, job in jobs.items():
            if job.done() and not job.cancelled():
                error = job.exception()
                # A failure nobody foresaw fails this reference alone; the others go on.
                finished[key] = job.result() if error is None else ReferenceResult(
                    key[0], "error", message=secrets.clean(
                        f"{registry_of[key]}: internal error: {type(error).__name__}: {error}"
                    ),
                )
            else:
                job.cancel()
                finished[key] = ReferenceResult(
                    key[0],
                    "unreachable",
                    message=f"no answer from {registry_of[key]} within the probe's deadline of "
                    f"{request.deadline_seconds:g} s",
                )
    finally:
        pending = [job for job in jobs.values() if not job.done()]
        for job in pending:
            job.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        await http.aclose()

    return ProbeResult(
        results=[_with_reference(finished[key], key[0]) for key in order],
        requests_sent={s.registry: s.counts for s in sessions.values()},
    )


def _with_reference(result: ReferenceResult, reference: str) -> ReferenceResult:
    return result if result.reference == reference else ReferenceResult(
        reference, result.outcome, result.digest, result.media_type, result.size, result.body,
        result.method, result.http_status, result.retry_after_seconds, result.message,
    )


def run(request: ProbeRequest, env: Optional[Mapping[str, str]] = None) -> ProbeResult:
    return asyncio.run(run_probe(request, env=env))
