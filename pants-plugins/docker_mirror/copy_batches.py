"""Which `method="copy"` images share one batch of registry reads: pure functions, no engine
calls.

Each image needs its source's manifest and what its destinations serve. Reading them in one
process per batch of images, instead of one per reference, is what makes a re-mirror cheap (see
`skopeo.READ_MANIFESTS_SCRIPT`). A batch is a run of `BATCH_SIZE` images of one generator in
address order: mirroring all of a generator's images reads every reference once, and mirroring
one image reads at most `BATCH_SIZE - 1` other images' references along with its own.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from docker_mirror.destinations import Destination
from pants.engine.addresses import Address

BATCH_SIZE = 32


def batch_images(
    images: Iterable[Address], size: int = BATCH_SIZE
) -> Mapping[Address, tuple[Address, ...]]:
    """Each image's batch: the images sorted by address, cut into runs of `size`."""
    ordered = sorted(set(images))
    batches: dict[Address, tuple[Address, ...]] = {}
    for start in range(0, len(ordered), size):
        batch = tuple(ordered[start : start + size])
        batches.update((address, batch) for address in batch)
    return batches


def destinations_to_check(
    destinations: Sequence[Destination], *, skip_push: bool
) -> tuple[Destination, ...]:
    """The destinations `publish` would write to, whose current digest it needs to know."""
    if skip_push:
        return ()
    return tuple(d for d in destinations if d.skipped_by is None)
