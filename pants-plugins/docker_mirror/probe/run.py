"""A probe run: every read of a request, or its copy, concurrently, one session per registry."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar

from docker_mirror.probe import mirror_referrers
from docker_mirror.probe.access import Routes
from docker_mirror.probe.credentials import CredentialStore
from docker_mirror.probe.distribution import Distribution
from docker_mirror.probe.manifests import probe_manifest
from docker_mirror.probe.mirror_image import copy_image
from docker_mirror.probe.mirror_referrers import Location
from docker_mirror.probe.oci_layout import ArchiveReader, BlobStore, LayoutWriter, StoreFirst
from docker_mirror.probe.provenance import (
    ProvenanceKey, ProvenanceKeyError, append_attestation, attested_by, envelope, load_provenance_key, statement,
)  # fmt: skip
from docker_mirror.probe.referrers import digest_tag
from docker_mirror.oci.probe_protocol import (
    CopyRequest,
    CopyResult,
    ExportedImage,
    ExportImage,
    ExportRequest,
    ExportResult,
    Plan,
    TagCopy,
    ProbeRequest,
    ProbeResult,
    ManifestResult,
    ReferrersRead,
    ReferrersResult,
    TagOutcome,
)
from docker_mirror.oci.reference import ImageReference, InvalidReference, parse_reference
from docker_mirror.probe.referrers import ReferrersError
from docker_mirror.probe.registry import RegistryError, RegistrySession
from docker_mirror.probe.signatures import InvalidKey, PublicKey, load_public_key
from docker_mirror.oci.manifests import ManifestError, digest_of, narrowed_index, parse_manifest, select_platform
from docker_mirror.oci.media_types import OCI_MANIFEST
from docker_mirror.probe.retry import RetryPolicy
from docker_mirror.probe.secrets import SECRETS, Secrets, one_line
from docker_mirror.probe.transport import HttpClient


Key = Tuple[str, bool]  # a manifest read: (reference, whether its body is needed)



def copy_deadline_seconds(deadline_seconds: float) -> float:
    """When a copy stops by itself, so that its result still says what it wrote rather than
    being cut off by the run's deadline: 10% of the deadline before it, and at least 5 s
    (half the deadline, if that is shorter)."""
    return deadline_seconds - max(0.1 * deadline_seconds, min(5.0, 0.5 * deadline_seconds))


class _Run:
    """One run's sessions (one per registry, Docker Hub's names being one) and manifest jobs (one
    per distinct read: the same reference asked twice is read once)."""

    def __init__(
        self,
        request: ProbeRequest,
        env: Mapping[str, str],
        secrets: Secrets,
        sleep: Callable[[float], Awaitable[None]],
        credentials: Optional[CredentialStore],
    ) -> None:
        self.request = request
        self.secrets = secrets
        self.sleep = sleep
        self.credentials = credentials or CredentialStore(env, timeout=request.timeout_seconds, secrets=secrets)
        self.policy = RetryPolicy(attempts=request.attempts, max_retry_after_seconds=request.max_retry_after_seconds)
        self.http = HttpClient(Routes(env, request.insecure_registries, secrets=secrets), timeout=request.timeout_seconds)
        self.sessions: Dict[str, RegistrySession] = {}
        self.distributions: Dict[str, Distribution] = {}
        self.jobs: Dict[Key, "asyncio.Future[ManifestResult]"] = {}
        self.early: Dict[Key, ManifestResult] = {}  # invalid references: answered without a job
        self.registry_of: Dict[Key, str] = {}
        # With a provenance key: the key, once loaded, and the digest each read's image has at
        # the destination where it is not the one its referrers are read for (a subset).
        self._provenance: Optional[ProvenanceKey] = None
        self.image_digest: Dict[Tuple[str, Optional[str], Tuple[str, ...]], str] = {}
        # Sources read from an archive instead of their registries.
        self.archive = ArchiveReader(request.archive) if request.archive else None
        self.archived = frozenset(request.archived)

    def in_archive(self, reference: ImageReference) -> bool:
        return self.archive is not None and reference.archive_repository in self.archived

    def session_for(self, reference: ImageReference) -> RegistrySession:
        key = "docker.io" if reference.is_docker_hub else reference.registry_host.lower()
        if key not in self.sessions:
            self.sessions[key] = RegistrySession(
                "docker.io" if reference.is_docker_hub else reference.registry_host,
                reference.endpoint,
                http=self.http,
                credentials=self.credentials,
                policy=self.policy,
                max_concurrency=self.request.max_concurrency_per_registry,
                timeout=self.request.timeout_seconds,
                secrets=self.secrets,
                sleep=self.sleep,
            )
        return self.sessions[key]

    def distribution(self, reference: ImageReference) -> Distribution:
        session = self.session_for(reference)
        if session.registry not in self.distributions:
            self.distributions[session.registry] = Distribution(session)
        return self.distributions[session.registry]

    def location(self, reference: ImageReference) -> Location:
        if self.archive is not None and self.in_archive(reference):
            return Location(self.archive, reference.archive_repository)
        return Location(self.distribution(reference), reference.remote_name)

    def expect(self, read: ReferrersRead) -> None:
        """Counts an image whose referrers the run finds, in its source repository: its tag list
        is worth reading by as many pages as the `HEAD`s it saves."""
        try:
            reference = parse_reference(read.reference)
        except InvalidReference:
            return
        if self.in_archive(reference):
            return
        self.distribution(reference).images[reference.remote_name] += 1

    def manifest_job(self, text: str, need_body: bool) -> "Optional[asyncio.Future[ManifestResult]]":
        key = (text, need_body)
        if key in self.jobs or key in self.early:
            return self.jobs.get(key)
        try:
            reference = parse_reference(text)
        except InvalidReference as e:
            self.early[key] = ManifestResult(text, "error", message=one_line(f"{e}: {text}", 200))
            return None
        if self.archive is not None and self.in_archive(reference):
            self.registry_of[key] = f"the archive {self.archive.name}"
            self.jobs[key] = asyncio.ensure_future(_archived_manifest(self.archive, reference, need_body))
            return self.jobs[key]
        session = self.session_for(reference)
        self.registry_of[key] = session.registry
        self.jobs[key] = asyncio.ensure_future(probe_manifest(session, reference, need_body))
        return self.jobs[key]

    async def referrers_of(self, read: ReferrersRead) -> ReferrersResult:
        try:
            destinations = [self.location(parse_reference(d)) for d in read.destinations]
            subject, found = await self.find(read, destinations)
            plans = found.plans
            if self.request.provenance_key is not None:
                plans = await self.attest_plans(plans, destinations, self.image_digest.get(read.key, subject))
        except (RegistryError, ReferrersError, InvalidReference, ManifestError, _Unresolved, ProvenanceKeyError) as e:
            return ReferrersResult(
                read.reference, read.platform, error=self.secrets.clean(str(e)), error_kind=_kind(e),
                platforms=read.platforms,
            )  # fmt: skip
        return ReferrersResult(
            read.reference, read.platform, subject, tuple(sorted(found.counts().items())),
            tuple(zip(read.destinations, plans)),
            on_platforms=tuple(sorted(found.platform_counts().items())), platforms=read.platforms,
        )  # fmt: skip

    async def find(self, read: ReferrersRead, destinations: List[Location]) -> Tuple[str, mirror_referrers.Found]:
        """The digest `read` resolves to, and what refers to it (and what `destinations` lack)."""
        reference = parse_reference(read.reference)
        needs_body = read.platform is not None or bool(read.platforms)
        subject = None if needs_body else reference.digest
        # An image index's platform manifests have referrers of their own: not a platform's.
        media_type = None if read.platform is None else OCI_MANIFEST
        kept: Optional[Tuple[str, ...]] = None
        if subject is None:
            key = (read.reference, needs_body)
            job = self.manifest_job(*key)
            source = await job if job is not None else self.early[key]
            subject = _subject(source, read.platform)
            media_type = media_type or source.media_type
            if read.platforms:
                if source.body is None:
                    raise _Unresolved("the registry sent no image index")
                narrowed = narrowed_index(source.body, read.platforms)
                # Unless something is left out, the image keeps its digest and its referrers.
                kept = narrowed.manifests if narrowed.body != source.body else None
                if kept is not None:
                    self.image_digest[read.key] = narrowed.digest
        found = await mirror_referrers.find(
            self.location(reference), subject, destinations, media_type, platform_manifests=kept
        )
        return subject, found

    def provenance(self) -> ProvenanceKey:
        """The provenance key, loaded once; a `ProvenanceKeyError` if it cannot sign."""
        if self._provenance is None:
            assert self.request.provenance_key is not None
            self._provenance = load_provenance_key(self.request.provenance_key)
        return self._provenance

    async def attest_plans(self, plans: Sequence[Plan], destinations: Sequence[Location], image: str) -> List[Plan]:
        """`plans`, each marked `attest` where its destination lacks the mirror's attestation of
        `image` (one `GET` of the `.att` manifest, no blob)."""
        key = self.provenance()

        async def lacks(destination: Location) -> bool:
            current = await destination.registry.get_manifest(destination.repository, digest_tag(image, "att"))
            return not attested_by(current[0] if current else None, key.key_id)

        missing = await asyncio.gather(*(lacks(d) for d in destinations))
        return [dataclasses.replace(plan, attest=True) if m else plan for plan, m in zip(plans, missing)]

    def manifest_results(self) -> Dict[Key, ManifestResult]:
        """Every read's result, once the deadline has passed or all are done: a job that raised
        what nobody foresaw fails its reference alone, and one still running is cancelled."""
        finished: Dict[Key, ManifestResult] = dict(self.early)
        for key, job in self.jobs.items():
            if job.done() and not job.cancelled():
                error = job.exception()
                finished[key] = job.result() if error is None else ManifestResult(
                    key[0], "error", message=self.secrets.clean(
                        f"{self.registry_of[key]}: internal error: {type(error).__name__}: {error}"
                    ),
                )
            else:
                job.cancel()
                finished[key] = ManifestResult(
                    key[0],
                    "unreachable",
                    message=f"no answer from {self.registry_of[key]} within the probe's deadline of "
                    f"{self.request.deadline_seconds:g} s",
                )
        return finished


async def answer(
    request: ProbeRequest,
    *,
    env: Optional[Mapping[str, str]] = None,
    secrets: Secrets = SECRETS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    credentials: Optional[CredentialStore] = None,
) -> ProbeResult:
    """Every read of `request` (or its copy) at once, within its deadline."""
    run = _Run(request, dict(os.environ if env is None else env), secrets, sleep, credentials)
    for entry in request.requests:
        run.manifest_job(entry.reference, entry.need_body)
    for read in request.referrers:
        run.expect(read)
    referrers = [asyncio.ensure_future(run.referrers_of(read)) for read in request.referrers]
    copy_deadline = time.monotonic() + copy_deadline_seconds(request.deadline_seconds)
    copying = (
        asyncio.ensure_future(_copy(request.copy, run.location, secrets, copy_deadline, run.provenance))
        if request.copy else None
    )  # fmt: skip
    exporting = asyncio.ensure_future(_export(run, request.export, copy_deadline)) if request.export else None
    everything: "List[asyncio.Future[Any]]" = [
        *run.jobs.values(), *referrers, *([copying] if copying else []), *([exporting] if exporting else []),
    ]
    try:
        if everything:
            await asyncio.wait(everything, timeout=request.deadline_seconds)
        finished = run.manifest_results()
        late = f"no answer within the probe's deadline of {request.deadline_seconds:g} s"
        referrer_results = [
            _outcome(job)
            or ReferrersResult(read.reference, read.platform, error=_failure(job, late, secrets), platforms=read.platforms)
            for read, job in zip(request.referrers, referrers)
        ]
        copied = None
        if copying is not None:
            assert request.copy is not None
            late_copy = secrets.clean(late + _under_way(run.sessions.values()))
            copied = _outcome(copying) or _cut_short(
                request.copy, _failure(copying, late_copy, secrets), "unreachable" if not copying.done() else "error"
            )
        exported = None
        if exporting is not None:
            assert request.export is not None
            late_export = secrets.clean(late + _under_way(run.sessions.values()))
            exported = _outcome(exporting) or _export_failed(
                request.export, _failure(exporting, late_export, secrets),
                "unreachable" if not exporting.done() else "error",
            )  # fmt: skip
    finally:
        await _cancelled(everything)
        await run.http.aclose()
    return ProbeResult(
        results=[_with_reference(finished[(e.reference, e.need_body)], e.reference) for e in request.requests],
        requests_sent={s.registry: s.counts for s in run.sessions.values()},
        referrers=referrer_results,
        copy=copied,
        export=exported,
    )


async def _cancelled(jobs: "Sequence[asyncio.Future[object]]") -> None:
    """Cancel what is still running, and give it a moment to stop."""
    pending = [job for job in jobs if not job.done()]
    for job in pending:
        job.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)


def _under_way(sessions: Iterable[RegistrySession]) -> str:
    """What the requests still under way were doing when the deadline cut them, for its message:
    the first begun, and how many more."""
    doing = [what for session in sessions for what in session.under_way]
    if not doing:
        return ""
    more = f" and {len(doing) - 1} more" if len(doing) > 1 else ""
    return f", while {doing[0]}{more}"


def _cut_short(request: CopyRequest, message: str, kind: str) -> CopyResult:
    """A copy cut short by the deadline (`unreachable`) or by what nobody foresaw (`error`): what
    it wrote stays, and the next run resumes from it; each tag "failed"."""
    tags = tuple(TagOutcome(tag.tag, "failed", message, kind) for tag in request.tags)
    return CopyResult("error", message, error_kind=kind, tags=tags)


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


async def _copy(
    request: CopyRequest, location: Callable[[ImageReference], Location], secrets: Secrets, deadline: float,
    provenance: Optional[Callable[[], ProvenanceKey]] = None,
) -> CopyResult:
    try:
        keys = [load_public_key(name, pem.encode()) for name, pem in request.keys]
        signer = provenance() if request.plan.attest and provenance is not None else None
        source = location(parse_reference(f"{request.source}@{request.subject}"))
        destination = location(parse_reference(request.destination))
        started = datetime.datetime.now(datetime.timezone.utc)
        if request.tags:
            result = await copy_image(source, destination, request, keys, clean=secrets.clean, deadline=deadline)
        else:
            result = await mirror_referrers.copy(
                source, destination, request.subject, request.plan, keys, deadline=deadline, identity=request.identity
            )
    except (RegistryError, ReferrersError, InvalidReference, InvalidKey, ProvenanceKeyError) as e:
        return _copy_failed(request, secrets.clean(str(e)), _kind(e))
    if signer is None or not result.ok or any(t.outcome not in ("copied", "up_to_date") for t in result.tags):
        return result
    return await _attested(request, destination, result, signer, started, secrets)


async def _attested(
    request: CopyRequest, destination: Location, result: CopyResult, key: ProvenanceKey,
    started: datetime.datetime, secrets: Secrets,
) -> CopyResult:  # fmt: skip
    """`result`, once the mirror's provenance attestation of the image is appended to its `.att`
    tag at `destination`; if it cannot be, the copy fails (the image is there without it, and
    the next run writes it)."""
    document = statement(
        subject=request.subject, destination=str(destination), source=request.provenance_source or request.source,
        source_digest=request.index_digest or request.subject, platforms=request.platforms,
        verified_by=result.verified_by, identity=request.identity if result.verified_by else None,
        started=started, finished=datetime.datetime.now(datetime.timezone.utc),
    )  # fmt: skip
    try:
        written = await append_attestation(destination.registry, destination.repository, request.subject, key,
                                           envelope(key, document))  # fmt: skip
    except (RegistryError, ReferrersError) as e:
        message = secrets.clean(f"copied, but the mirror's provenance attestation could not be written: {e}")
        failed = tuple(TagOutcome(t.tag, "failed", message, _kind(e)) for t in result.tags)
        return dataclasses.replace(result, outcome="error", message=message, error_kind=_kind(e), tags=failed)
    return dataclasses.replace(result, attested=written)


def _copy_failed(request: CopyRequest, message: str, kind: str) -> CopyResult:
    """A copy that came to nothing: with tags, each "not_attempted" (nothing was written)."""
    tags = tuple(TagOutcome(tag.tag, "not_attempted", message) for tag in request.tags)
    return CopyResult("error", message, error_kind=kind, tags=tags)


async def _archived_manifest(archive: ArchiveReader, reference: ImageReference, need_body: bool) -> ManifestResult:
    """What an archive holds under `reference`, as a registry's answer would say it."""
    try:
        got = await archive.get_manifest(reference.archive_repository, reference.tag_or_digest)
    except RegistryError as e:
        return ManifestResult(str(reference), e.outcome, method="archive", message=str(e))
    if got is None:
        name = reference.archive_name
        return ManifestResult(str(reference), "not_found", method="archive",
                              message=f"the archive {archive.name} has no {name}")  # fmt: skip
    body, media_type = got
    return ManifestResult(str(reference), "ok", digest_of(body), media_type, len(body),
                          body if need_body else None, method="archive")  # fmt: skip


