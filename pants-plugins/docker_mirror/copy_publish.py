"""How `pants publish` reports `method="copy"` images: pure functions, no engine calls.

Pants 2.17's publish goal runs the `InteractiveProcess` of each `PublishPackages` one after the
other, and renders a `PublishPackages` without a process as "skipped". The copies themselves run
earlier, concurrently, as `Process`es of the publish rule; each `PublishPackages` then carries an
`InteractiveProcess` that only reports the copy's real outcome (its message, its exit code), so
the summary says "published" or "failed" truthfully and a failure makes the run exit non-zero,
while the other images are still copied and reported. An up-to-date destination gets no process
at all and is rendered as "skipped (up to date: ...)".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from docker_mirror.copy_record import ResolvedSource
from docker_mirror.destinations import Destination
from docker_mirror.skopeo import reporter_script
from pants.core.goals.publish import PublishOutputData, PublishPackages
from pants.engine.process import InteractiveProcess


@dataclass(frozen=True)
class CopyOutcome:
    """What `skopeo copy` did for one destination reference."""

    destination: str
    exit_code: int
    # One line naming image, registry and reason, when it failed.
    error: str | None = None
    # The destination turned out to serve the source digest already (nothing was written).
    up_to_date: bool = False


def short_digest(digest: str | None) -> str:
    return (digest or "")[: len("sha256:") + 12]


def split_up_to_date(
    source_digest: str, destinations: Sequence[Destination], served: Mapping[str, str | None]
) -> tuple[tuple[Destination, ...], tuple[Destination, ...]]:
    """(up to date, to copy): a destination is up to date when it serves the source digest."""
    up_to_date = tuple(d for d in destinations if served.get(d.reference) == source_digest)
    stale = tuple(d for d in destinations if served.get(d.reference) != source_digest)
    return up_to_date, stale


def by_repository(destinations: Iterable[Destination]) -> tuple[tuple[Destination, ...], ...]:
    """Destinations grouped by registry and repository, in first-seen order.

    The tags of one repository are copied one after the other (the first copy uploads the
    blobs, the next ones find them there); different repositories are copied concurrently.
    """
    groups: dict[tuple[str, str], list[Destination]] = {}
    for destination in destinations:
        groups.setdefault((destination.registry, destination.repository), []).append(destination)
    return tuple(tuple(group) for group in groups.values())


def report_process(bash: str, *, exit_code: int, message: str | None) -> InteractiveProcess:
    """The process `publish` runs to report a copy that already ran: it prints `message` to
    stderr and exits with `exit_code`. The message travels in the environment, not in argv."""
    return InteractiveProcess(
        argv=(bash, "-c", reporter_script()),
        env={"DOCKER_MIRROR_MESSAGE": message or "", "DOCKER_MIRROR_EXIT_CODE": str(exit_code)},
    )


def _data(source: ResolvedSource, outcome: str) -> PublishOutputData:
    return PublishOutputData(
        {"source": source.reference, "digest": source.digest, "mirror_outcome": outcome}
    )


def skipped_packages(names: Sequence[str], reason: str) -> PublishPackages:
    return PublishPackages(names=tuple(names), description=f"({reason})")


def up_to_date_packages(source: ResolvedSource, destination: Destination) -> PublishPackages:
    return PublishPackages(
        names=(destination.reference,),
        description=(
            f"(up to date: {destination.registry_name} already serves "
            f"{short_digest(source.digest)})"
        ),
        data=_data(source, "up-to-date"),
    )


def unresolved_packages(
    source: ResolvedSource, destinations: Sequence[Destination], *, bash: str
) -> PublishPackages:
    """Every destination of a source that could not be resolved, reported as failed."""
    assert source.error is not None
    return PublishPackages(
        names=tuple(d.reference for d in destinations),
        process=report_process(bash, exit_code=1, message=f"docker-mirror: {source.error}"),
        description=source.error,
        data=_data(source, "failed"),
    )


def copied_packages(
    source: ResolvedSource, destination: Destination, outcome: CopyOutcome, *, bash: str
) -> PublishPackages:
    if outcome.up_to_date:
        return up_to_date_packages(source, destination)
    if outcome.exit_code == 0:
        return PublishPackages(
            names=(destination.reference,),
            process=report_process(bash, exit_code=0, message=None),
            description=(
                f"{destination.registry_name} (copied from {source.reference}, {source.summary})"
            ),
            data=_data(source, "copied"),
        )
    error = outcome.error or f"skopeo copy exited with {outcome.exit_code}"
    return PublishPackages(
        names=(destination.reference,),
        process=report_process(
            bash, exit_code=outcome.exit_code or 1, message=f"docker-mirror: {error}"
        ),
        description=error,
        data=_data(source, "failed"),
    )
