"""A probe run: every requested reference, concurrently, one session per registry."""

from __future__ import annotations

import asyncio
import os
from typing import Awaitable, Callable, Dict, List, Mapping, Optional, Tuple

from docker_mirror.probe import access
from docker_mirror.probe.credentials import CredentialStore
from docker_mirror.probe.protocol import ProbeRequest, ProbeResult, ReferenceResult
from docker_mirror.probe.reference import InvalidReference, Reference
from docker_mirror.probe.registry import RegistrySession, one_line
from docker_mirror.probe.retry import RetryPolicy
from docker_mirror.probe.secrets import SECRETS, Secrets


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
    directories = access.certs_directories(env)
    contexts: Dict[Tuple[object, ...], object] = {}
    sessions: Dict[str, RegistrySession] = {}

    def session_for(reference: Reference) -> RegistrySession:
        # Docker Hub's names (`docker.io`, `index.docker.io`) are one registry.
        key = "docker.io" if reference.is_docker_hub else reference.registry.lower()
        if key not in sessions:
            verify = access.verifies_tls(reference.registry, request.insecure_registries)
            names = [reference.registry] + (
                [reference.endpoint] if reference.endpoint != reference.registry else []
            )
            context = None
            setup_error = None
            try:
                cas, clients = access.registry_certs(names, directories)
                context_key = (verify, tuple(cas), tuple(clients))
                if context_key not in contexts:
                    contexts[context_key] = access.ssl_context(verify=verify, cas=cas, clients=clients)
                context = contexts[context_key]
            except access.TlsSetupError as e:
                setup_error = f"{reference.registry}: {e}"
            sessions[key] = RegistrySession(
                "docker.io" if reference.is_docker_hub else reference.registry,
                reference.endpoint,
                verify=verify,
                context=context,  # type: ignore[arg-type]
                setup_error=setup_error,
                credentials=store,
                policy=policy,
                env=env,
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
        jobs[key] = asyncio.ensure_future(session.probe(reference, entry.need_body))

    try:
        if jobs:
            await asyncio.wait(list(jobs.values()), timeout=request.deadline_seconds)
        finished: Dict[Tuple[str, bool], ReferenceResult] = dict(early)
        for key, job in jobs.items():
            if job.done() and not job.cancelled():
                error = job.exception()
                if error is not None:
                    raise error
                finished[key] = job.result()
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
        await asyncio.gather(*(s.aclose() for s in sessions.values()), return_exceptions=True)

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