async def _export(run: _Run, request: ExportRequest, deadline: float) -> ExportResult:
    """Every image of `request` (with what refers to it) into one OCI layout, at once."""
    layout = LayoutWriter(BlobStore(Path(request.store)))
    for image in request.images:
        run.expect(ReferrersRead(image.reference, image.platform, (), image.platforms))
    images = await asyncio.gather(*(_export_image(run, layout, image, deadline) for image in request.images))
    return ExportResult(layout.index().decode(), tuple(images))


async def _export_image(run: _Run, layout: LayoutWriter, image: ExportImage, deadline: float) -> ExportedImage:
    """One image into the layout, as a copy to a registry goes (the gate, its graph, what refers
    to it, then its name); named by its source's `registry/repository:tag` (or `@digest`)."""
    try:
        keys: List[PublicKey] = [load_public_key(name, pem.encode()) for name, pem in image.keys]
        reference = parse_reference(image.reference)
        repository = reference.archive_repository
        destination = Location(layout, repository)
        read = ReferrersRead(reference.manifest_reference, image.platform, (), image.platforms)
        subject, found = await run.find(read, [destination])
        # With `platforms`, `subject` is the source's index, which the archive keeps filtered
        # (as `find` made it), unless nothing is left out.
        filtered = run.image_digest.get(read.key)
        platforms: Tuple[str, ...] = image.platforms if filtered else ()
        index_digest = subject if filtered else None
        subject = filtered or subject
        tags = (TagCopy(reference.tag or "latest", None),) if reference.digest is None else ()
        request = CopyRequest(
            repository, subject, repository, found.plans[0] if image.referrers else Plan(), image.keys, tags,
            platforms, index_digest if platforms else None, image.identity,
        )  # fmt: skip
        source = run.location(reference)
        source = Location(StoreFirst(source.registry, layout.store), source.repository)
        result = await copy_image(source, destination, request, keys, clean=run.secrets.clean, deadline=deadline)
        if result.ok and all(t.outcome in ("copied", "up_to_date") for t in result.tags):
            if not tags:  # a line pinned by digest only: named by it
                got = await source.registry.get_manifest(source.repository, subject)
                if got is None:
                    raise RegistryError("not_found", f"{source} no longer serves {subject}")
                await layout.put_manifest(repository, subject, got[0], got[1])
                layout.name_digest(repository, subject, subject)
            return ExportedImage(image.reference, result, reference.archive_name, subject)
        return ExportedImage(image.reference, result, digest=subject)
    except (RegistryError, ReferrersError, InvalidReference, InvalidKey, ManifestError, _Unresolved) as e:
        return ExportedImage(image.reference, CopyResult("error", run.secrets.clean(str(e)), error_kind=_kind(e)))


