"""Benchmarks: target generation at scale and mirroring throughput, side by side with what a
user would otherwise reach for, in one run, with real processes only.

Run it with `benchmarks/run` (which installs and starts what is needed); it writes
`benchmarks/RESULTS.md`.

Pants runs in two modes here:
  - warm: with pantsd, Pants' default mode (what a developer, or a CI job that runs several
    Pants commands, sees). Each throwaway repository's daemon is started by one untimed command
    first; every daemon and registry the benchmark started is stopped before it exits, also on
    error or SIGTERM.
  - cold: `--no-pantsd`, a fresh process that builds Pants' rule graph first (a one-shot CI job).

Scenarios (benchmarks/scenarios/):
  0. where Pants' time goes: cold start, a cProfile of a cold `pants --version`, warm start.
  1. generation: `pants list ::` of one spec file with N entries versus the same N
     `docker_image` targets written by hand in a BUILD file; cold at one size, warm at three.
  2. first mirror of N small images between two loopback registries: our build method, our
     copy method, a shell loop of `docker pull/tag/push`, and `skopeo sync`.
  3. re-mirror when nothing changed: the same four, run again; plus the requests each sent and
     the processes Pants ran (`--stats-log`).
  4. one line changed in a 200-line spec: the README's `--changed-since` command.
  5-7. copy mode at scale against `skopeo sync --all`: no-op re-mirror and first mirror of
     20, 200 and 1,000 images (the marginal cost per image, manifest GETs and HEADs per
     registry, blobs and manifests written, processes, CPU), and a first mirror of 200 with
     20 ms added to every round trip by a delaying proxy in front of both registries.
  8-9. signatures, attestations and SBOMs: a no-op re-mirror and a first mirror of 20 and 200
     images with four referrers each, with `referrers` on and off, of images with none, and
     `skopeo sync --all`: requests per image at each registry, by method.
  10. images of 16 MiB over a WAN-like link (20 ms per round trip, 6 MB/s per connection):
     copy mode with the default process limit and raised to 8, against `skopeo sync --all`.
  11. images of 3 platforms, 8 MiB a platform: a first mirror with every platform and with
     `platforms` keeping 2, against `skopeo sync --all`: wall time and bytes stored (issue 26).
  12. air gap: `pants package` of a `docker_mirror_archive` of 4 images of 2 platforms, 32 MiB a
     platform and a 16 MiB layer they share, cold (fresh named caches and store) and again, then
     `pants publish --docker-mirror-from-archive` into an empty registry, twice, against skopeo
     copies into one OCI layout and `tar`: wall time, bytes fetched, kept and written (issue 27).
  25. only with `--only before_after --before CHECKOUT`: a no-op re-mirror of 20, 200 and 1,000
     images with nothing attached, by this checkout's plugin and by CHECKOUT's, and
     `skopeo sync --all`, in rounds: marginal cost per image and requests per image (issue 25).
"""

from __future__ import annotations

import argparse
import dataclasses
import concurrent.futures
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from docker_mirror_testutil.pants_repo import PantsRepo

from benchmarks import REPO
from benchmarks.harness import Bench, progress, side_by_side, since_start
from benchmarks.report import Report, Section, machine_notes
from benchmarks.scenarios import (
    air_gap, before_after, changed_line, generation, large_images, mirroring, platforms, referrers, scale, startup,
)
from benchmarks.scenarios.startup import Startup


@dataclass(frozen=True)
class Sizes:
    generation: tuple[int, ...]  # warm generation sizes
    cold_size: int  # cold generation size; the generation target is checked at it
    cold_runs: int
    warm_runs: int
    images: int  # first mirror and re-mirror
    mirror_runs: int
    changed: tuple[tuple[str, int], ...]  # (method, spec lines) for the changed-line runs
    scale: scale.ScaleSizes  # copy mode against skopeo sync at scale, and with latency
    referrers: referrers.ReferrerSizes  # images with signatures, attestations and SBOMs
    large: large_images.LargeSizes  # images with real layers over a WAN-like link
    before_after: before_after.BeforeAfterSizes  # a no-op by two checkouts' plugins
    platforms: platforms.PlatformSizes  # images of 3 platforms, whole and with 2
    air_gap: air_gap.AirGapSizes  # an archive for an air gap, made and loaded


