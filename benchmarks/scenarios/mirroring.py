"""First mirror and re-mirror of N small images between two loopback registries: our build
method, our copy method, a shell loop of `docker pull/tag/push`, and `skopeo sync`; for the
re-mirror, also the requests each sent and the processes Pants ran (`--stats-log`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.registries import Registry

from benchmarks.baselines import docker_loop, forget_local_images, seed_images, skopeo_sync
from benchmarks.harness import Bench, Measured, measure, median, progress, seconds, side_by_side, spread
from benchmarks.report import Section, Table, verdict
from benchmarks.scenarios.startup import Startup

PANTS_BUILD = "pants publish, method=build"
PANTS_COPY = "pants publish, method=copy"
PANTS_COPY_COLD = "pants publish, method=copy, cold (`--no-pantsd`, 1 run)"
DOCKER_LOOP = "docker pull/tag/push loop"
SKOPEO_SYNC = "skopeo sync --all"
USES_ENGINE = (PANTS_BUILD, DOCKER_LOOP)  # forget the engine's images before their first mirror
REMIRROR_TARGET = 1.2  # copy method against `skopeo sync`

PANTS_STATS_NOTE = (
    "Pants rows run with a warm pantsd unless marked cold. \"processes Pants ran\" and their summed "
    "run time are `--stats-log`'s `local_execution_requests` and `local_process_total_time_run_ms` "
    "(processes run in parallel, so the sum can exceed the wall time)."
)


@dataclass(frozen=True)
class Mirroring:
    upstream: Registry
    references: tuple[str, ...]
    repo: PantsRepo  # build/ holds the build-method generator, copy/ the copy-method one


def prepare(bench: Bench, repo: PantsRepo, count: int) -> Mirroring:
    """Untimed: starts the upstream registry and writes build/ and copy/ (`warm_up` seeds it)."""
    upstream = bench.registry("upstream")
    references = tuple(f"{upstream.address}/bench/img{i:02d}:1.{i}" for i in range(count))
    spec = "".join(f"{ref}\n" for ref in references)
    for method in ("build", "copy"):
        repo.write(
            {
                f"{method}/BUILD": f"docker_mirror_images(name='mirror', sources=['images.txt'], method='{method}')\n",
                f"{method}/images.txt": spec,
            }
        )
    return Mirroring(upstream, references, repo)


def warm_up(bench: Bench, setup: Mirroring) -> None:
    """Untimed: starts the repository's daemon while the upstream is seeded, then packages
    build/ and copy/ once, so that the first timed publish is not also the daemon's first build
    (Pants runs some processes once per daemon: finding binaries and interpreters)."""
    with side_by_side() as pool:
        futures = [pool.submit(bench.warm_up, setup.repo), pool.submit(seed_images, setup.references)]
    for future in futures:
        future.result()
    bench.pants(setup.repo, "package", "build::", "copy::")
    progress(f"upstream seeded with {len(setup.references)} images; build/ and copy/ packaged once")


def pants_publish(bench: Bench, setup: Mirroring, target: str, daemon: bool = True) -> Callable[[Registry], str]:
    return lambda dest: bench.pants(setup.repo, "--stats-log", "publish", target, registry=dest, daemon=daemon)


def methods(bench: Bench, setup: Mirroring) -> dict[str, Callable[[Registry], str]]:
    """Each method, mirroring every reference into a given destination registry."""
    return {
        PANTS_BUILD: pants_publish(bench, setup, "build::"),
        PANTS_COPY: pants_publish(bench, setup, "copy::"),
        DOCKER_LOOP: lambda dest: docker_loop(setup.references, dest),
        SKOPEO_SYNC: lambda dest: skopeo_sync(bench.work / "skopeo-sync.yaml", setup.references, dest),
    }


def run_scenario(bench: Bench, setup: Mirroring, runs: int, startup: Startup) -> Section:
    """Tables 2 and 3. Each method and run mirrors into a new empty destination, then again."""
    mirror = methods(bench, setup)
    copy_cold = pants_publish(bench, setup, "copy::", daemon=False)
    first: dict[str, list[Measured]] = {name: [] for name in mirror}
    again: dict[str, list[Measured]] = {name: [] for name in mirror}
    again[PANTS_COPY_COLD] = []
    for run_number in range(runs):
        for name, method in mirror.items():
            if name in USES_ENGINE:
                forget_local_images(setup.references)
            dest = bench.registry("dest")
            watched = {"source": setup.upstream, "destination": dest}
            try:
                first[name].append(measure(lambda: method(dest)))
                again[name].append(measure(lambda: method(dest), watched))
                if name == PANTS_COPY and run_number == runs - 1:
                    again[PANTS_COPY_COLD].append(measure(lambda: copy_cold(dest), watched))
            finally:
                bench.stop_registry(dest)
        progress(
            f"mirroring run {run_number + 1}: "
            + ", ".join(
                f"{name.split(',')[-1].strip()} {first[name][-1].seconds:.1f}/{again[name][-1].seconds:.1f} s"
                for name in mirror
            )
        )
    count = len(setup.references)
    order = [PANTS_BUILD, PANTS_COPY, PANTS_COPY_COLD, DOCKER_LOOP, SKOPEO_SYNC]
    tables = (
        mirror_table(f"2. First mirror of {count} small images ({runs} runs each)", first, order, False),
        mirror_table(
            f"3. Re-mirror of the same {count} images when nothing changed ({runs} runs each)", again, order, True
        ),
    )
    return Section(tables, (remirror_target(again, startup),))


def mirror_table(title: str, data: Mapping[str, Sequence[Measured]], order: Sequence[str], with_traffic: bool) -> Table:
    times = {name: [m.seconds for m in runs] for name, runs in data.items()}
    best_alternative = min(median(v) for k, v in times.items() if not k.startswith("pants"))
    columns = ["method", "median", "runs (s)", "ratio to best alternative", "processes Pants ran", "their run time, summed"]
    if with_traffic:
        columns += ["registry requests", "blob uploads", "manifest PUTs"]
    rows = []
    for name in [name for name in order if name in data]:
        values = times[name]
        row = [name, seconds(values), spread(values), f"{median(values) / best_alternative:.2f}x"]
        if name.startswith("pants"):
            stats = [m.stats() for m in data[name]]
            row += [
                "/".join(sorted({str(s.processes) for s in stats})),
                f"{median([s.process_ms / 1000 for s in stats]):.2f} s",
            ]
        else:
            row += ["—", "—"]
        if with_traffic:
            traffic = data[name][-1].requests  # the last run's, at the source and destination
            row += [str(traffic.requests), str(traffic.blob_uploads), str(traffic.manifest_puts)]
        rows.append(tuple(row))
    return Table(title, tuple(columns), tuple(rows), (PANTS_STATS_NOTE,))


def remirror_target(again: Mapping[str, Sequence[Measured]], startup: Startup) -> str:
    warm = median([m.seconds for m in again[PANTS_COPY]])
    cold = median([m.seconds for m in again[PANTS_COPY_COLD]])
    skopeo = median([m.seconds for m in again[SKOPEO_SYNC]])
    ratio = warm / skopeo
    line = (
        f"- Re-mirror, copy method <= {REMIRROR_TARGET}x `skopeo sync`: warm {warm:.2f} s against {skopeo:.2f} s, "
        f"{ratio:.1f}x, {verdict(ratio <= REMIRROR_TARGET)}; cold {cold:.2f} s ({cold / skopeo:.0f}x)."
    )
    if ratio > REMIRROR_TARGET:
        stats = again[PANTS_COPY][-1].stats()
        line += (
            f" What limits it: a warm Pants command costs {startup.warm_version:.2f} s before any work "
            f"(`pants --version`; the client's imports alone take {startup.client_import:.2f} s), and the re-mirror "
            f"runs {stats.processes} processes ({stats.process_ms / 1000:.2f} s of process time summed) where `skopeo sync` "
            f"is one process; cold, the {startup.cold_start:.0f} s start-up (rule-graph construction, see the profile) dominates."
        )
    return line