def _export_failed(request: ExportRequest, message: str, kind: str) -> ExportResult:
    """An export cut short: each image fails, and nothing is named."""
    return ExportResult("", tuple(ExportedImage(i.reference, CopyResult("error", message, error_kind=kind))
                                  for i in request.images))  # fmt: skip


def _kind(error: Exception) -> str:
    """What went wrong, as one of the probe's outcomes: a registry's own (`unauthorized`,
    `unreachable`...), or `error` for anything else (a listing that does not parse, say)."""
    return error.outcome if isinstance(error, RegistryError) else "error"


def _with_reference(result: ManifestResult, reference: str) -> ManifestResult:
    return result if result.reference == reference else ManifestResult(
        reference, result.outcome, result.digest, result.media_type, result.size, result.body,
        result.method, result.http_status, result.retry_after_seconds, result.message,
    )


def quiet_lost_connections(loop: asyncio.AbstractEventLoop, context: Dict[str, Any]) -> None:
    """asyncio's handler, but silent on a connection loss left in a future nobody awaits: aiohttp
    leaves one (its drain waiter) when a registry answers and closes before reading a body. The
    request that met it has failed, and says so; printed, it would break the one-line stderr."""
    if context.get("message") == "Future exception was never retrieved" and isinstance(
        context.get("exception"), OSError
    ):
        return
    loop.default_exception_handler(context)


async def quietly(work: Awaitable[T]) -> T:
    asyncio.get_running_loop().set_exception_handler(quiet_lost_connections)
    return await work


def run(request: ProbeRequest, env: Optional[Mapping[str, str]] = None) -> ProbeResult:
    return asyncio.run(quietly(answer(request, env=env)))