# Sized to finish in about thirty minutes on a quiet 2-core machine (the scale scenario: about 15).
FULL = Sizes(
    (300, 3000, 10000), 3000, 2, 3, 20, 3, (("copy", 200), ("build", 20)),
    # A first mirror of 1,000 runs once per tool: three would add about four minutes.
    scale.ScaleSizes(
        (20, 200, 1000), (3, 3, 1), 3, cold_size=200, first_size=200, wan_size=200, wan_runs=1, wan_parallelism=(8, 16)
    ),
    referrers.ReferrerSizes((20, 200), noop_runs=3),
    large_images.LargeSizes(24, runs=1),
    before_after.BeforeAfterSizes((20, 200, 1000), runs=11),
    platforms.PlatformSizes(6, runs=3),
    air_gap.AirGapSizes(4, runs=3, layer=32 * 2**20, shared=16 * 2**20),
)
# Checks the harness, at small sizes, in a few minutes.
QUICK = Sizes(
    (30, 300), 300, 1, 1, 5, 1, (("copy", 20), ("build", 5)),
    scale.ScaleSizes(
        (5, 20, 50), (1, 1, 1), 1, cold_size=20, first_size=20, wan_size=20, wan_runs=1, wan_parallelism=(8,)
    ),
    referrers.ReferrerSizes((5,), noop_runs=1),
    large_images.LargeSizes(4, runs=1),
    before_after.BeforeAfterSizes((5, 20, 50), runs=2),
    platforms.PlatformSizes(2, runs=1),
    air_gap.AirGapSizes(2, runs=1, layer=4 * 2**20, shared=2 * 2**20),
)

MODES = (
    "Pants rows are **warm** unless marked **cold**: warm runs go to a running pantsd (Pants' default "
    "mode: a developer's machine, or a CI job that runs several Pants commands), started by one untimed "
    "command in each throwaway repository; cold runs use `--no-pantsd`, a fresh process per command "
    "(a one-shot CI job). Cold rows: the cold start and profile below, table 1a, and one row each of tables 3 and 5."
)


@dataclass(frozen=True)
class Results:
    machine: list[str]
    setup: float  # seconds of untimed set-up
    startup: Startup
    sections: list[Section]


# What `--only` can name; "Where Pants' time goes" (startup) runs every time, the others need it.
SCENARIOS = ("generation", "mirroring", "changed", "scale", "referrers", "large", "platforms", "air_gap", "before_after")
# Run by default: before_after needs `--before`.
DEFAULT_SCENARIOS = SCENARIOS[:-1]


@dataclass(frozen=True)
class Prepared:
    """The mirror repository and its scenarios, set up (None: not run)."""

    repo: PantsRepo
    mirroring: mirroring.Mirroring | None
    changed: changed_line.ChangedLine | None
    scale: scale.Scale | None
    referrers: referrers.Setup | None
    large: large_images.Setup | None
    before_after: before_after.Setup | None
    platforms: platforms.Setup | None
    air_gap: air_gap.Setup | None  # in a repository and pantsd of its own


def warm_up_mirror_repository(
    bench: Bench, prepared: Prepared, seeded: concurrent.futures.Future[None] | None
) -> None:
    """Untimed: the mirror repository's daemon, its upstream seeded and packaged, then changed/
    published once, and scale/ packaged once its upstream is seeded (by `seeded`)."""
    if prepared.mirroring:
        mirroring.warm_up(bench, prepared.mirroring)
    else:
        bench.warm_up(prepared.repo)
    if prepared.changed:
        changed_line.publish_once(bench, prepared.changed)
    if prepared.scale and seeded:
        seeded.result()
        scale.warm_up(bench, prepared.scale)
    if prepared.referrers:
        referrers.warm_up(bench, prepared.referrers)
    if prepared.large:
        large_images.seed(prepared.large)
        large_images.warm_up(bench, prepared.large)
    if prepared.before_after:
        before_after.seed(prepared.before_after)
        before_after.warm_up(bench, prepared.before_after)
    if prepared.platforms:
        platforms.seed(prepared.platforms)
        platforms.warm_up(bench, prepared.platforms)
    if prepared.air_gap:
        air_gap.seed(prepared.air_gap)  # its pantsd starts in each run, on fresh caches


