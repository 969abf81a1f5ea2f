"""Platform subsets (issue 26): a first mirror of images of 3 platforms, each platform a layer
of its own (random bytes: none is shared, none compresses), with every platform and with
`platforms` keeping 2, against `skopeo sync --all`: wall time, and what the destination stores
afterwards (the bytes of its blob files, manifests included)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.pushes import push_index
from docker_mirror_testutil.registries import Registry

from benchmarks.baselines import skopeo_sync
from benchmarks.harness import Bench, Measured, measure, median, progress, spread
from benchmarks.report import Section, Table

PLATFORMS = (("linux", "amd64"), ("linux", "arm64"), ("linux", "s390x"))
KEPT = ("linux/amd64", "linux/arm64")
LAYER = 8 * 2**20
DIRECTORY = "platforms"
WHOLE = "pants publish, method=copy, every platform"
SUBSET = f"pants publish, method=copy, `platforms={list(KEPT)}`"
SKOPEO = "skopeo sync --all"


@dataclass(frozen=True)
class PlatformSizes:
    images: int
    runs: int


@dataclass(frozen=True)
class Setup:
    repo: PantsRepo
    upstream: Registry
    references: tuple[str, ...]
    sizes: PlatformSizes


def prepare(bench: Bench, repo: PantsRepo, sizes: PlatformSizes) -> Setup:
    """Untimed: the upstream, and two generators of the same lines, one keeping 2 platforms
    (under other repositories at the destination, so they do not clash)."""
    upstream = bench.registry("platforms-upstream")
    references = tuple(f"{upstream.address}/bench/plat{i:02d}:1" for i in range(sizes.images))
    spec = "".join(f"{r}\n" for r in references)
    generator = "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy', repository='{0}/{{target_repository}}'{1})\n"
    repo.write(
        {
            f"{DIRECTORY}/all/BUILD": generator.format("all", ""),
            f"{DIRECTORY}/all/images.txt": spec,
            f"{DIRECTORY}/two/BUILD": generator.format("two", f", platforms={list(KEPT)!r}"),
            f"{DIRECTORY}/two/images.txt": spec,
        }
    )
    return Setup(repo, upstream, references, sizes)


def seed(setup: Setup) -> None:
    for i in range(len(setup.references)):
        push_index(setup.upstream.address, f"bench/plat{i:02d}", "1", f"plat{i}", PLATFORMS,
                   layers=[os.urandom(LAYER) for _ in PLATFORMS])  # fmt: skip


def warm_up(bench: Bench, setup: Setup) -> None:
    """Untimed: `package` reads the sources once, so the timed runs find a daemon that knows
    these targets."""
    dest = bench.registry("platforms-warm-up")
    try:
        bench.pants(setup.repo, "package", f"{DIRECTORY}::", registry=dest)
    finally:
        bench.stop_registry(dest)


def stored_bytes(registry: Registry) -> int:
    """The bytes of the blob files a `docker-registry` keeps (manifests are blobs too)."""
    return sum(
        path.stat().st_size
        for path in Path(registry.state_dir).rglob("data")
        if "/blobs/sha256/" in str(path)
    )


def run_scenario(bench: Bench, setup: Setup) -> Section:
    rows: dict[str, list[tuple[Measured, int]]] = {WHOLE: [], SUBSET: [], SKOPEO: []}
    for run_number in range(setup.sizes.runs):
        for row in rows:
            dest = bench.registry("platforms-dest")
            try:
                if row == SKOPEO:
                    mirror: Callable[[], str] = lambda: skopeo_sync(bench.work / "platforms-sync.yaml", setup.references, dest)
                    daemons: Sequence[int] = []
                else:
                    directory = f"{DIRECTORY}/{'all' if row == WHOLE else 'two'}::"
                    mirror = lambda d=directory: bench.pants(setup.repo, "publish", d, registry=dest)
                    daemons = setup.repo.daemon_pids()
                measured = measure(mirror, {"destination": dest}, daemons)
                rows[row].append((measured, stored_bytes(dest)))
            finally:
                bench.stop_registry(dest)
            progress(f"platforms, run {run_number + 1}, {row}: {measured.seconds:.1f} s, {rows[row][-1][1] / 2**20:.1f} MiB stored")
    n = len(setup.references)
    table_rows = tuple(
        (
            row,
            f"{median([m.seconds for m, _ in data]):.2f} s",
            spread([m.seconds for m, _ in data]),
            f"{median([b for _, b in data]) / 2**20:.1f} MiB",
            str(data[-1][0].traffic["destination"].blob_uploads),
            str(data[-1][0].traffic["destination"].manifest_puts),
        )
        for row, data in rows.items()
    )
    whole = median([b for _, b in rows[WHOLE]])
    subset = median([b for _, b in rows[SUBSET]])
    title = (
        f"11. First mirror of {n} images of 3 platforms, one {LAYER // 2**20} MiB layer each, whole and "
        f"with 2 platforms ({setup.sizes.runs} run{'s' if setup.sizes.runs > 1 else ''} per row)"
    )
    return Section(
        (
            Table(
                title,
                ("tool", "wall (median)", "runs", "stored at the destination", "blob upload requests", "manifest PUTs"),
                table_rows,
                (
                    "Each row writes into a new empty destination registry on loopback; the stored bytes are its "
                    "blob files' (layers, configs and manifests) once the run is over.",
                ),
            ),
        ),
        (
            f"- Platform subsets: a first mirror of {n} images of 3 platforms stores {subset / 2**20:.1f} MiB with 2 "
            f"platforms against {whole / 2**20:.1f} MiB with all 3 ({subset / whole:.2f}x).",
        ),
    )
