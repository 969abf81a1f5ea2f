"""A first mirror of images with real layers over a WAN-like link (issue 24): 24 images of one
16 MiB layer each (random bytes: no blob is shared, none compresses), through proxies that add
20 ms to every round trip and pace each connection to about 6 MB/s, in front of the source and
of each new destination. Copy mode with Pants' default process limit and raised to 8, against
`skopeo sync --all`, which copies one image after another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.pushes import push_image
from docker_mirror_testutil.registries import Registry

from benchmarks.baselines import skopeo_sync
from benchmarks.harness import Bench, Measured, measure, median, progress, spread
from benchmarks.report import Section, Table, verdict

DELAY = 0.010  # seconds each way: 20 ms per round trip
RATE = 6e6  # bytes per second, per connection and direction
LAYER = 16 * 2**20
DIRECTORY = "large"
PANTS = "pants publish, method=copy"
SKOPEO = "skopeo sync --all"
TARGET = 0.3  # against skopeo sync, with the process limit raised to 8
RAISED = 8


@dataclass(frozen=True)
class LargeSizes:
    images: int
    runs: int


@dataclass(frozen=True)
class Setup:
    repo: PantsRepo
    upstream: Registry
    references: tuple[str, ...]  # through the proxy in front of `upstream`
    sizes: LargeSizes


def raised(processes: int) -> str:
    return f"{PANTS}, `--process-execution-local-parallelism={processes}`"


def rows() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(row, Pants options), in the order they run."""
    return ((PANTS, ()), (SKOPEO, ()), (raised(RAISED), (f"--process-execution-local-parallelism={RAISED}",)))


def prepare(bench: Bench, repo: PantsRepo, sizes: LargeSizes) -> Setup:
    """Untimed: the upstream, a paced proxy in front of it for the whole scenario, and the
    generator, whose lines name the proxy. `seed` fills the upstream."""
    upstream = bench.registry("large-upstream")
    proxy = bench.proxy(upstream.address, DELAY, RATE)
    references = tuple(f"{proxy.address}/bench/large{i:02d}:1" for i in range(sizes.images))
    repo.write(
        {
            f"{DIRECTORY}/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy')\n",
            f"{DIRECTORY}/images.txt": "".join(f"{r}\n" for r in references),
        }
    )
    return Setup(repo, upstream, references, sizes)


def seed(setup: Setup) -> None:
    """Each image straight into the upstream (no proxy), with a layer of its own."""
    for i in range(len(setup.references)):
        push_image(setup.upstream.address, f"bench/large{i:02d}", "1", layer=os.urandom(LAYER))


def warm_up(bench: Bench, setup: Setup) -> None:
    """Untimed: `package` reads the sources once (manifests only), so the timed runs find a
    daemon that knows these targets."""
    dest = bench.registry("large-warm-up")
    try:
        bench.pants(setup.repo, "package", f"{DIRECTORY}::", registry=dest)
    finally:
        bench.stop_registry(dest)


def run_once(bench: Bench, setup: Setup, mirror: Callable[[Registry], str], daemons: Sequence[int]) -> Measured:
    """One first mirror into a new destination behind a paced proxy of its own."""
    dest = bench.registry("large-dest")
    dest_proxy = bench.proxy(dest.address, DELAY, RATE)
    try:
        return measure(lambda: mirror(replace(dest, address=dest_proxy.address)), {"destination": dest}, daemons)
    finally:
        bench.stop_proxy(dest_proxy)
        bench.stop_registry(dest)


def run_scenario(bench: Bench, setup: Setup) -> Section:
    runs: dict[str, list[Measured]] = {row: [] for row, _ in rows()}
    for run_number in range(setup.sizes.runs):
        for row, options in rows():
            if row == SKOPEO:
                mirror: Callable[[Registry], str] = lambda dest: skopeo_sync(
                    bench.work / "large-sync.yaml", setup.references, dest
                )
                daemons: Sequence[int] = []
            else:
                # Untimed: the daemon takes the options (it rebuilds its scheduler for another
                # process limit) before the timed run.
                bench.pants(setup.repo, *options, "package", f"{DIRECTORY}::")
                mirror = lambda dest, o=options: bench.pants(setup.repo, *o, "publish", f"{DIRECTORY}::", registry=dest)
                daemons = setup.repo.daemon_pids()
            measured = run_once(bench, setup, mirror, daemons)
            written = measured.traffic["destination"].manifest_puts
            if written < len(setup.references):
                bench.warnings.append(f"- {row}, large images: {written} manifest PUTs, not {len(setup.references)}.")
            runs[row].append(measured)
            progress(f"large images, run {run_number + 1}, {row}: {measured.seconds:.1f} s")
    skopeo = median([m.seconds for m in runs[SKOPEO]])
    table_rows = tuple(
        (
            row,
            f"{median([m.seconds for m in data]):.1f} s",
            spread([m.seconds for m in data]),
            f"{median([m.seconds for m in data]) / skopeo:.2f}x",
            f"{median([m.cpu.tool for m in data if m.cpu]):.1f} s",
        )
        for row, data in runs.items()
    )
    ratio = median([m.seconds for m in runs[raised(RAISED)]]) / skopeo
    default = median([m.seconds for m in runs[PANTS]]) / skopeo
    n = len(setup.references)
    title = (
        f"10. First mirror of {n} images of one {LAYER // 2**20} MiB layer each, {DELAY * 2000:.0f} ms per round trip, "
        f"each connection paced to {RATE / 1e6:.0f} MB/s ({setup.sizes.runs} run{'s' if setup.sizes.runs > 1 else ''} per row)"
    )
    return Section(
        (
            Table(
                title,
                ("tool", "wall (median)", "runs", "against skopeo sync", "CPU (median)"),
                table_rows,
                (
                    "Paced proxies in front of the source and of each new destination (`tcp_proxy.DelayingProxy`). "
                    "skopeo sync copies one image after another, each image's blobs at once; Pants runs one copy "
                    "process per image, at most `process_execution_local_parallelism` at a time (the core count "
                    "by default).",
                ),
            ),
        ),
        (
            f"- Large images over a WAN-like link, process limit raised to {RAISED}: {ratio:.2f}x `skopeo sync` "
            f"(target <= {TARGET}x): {verdict(ratio <= TARGET)}. With the default limit: {default:.2f}x.",
        ),
    )