def prepare(bench: Bench, sizes: Sizes, wanted: Sequence[str], before: Path | None) -> Prepared:
    """Writes the mirror repository (a git repository: changed/ runs `--changed-since`) with the
    wanted scenarios' directories, and starts their registries."""
    mirror_repo = bench.repo("mirror")
    prepared = Prepared(
        mirror_repo,
        mirroring.prepare(bench, mirror_repo, sizes.images) if "mirroring" in wanted else None,
        changed_line.prepare(bench, mirror_repo, sizes.changed) if "changed" in wanted else None,
        scale.prepare(bench, mirror_repo, sizes.scale) if "scale" in wanted else None,
        referrers.prepare(bench, mirror_repo, sizes.referrers) if "referrers" in wanted else None,
        large_images.prepare(bench, mirror_repo, sizes.large) if "large" in wanted else None,
        before_after.prepare(bench, mirror_repo, sizes.before_after, before)
        if "before_after" in wanted and before
        else None,
        platforms.prepare(bench, mirror_repo, sizes.platforms) if "platforms" in wanted else None,
        air_gap.prepare(bench, sizes.air_gap) if "air_gap" in wanted else None,
    )
    mirror_repo.write({"BUILD": ""})  # so that a repository with no scenario in it still lists
    mirror_repo.git("init", "-q")
    mirror_repo.git("add", "-A")
    mirror_repo.git("commit", "-qm", "initial")
    return prepared


def run_all(bench: Bench, sizes: Sizes, wanted: Sequence[str], before: Path | None = None) -> Results:
    machine = machine_notes()
    # Untimed set-up, side by side: seed the registries and start every daemon.
    progress(f"set-up: seeding registries, starting daemons ({', '.join(wanted)})")
    # Warm rows run in two repositories with a daemon each. `gen` holds every size and side of
    # the generation benchmark (26,600 targets at full size); `mirror`, a git repository, holds
    # build/, copy/, changed/ and scale/. They are kept apart because a daemon that holds many
    # targets makes every run slower, even runs about other targets (measured: a re-mirror took
    # about twice as long next to the generation targets).
    gen_repo = bench.repo("gen")
    if "generation" in wanted:
        generation.write_warm(gen_repo, sizes.generation)
    prepared = prepare(bench, sizes, wanted, before)
    mirror_repo = prepared.repo
    with side_by_side() as pool:
        seeded = pool.submit(scale.seed, prepared.scale) if prepared.scale else None
        futures = [
            *([seeded] if seeded else []),
            *([pool.submit(bench.warm_up, gen_repo)] if "generation" in wanted else []),
            pool.submit(warm_up_mirror_repository, bench, prepared, seeded),
        ]
    for future in futures:
        future.result()
    bench.mark_daemon(mirror_repo)
    setup = since_start()
    progress("set-up done; timing from here, one thing at a time")

    pants_startup = startup.run_scenario(bench, mirror_repo)
    sections = []
    if "generation" in wanted:
        sections.append(generation.run_cold(bench, sizes.cold_size, sizes.cold_runs))
        sections.append(generation.run_warm(bench, gen_repo, sizes.generation, sizes.warm_runs, sizes.cold_size))
        bench.check_daemon(gen_repo, "the warm generation runs")
        bench.stop_daemon(gen_repo)
    if prepared.mirroring:
        sections.append(mirroring.run_scenario(bench, prepared.mirroring, sizes.mirror_runs, pants_startup))
        bench.check_daemon(mirror_repo, "the mirroring runs")
    if prepared.changed:
        sections.append(changed_line.run_scenario(bench, prepared.changed))
    if prepared.scale:
        sections.append(scale.run_scenario(bench, prepared.scale, pants_startup))
    if prepared.referrers:
        sections.append(referrers.run_scenario(bench, prepared.referrers))
        bench.check_daemon(mirror_repo, "the referrers runs")
    if prepared.before_after:
        sections.append(before_after.run_scenario(bench, prepared.before_after))
    if prepared.platforms:
        sections.append(platforms.run_scenario(bench, prepared.platforms))
    if prepared.air_gap:
        sections.append(air_gap.run_scenario(bench, prepared.air_gap))
    if prepared.large:
        # Last: it leaves the daemon with a raised process limit.
        sections.append(large_images.run_scenario(bench, prepared.large))
    bench.stop_daemon(mirror_repo)
    return Results(machine, setup, pants_startup, sections)


