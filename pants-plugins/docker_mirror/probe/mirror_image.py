"""Copying an image with its referrers and tags (a `CopyRequest` with `tags`), in the order that
never lets the destination serve the image without them: the gate, blobs, platform manifests,
referrers, then the index under each tag that still serves what it served when it was checked."""

from __future__ import annotations

import asyncio
from typing import Callable, List, Optional, Sequence, Tuple

from docker_mirror.oci.manifests import ManifestError, parse_manifest
from docker_mirror.oci.probe_protocol import TAG_ERROR_KINDS, CopyRequest, CopyResult, TagCopy, TagOutcome
from docker_mirror.probe import mirror_referrers
from docker_mirror.probe.mirror_referrers import Location
from docker_mirror.probe.referrers import ReferrersError
from docker_mirror.probe.registry import RegistryError
from docker_mirror.probe.signatures import PublicKey
from docker_mirror.probe.transfer import Accept, Node, Transfer


class _ImageFailed(Exception):
    """The image's own graph failed (not the gate, not its referrers)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _kind(error: Exception) -> str:
    outcome = error.outcome if isinstance(error, RegistryError) else "error"
    return outcome if outcome in TAG_ERROR_KINDS else "error"


def _platforms(body: bytes) -> Optional[Tuple[str, ...]]:
    try:
        return parse_manifest(body).platforms
    except ManifestError:
        return None


async def _write_tag(
    destination: Location, tag: TagCopy, node: Node, platforms: Optional[Tuple[str, ...]],
    clean: Callable[[str], str],
) -> TagOutcome:
    """The tag, guarded: a `HEAD` just before the `PUT`; written only if it serves what it
    served when `package` checked it (`seen`)."""
    try:
        served = await destination.registry.head_manifest(destination.repository, tag.tag)
        now = served.digest if served else None
        if now == node.digest:
            return TagOutcome(tag.tag, "up_to_date", platforms=platforms)
        if now != tag.seen:
            return TagOutcome(
                tag.tag, "changed",
                f"the destination changed since it was checked (it served {tag.seen or 'none'}, "
                f"now {now or 'none'}); not overwriting it",
            )  # fmt: skip
        await destination.registry.put_manifest(destination.repository, tag.tag, node.body, node.media_type)
    except (RegistryError, ReferrersError) as e:
        return TagOutcome(tag.tag, "failed", clean(str(e)), _kind(e))
    return TagOutcome(tag.tag, "copied", platforms=platforms)


async def copy_image(
    source: Location,
    destination: Location,
    request: CopyRequest,
    keys: Sequence[PublicKey] = (),
    *,
    accept: Optional[Accept] = None,
    clean: Callable[[str], str] = str,
    deadline: Optional[float] = None,
) -> CopyResult:
    """Copies `request.subject`'s graph, the plan's referrers and the tags. The result's
    `outcome` is the gate's and the referrers'; each tag's outcome is in `tags`: all
    "not_attempted" when the gate refused or the referrers failed (nothing of the image is then
    tagged), all "failed" when the image's graph failed."""
    transfer = Transfer(source, destination, accept=accept)
    graph: List[Node] = []

    async def image() -> None:
        try:
            if request.platforms and request.index_digest:
                node = await transfer.read_narrowed(request.index_digest, request.platforms, request.subject)
            else:
                node = await transfer.read(request.subject)
            await transfer.write(node, root=False)
        except (RegistryError, ReferrersError) as e:
            raise _ImageFailed(e) from e
        graph.append(node)

    def every_tag(outcome: str, message: Optional[str], kind: Optional[str] = None) -> Tuple[TagOutcome, ...]:
        return tuple(TagOutcome(tag.tag, outcome, message, kind) for tag in request.tags)

    try:
        result = await mirror_referrers.copy(
            source, destination, request.subject, request.plan, keys, image=image, deadline=deadline,
            signed=request.signed, identity=request.identity,
        )  # fmt: skip
    except _ImageFailed as failed:
        message, kind = clean(str(failed.error)), _kind(failed.error)
        return CopyResult("error", message, error_kind=kind, tags=every_tag("failed", message, kind))
    except (RegistryError, ReferrersError) as e:
        message = clean(str(e))
        return CopyResult("error", message, error_kind=_kind(e), tags=every_tag("not_attempted", message))
    if not result.ok or not graph:
        return CopyResult(result.outcome, result.message, result.copied, result.verified_by, result.error_kind,
                          tags=every_tag("not_attempted", result.message))  # fmt: skip
    # The index (or single manifest) is written by its tags' `PUT`s, which store it by digest
    # too: one request each, as `skopeo copy` makes, and never before what it names.
    (node,) = graph
    platforms = _platforms(node.body)
    outcomes = await asyncio.gather(*(_write_tag(destination, tag, node, platforms, clean) for tag in request.tags))
    return CopyResult(result.outcome, result.message, result.copied, result.verified_by, result.error_kind,
                      tags=tuple(outcomes))  # fmt: skip