def up_to(sizes: Sizes, largest: int) -> Sizes:
    """`sizes` with copy mode at scale and with referrers stopped at `largest` images, one run
    per row: their first-mirror, latency and cold rows at the largest size kept."""
    kept = tuple(i for i, size in enumerate(sizes.scale.sizes) if size <= largest)
    if not kept:
        raise SystemExit(f"--up-to {largest}: the smallest scale size is {sizes.scale.sizes[0]}")
    top = sizes.scale.sizes[kept[-1]]
    return dataclasses.replace(
        sizes,
        scale=dataclasses.replace(
            sizes.scale,
            sizes=tuple(sizes.scale.sizes[i] for i in kept),
            first_runs=tuple(1 for _ in kept),
            noop_runs=1,
            cold_size=min(sizes.scale.cold_size, top),
            first_size=min(sizes.scale.first_size, top),
            wan_size=min(sizes.scale.wan_size, top),
            wan_runs=1,
            wan_parallelism=sizes.scale.wan_parallelism[:1],
        ),
        referrers=dataclasses.replace(
            sizes.referrers, sizes=tuple(s for s in sizes.referrers.sizes if s <= largest)[-1:], noop_runs=1
        ),
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: checks the harness")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "RESULTS.md"))
    parser.add_argument(
        "--only", choices=SCENARIOS, action="append", help="run this scenario (repeatable), with the start-up one"
    )
    parser.add_argument(
        "--up-to",
        type=int,
        metavar="N",
        help="copy mode at scale and with referrers stop at N images (the 1,000-image rows take about "
        "ten minutes), one run per row",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of this repository whose plugin is the \"before\" side of `--only before_after`",
    )
    args = parser.parse_args()
    wanted = tuple(args.only or DEFAULT_SCENARIOS)
    if ("before_after" in wanted) != (args.before is not None):
        parser.error("--only before_after and --before go together")
    # A SIGTERM ends the run through the `finally` below, so the daemons and registries stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="docker-mirror-bench-") as tmp:
        bench = Bench(Path(tmp).resolve())
        try:
            sizes = QUICK if args.quick else FULL
            results = run_all(bench, up_to(sizes, args.up_to) if args.up_to else sizes, wanted,
                              args.before and args.before.resolve())
        finally:
            bench.close()
    total = since_start()
    load_after = os.getloadavg()[0]

    report = Report(
        command="benchmarks/run" + (" --quick" if args.quick else "") + "".join(f" --only {s}" for s in args.only or ())
        + (f" --up-to {args.up_to}" if args.up_to else "")
        + (" --before CHECKOUT" if args.before else ""),
        total=total,
        setup=results.setup,
        modes=MODES,
        machine=[
            *results.machine,
            f"- load average (1 min) at start and end: {load_before:.2f}, {load_after:.2f} "
            "(other work on the machine makes timings noisier)",
            *bench.warnings,
        ],
        time_goes=results.startup.lines,
        sections=results.sections,
    ).markdown()
    Path(args.output).write_text(report)
    print(report)
    print(f"total: {total:.0f} s ({total / 60:.1f} minutes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
