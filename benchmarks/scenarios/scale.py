"""Copy mode at scale against `skopeo sync --all` (issue 11): a first mirror and a no-op
re-mirror of N single-platform images (N = 20, 200 and 1,000), with the marginal cost per image,
the manifest GETs and HEADs each registry's access log records, blob uploads and manifest PUTs,
the processes Pants ran and the CPU each side used; and a first mirror of 200 images with 20 ms
added to every round trip by a delaying proxy in front of both registries, for both tools.

Only `pants publish` of a `method="copy"` generator is run, as a user runs it: nothing here
depends on how the plugin runs its copies. Each size has a generator of its own (`scale/n<N>/`,
the first N lines of one list), in the mirror repository and its warm pantsd. Every line is an
image in a repository of its own (`bench/img0042:1.42`), as in real lists; the repositories
share a few distinct images, tagged into each by cross-repository blob mounts (cheap to seed).
Each first mirror writes into a new empty destination registry, and the no-op runs re-mirror
into that one.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import time
import urllib.request
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from docker_mirror_testutil.images import make_image
from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.registries import MANIFEST_MEDIA_TYPES, Registry, Traffic
from docker_mirror_testutil.tcp_proxy import DelayingProxy

from benchmarks.baselines import skopeo_sync
from benchmarks.harness import (
    Bench,
    Copier,
    SAMPLE_INTERVAL,
    Concurrency,
    Cpu,
    Measured,
    blob_writes,
    clients,
    measure,
    median,
    progress,
    sampling,
    timed,
    slope,
    spread,
)
from benchmarks.report import Section, Table, verdict
from benchmarks.scenarios.startup import Startup

PANTS = "pants publish, method=copy"
PANTS_COLD = "pants publish, method=copy, cold (`--no-pantsd`, 1 run)"
SKOPEO = "skopeo sync --all"
TOOLS = (PANTS, SKOPEO)
DISTINCT_IMAGES = 4  # the lines' repositories share these
DELAY = 0.01  # seconds per direction: 20 ms more per round trip
# What each tool copies with: its processes alive at once are sampled. Pants' is the probe (a
# venv's python, known by its request file); skopeo sync's, skopeo.
PROBE = Copier("probe", argument=b"probe-request.json")  # util_rules/registry_reads.py's REQUEST_FILE
SKOPEO_COPIER = Copier("skopeo", comm="skopeo")

# The targets.
NOOP_SLOPE_TARGET = 0.5  # no-op marginal cost per image, against skopeo sync's
FIRST_TARGET = 1.5  # first mirror on loopback, wall time against skopeo sync's
WAN_TARGET = 0.3  # first mirror with 20 ms per round trip
LARGE_NOOP_TARGET = 15.0  # seconds, a no-op re-mirror of the largest size, warm, on 2 cores


@dataclass(frozen=True)
class ScaleSizes:
    sizes: tuple[int, ...]  # ascending; the 20, 200, 1,000
    first_runs: tuple[int, ...]  # first mirrors per size, each into a new destination
    noop_runs: int  # no-op re-mirrors per size (one after each first mirror, the rest after the last)
    cold_size: int  # the size of the one cold no-op row
    first_size: int  # the size the first-mirror target is checked at (200)
    wan_size: int  # the first mirror with latency (200)
    wan_runs: int
    wan_parallelism: tuple[int, ...]  # raised `process_execution_local_parallelism` rows


@dataclass(frozen=True)
class Scale:
    repo: PantsRepo  # the mirror repository, with its pantsd
    upstream: Registry
    upstream_proxy: DelayingProxy  # in front of `upstream`, for the whole run
    references: tuple[str, ...]  # the largest size's lines; size N uses the first N
    wan_references: tuple[str, ...]  # the latency rows' lines, through `upstream_proxy`
    sizes: ScaleSizes


def reference(address: str, i: int) -> str:
    return f"{address}/bench/img{i:04d}:1.{i}"


def directory(size: int) -> str:
    return f"scale/n{size}"


WAN_DIRECTORY = "scale/wan"


def prepare(bench: Bench, repo: PantsRepo, sizes: ScaleSizes) -> Scale:
    """Untimed: starts the upstream registry and the proxy in front of it, and writes one
    generator per size and one for the latency rows (whose lines name the proxy's address).
    `warm_up` seeds the upstream."""
    upstream = bench.registry("scale-upstream")
    proxy = bench.proxy(upstream.address, DELAY)
    references = tuple(reference(upstream.address, i) for i in range(max(sizes.sizes)))
    wan = tuple(reference(proxy.address, i) for i in range(sizes.wan_size))
    generator = "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy')\n"
    for size in sizes.sizes:
        repo.write(
            {f"{directory(size)}/BUILD": generator, f"{directory(size)}/images.txt": "".join(f"{r}\n" for r in references[:size])}
        )
    # The latency lines name the proxy, so they are other sources for the same destination tags:
    # a repository of their own keeps the generators from clashing.
    wan_generator = generator.replace("method='copy'", "method='copy', repository='wan/{target_repository}'")
    repo.write({f"{WAN_DIRECTORY}/BUILD": wan_generator, f"{WAN_DIRECTORY}/images.txt": "".join(f"{r}\n" for r in wan)})
    return Scale(repo, upstream, proxy, references, wan, sizes)


def seed(setup: Scale) -> None:
    """A few distinct images, made offline, then every line's repository and tag (blob mounts
    and a manifest PUT each, four at a time)."""
    count = max(len(setup.references), len(setup.wan_references))
    for j in range(DISTINCT_IMAGES):
        make_image(f"{setup.upstream.address}/bench/seed{j}:1", f"scale bench image {j}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(
                setup.upstream.put_tag_into, f"bench/seed{i % DISTINCT_IMAGES}", "1", f"bench/img{i:04d}", f"1.{i}"
            )
            for i in range(count)
        ]
    for future in futures:
        future.result()


def warm_up(bench: Bench, setup: Scale) -> None:
    """Untimed, in the repository's running daemon (after `seed`): packages every scale
    generator once against a throwaway destination, so that the first timed publish is not the
    daemon's first look at these targets."""
    dest = bench.registry("scale-warm-up")
    try:
        bench.pants(setup.repo, "package", "scale::", registry=dest)
    finally:
        bench.stop_registry(dest)
    progress(f"scale/: {len(setup.references)} images seeded, generators packaged once")


def round_trip_ms(address: str, repository: str, tag: str, runs: int = 5) -> float:
    """The median time of a manifest HEAD on a new connection to `address`, in ms."""
    times = []
    for _ in range(runs):
        request = urllib.request.Request(
            f"http://{address}/v2/{repository}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_MEDIA_TYPES}
        )
        start = time.perf_counter()
        urllib.request.urlopen(request, timeout=10).close()
        times.append((time.perf_counter() - start) * 1000)
    return median(times)


# ------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class WanRun:
    """One first mirror through the delaying proxies."""

    measured: Measured
    connections: int  # accepted by the two proxies
    up: int  # bytes towards the registries
    down: int  # bytes back
    copiers: Concurrency  # the tool's `skopeo` processes alive at once, sampled


@dataclass
class Runs:
    first: dict[str, dict[int, list[Measured]]]
    noop: dict[str, dict[int, list[Measured]]]
    cold: list[Measured]
    wan: dict[str, list[WanRun]]  # by row: PANTS, the raised-parallelism rows, SKOPEO


def parallelism_option(processes: int) -> str:
    return f"--process-execution-local-parallelism={processes}"


def raised(processes: int) -> str:
    """The row of a latency run with Pants' process limit raised to `processes`."""
    return f"{PANTS}, `process_execution_local_parallelism = {processes}`"


def wan_rows(sizes: ScaleSizes) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(row, Pants options) of the latency runs, in the order they run: the defaults first, so
    the raised rows' daemon restarts come after them."""
    return (
        (PANTS, ()),
        (SKOPEO, ()),
        *((raised(p), (parallelism_option(p),)) for p in sizes.wan_parallelism),
    )


def run_scenario(bench: Bench, setup: Scale, startup: Startup) -> Section:
    repo, sizes = setup.repo, setup.sizes
    runs = Runs(
        {t: {n: [] for n in sizes.sizes} for t in TOOLS},
        {t: {n: [] for n in sizes.sizes} for t in TOOLS},
        [],
        {row: [] for row, _ in wan_rows(sizes)},
    )

    def tool(
        name: str, references: Sequence[str], target: str, daemon: bool = True, options: Sequence[str] = ()
    ) -> Callable[[Registry], str]:
        if name == SKOPEO:
            return lambda dest: skopeo_sync(bench.work / "scale-sync.yaml", references, dest)
        return lambda dest: bench.pants(repo, *options, "--stats-log", "publish", f"{target}::", registry=dest, daemon=daemon)

    def checked(measured: Measured, what: str, puts: int) -> Measured:
        """A run that did not write what it should have makes its row wrong: say so."""
        written = measured.traffic["destination"].manifest_puts
        if written != puts:
            bench.warnings.append(f"- {what}: {written} manifest PUTs at the destination, not {puts}.")
        return measured

    for size, first_runs in zip(sizes.sizes, sizes.first_runs):
        references = setup.references[:size]
        for run_number in range(first_runs):
            last = run_number == first_runs - 1
            for name in TOOLS:
                mirror = tool(name, references, directory(size))
                dest = bench.registry("scale-dest")
                watched = {"source": setup.upstream, "destination": dest}
                daemons = repo.daemon_pids() if name == PANTS else []
                try:
                    first = measure(lambda: mirror(dest), watched, daemons)
                    runs.first[name][size].append(checked(first, f"{name}, first mirror of {size}", size))
                    for _ in range(max(1, sizes.noop_runs - first_runs + 1) if last else 1):
                        noop = measure(lambda: mirror(dest), watched, daemons)
                        runs.noop[name][size].append(checked(noop, f"{name}, no-op re-mirror of {size}", 0))
                    if name == PANTS and last and size == sizes.cold_size:
                        cold = tool(name, references, directory(size), daemon=False)
                        runs.cold.append(checked(measure(lambda: cold(dest), watched), f"{PANTS_COLD} of {size}", 0))
                finally:
                    bench.stop_registry(dest)
            progress(
                f"scale, {size} images, run {run_number + 1}: "
                + ", ".join(
                    f"{name.split(',')[0]} {runs.first[name][size][-1].seconds:.1f}/{runs.noop[name][size][-1].seconds:.1f} s"
                    for name in TOOLS
                )
            )

    bench.check_daemon(repo, "the scale runs on loopback")
    direct_ms = round_trip_ms(setup.upstream.address, "bench/img0000", "1.0")
    proxied_ms = round_trip_ms(setup.upstream_proxy.address, "bench/img0000", "1.0")
    current: tuple[str, ...] = ()  # the options the daemon runs with
    for run_number in range(sizes.wan_runs):
        for row, options in wan_rows(sizes):
            name = SKOPEO if row == SKOPEO else PANTS
            if name == PANTS and options != current:
                bench.check_daemon(repo, f"the latency runs with {' '.join(current) or 'the default options'}")
                restart_with(bench, setup, options)
                current = options
            mirror = tool(name, setup.wan_references, WAN_DIRECTORY, options=options)
            runs.wan[row].append(wan_run(bench, setup, name, mirror))
            progress(
                f"scale, {sizes.wan_size} images with {DELAY * 2000:.0f} ms per round trip, run {run_number + 1}, "
                f"{row}: {runs.wan[row][-1].measured.seconds:.1f} s"
            )
    # The daemon keeps the last options: this scenario runs last, and the daemon is stopped after it.
    bench.check_daemon(repo, f"the latency runs with {' '.join(current) or 'the default options'}")
    found = targets(runs, sizes, startup)
    return Section(
        (
            scale_table("5. No-op re-mirror of N images already mirrored", runs.noop, runs.cold, sizes, noop=True),
            scale_table("6. First mirror of N images into an empty registry", runs.first, [], sizes, noop=False),
            wan_table(runs.wan, sizes, direct_ms, proxied_ms),
            wan_profile(runs.wan, sizes),
        ),
        tuple(t.line() for t in found),
        (targets_table(found),),
    )


def restart_with(bench: Bench, setup: Scale, options: Sequence[str]) -> None:
    """Untimed: one `publish` of the latency generator with `options` into a throwaway
    destination (on loopback, no proxy), so that the timed run after it finds a pantsd that runs
    with them and has run every kind of process it needs once (pantsd builds its scheduler again
    when options that shape it change, such as the process limit: the same pid, none of its
    per-daemon work kept)."""
    before = setup.repo.daemon_pids()
    dest = bench.registry("wan-warm-up")
    try:
        took = timed(lambda: bench.pants(setup.repo, *options, "publish", f"{WAN_DIRECTORY}::", registry=dest))
    finally:
        bench.stop_registry(dest)
    bench.mark_daemon(setup.repo)
    pid = "a new pid" if setup.repo.daemon_pids() != before else "the same pid"
    progress(f"pantsd taken to {' '.join(options) or 'the default options'} by an untimed publish, {took:.0f} s ({pid})")


def wan_run(bench: Bench, setup: Scale, name: str, mirror: Callable[[Registry], str]) -> WanRun:
    """One first mirror of the latency generator through a proxy in front of the upstream (for
    the whole scenario) and one in front of a new empty destination; the access logs are the
    real registries'. The copying processes alive at once are sampled below the tool's process
    (pantsd's, or this process's for skopeo sync)."""
    dest = bench.registry("wan-dest")
    dest_proxy = bench.proxy(dest.address, DELAY)
    via_proxy = dataclasses.replace(dest, address=dest_proxy.address)  # only its address is used
    proxies = (setup.upstream_proxy, dest_proxy)
    daemons = setup.repo.daemon_pids() if name == PANTS else []
    try:
        before = [(p.stats.connections, p.stats.bytes_up, p.stats.bytes_down) for p in proxies]
        with sampling(daemons or [os.getpid()], PROBE if daemons else SKOPEO_COPIER) as copiers:
            measured = measure(lambda: mirror(via_proxy), {"source": setup.upstream, "destination": dest}, daemons)
        after = [(p.stats.connections, p.stats.bytes_up, p.stats.bytes_down) for p in proxies]
    finally:
        bench.stop_proxy(dest_proxy)
        bench.stop_registry(dest)
    connections, up, down = (sum(a[k] - b[k] for a, b in zip(after, before)) for k in range(3))
    written = measured.traffic["destination"].manifest_puts
    if written != len(setup.wan_references):
        bench.warnings.append(f"- {name}, first mirror with latency: {written} manifest PUTs, not {len(setup.wan_references)}.")
    return WanRun(measured, connections, up, down, copiers())


# ------------------------------------------------------------------------------------------
# Tables


def per_registry(data: Sequence[Measured], pick: Callable[[Traffic], int]) -> str:
    """Source / destination, from the last run."""
    last = data[-1].traffic
    return f"{pick(last['source'])} / {pick(last['destination'])}"


def blobs(data: Sequence[Measured]) -> str:
    """Blobs uploaded / mounted at the destination, in the last run."""
    uploaded, mounted = blob_writes(data[-1].log["destination"])
    return f"{uploaded} / {mounted}"


def pants_stats(data: Sequence[Measured]) -> tuple[str, str]:
    stats = [m.stats() for m in data]
    return "/".join(sorted({str(s.processes) for s in stats}, key=int)), f"{median([s.process_ms / 1000 for s in stats]):.2f} s"


def cpu(data: Sequence[Measured]) -> str:
    """Medians: the tool's CPU (for Pants: client + pantsd's own + the processes it ran) / the
    registries'."""
    runs = [m.cpu for m in data if m.cpu]
    tool = f"{median([c.tool for c in runs]):.1f} s"
    if any(c.daemon or c.daemon_processes for c in runs):
        parts = (median([c.command for c in runs]), median([c.daemon for c in runs]), median([c.daemon_processes for c in runs]))
        tool += " (" + " + ".join(f"{p:.1f}" for p in parts) + ")"
    return f"{tool} / {median([c.registries for c in runs]):.1f} s"


def wall(data: Sequence[Measured]) -> float:
    return median([m.seconds for m in data])


def common_row(name: str, data: Sequence[Measured]) -> list[str]:
    processes, process_time = pants_stats(data) if name != SKOPEO else ("—", "—")
    return [
        per_registry(data, lambda t: t.manifest_gets),
        per_registry(data, lambda t: t.manifest_heads),
        blobs(data),
        str(data[-1].traffic["destination"].manifest_puts),
        processes,
        process_time,
        cpu(data),
    ]


COMMON_COLUMNS = (
    "manifest GETs (source / destination)",
    "manifest HEADs (source / destination)",
    "blobs uploaded / mounted at the destination",
    "manifest PUTs at the destination",
    "processes Pants ran",
    "their run time, summed",
    "CPU: tool / registries",
)

NOTES = (
    "Requests are counted in the real registries' access logs (the last run's): a manifest GET is "
    "what Docker Hub counts as a pull, a HEAD is not. A blob mounted is one the destination had in another "
    "repository, linked without sending it (both tools ask for mounts where they know a blob's location). "
    "\"processes Pants ran\" and their summed run time are `--stats-log`'s `local_execution_requests` "
    "and `local_process_total_time_run_ms`. CPU is user + system time (medians): the tool's, for warm Pants "
    "rows split as (the client + pantsd's own, its rules + the processes pantsd ran), for skopeo sync and "
    "cold Pants the process and its children; then the two registries' processes. "
    "Both tools run on the same 2-core machine as the registries, so CPU one spends slows the others.",
)


def scale_table(
    title: str,
    data: Mapping[str, Mapping[int, Sequence[Measured]]],
    cold: Sequence[Measured],
    sizes: ScaleSizes,
    noop: bool,
) -> Table:
    rows = []
    for name in TOOLS:
        previous: tuple[int, float] | None = None
        for size in sizes.sizes:
            measured = data[name][size]
            point = (size, wall(measured))
            marginal = f"{slope(previous, point) * 1000:.1f} ms" if previous else "—"
            ratio = wall(measured) / wall(data[SKOPEO][size])
            rows.append(
                (name, f"{size:,}", f"{point[1]:.2f} s", spread([m.seconds for m in measured]), marginal, f"{ratio:.2f}x", *common_row(name, measured))
            )
            previous = point
            if name == PANTS and size == sizes.cold_size and cold:
                ratio = wall(cold) / wall(data[SKOPEO][size])
                rows.append((PANTS_COLD, f"{size:,}", f"{wall(cold):.2f} s", spread([m.seconds for m in cold]), "—", f"{ratio:.2f}x", *common_row(PANTS, cold)))
    runs = ", ".join(f"{len(data[PANTS][n])} at {n:,}" for n in sizes.sizes)
    how = (
        "Each size's first mirror writes into a new empty destination registry; the no-op runs "
        "re-mirror into it, right after."
        if noop
        else "Each run writes into a new empty destination registry."
    )
    return Table(
        f"{title} (runs per tool: {runs})",
        ("tool", "N", "median", "runs (s)", "marginal per image (from the size above)", "ratio to skopeo sync", *COMMON_COLUMNS),
        tuple(rows),
        (
            f"Each line is an image in a repository of its own; the {DISTINCT_IMAGES} distinct images "
            f"they share are tagged into each repository by blob mounts. {how} Pants rows: warm pantsd "
            "unless marked cold, one `docker_mirror_images` generator per size.",
            *NOTES,
        ),
    )


def wan_table(wan: Mapping[str, Sequence[WanRun]], sizes: ScaleSizes, direct_ms: float, proxied_ms: float) -> Table:
    rows = []
    skopeo = wall([r.measured for r in wan[SKOPEO]])
    for row, data in wan.items():
        measured = [r.measured for r in data]
        last = data[-1]
        rows.append(
            (
                row,
                f"{wall(measured):.2f} s",
                spread([m.seconds for m in measured]),
                f"{wall(measured) / skopeo:.2f}x",
                *common_row(SKOPEO if row == SKOPEO else PANTS, measured),
                f"{last.connections} / {last.up / 2**20:.1f} / {last.down / 2**20:.1f}",
            )
        )
    return Table(
        f"7. First mirror of {sizes.wan_size:,} images with {DELAY * 2000:.0f} ms added to every round trip "
        f"({sizes.wan_runs} run{'s' if sizes.wan_runs > 1 else ''} per row)",
        ("tool", "median", "runs (s)", "ratio to skopeo sync", *COMMON_COLUMNS, "through the proxies: connections / MiB up / MiB down"),
        tuple(rows),
        (
            f"A delaying TCP proxy (`docker_mirror_testutil.tcp_proxy`, in the harness's process) in front "
            f"of each registry holds every chunk {DELAY * 1000:.0f} ms in each direction, without a bandwidth "
            f"limit; both tools are pointed at the proxies' addresses (the spec lines and the destination "
            f"option for Pants, the sync list and destination for skopeo), and each run writes into a new "
            f"empty destination. A manifest HEAD on a new connection takes {proxied_ms:.1f} ms through the "
            f"proxy against {direct_ms:.1f} ms direct (median of 5). The first two rows use default settings; "
            f"the rows with `process_execution_local_parallelism` raise Pants' limit on processes run at once "
            f"(default: one per core), each after an untimed publish with it into a throwaway destination: pantsd "
            f"builds its scheduler again when the option changes.",
            *NOTES,
        ),
    )


def wan_profile_row(row: str, data: Sequence[WanRun], images: int) -> tuple[str, ...]:
    """Where a latency run's time goes, from its last run: processes and their run time, how
    long and how many at once copies ran, the rest, and the requests it sent."""
    last = data[-1]
    m, copiers = last.measured, last.copiers
    if row == SKOPEO:
        processes, summed, each = "1", "—", "—"
    else:
        stats = m.stats()
        per = stats.process_ms / 1000 / max(stats.processes, 1)
        processes, summed, each = str(stats.processes), f"{stats.process_ms / 1000:.1f} s", f"{per:.2f} s"
    return (
        row,
        f"{m.seconds:.1f} s",
        processes,
        summed,
        each,
        f"{copiers.busy_seconds:.1f} s",
        f"{copiers.busy_mean:.1f} / {copiers.peak}",
        f"{max(m.seconds - copiers.busy_seconds, 0):.1f} s",
        f"{m.requests.requests / images:.1f}",
        f"{m.requests.requests * DELAY * 2 / images * 1000:.0f} ms",
        f"{m.seconds / images * 1000:.0f} ms",
    )


def wan_profile(wan: Mapping[str, Sequence[WanRun]], sizes: ScaleSizes) -> Table:
    return Table(
        "7a. Profile of table 7: where a first mirror with latency spends its time (the last run of each row)",
        (
            "tool",
            "wall",
            "processes Pants ran",
            "their run time, summed",
            "per process",
            "copying: time with a copy process alive (the probe; skopeo for skopeo sync)",
            "copy processes alive at once while copying: mean / peak",
            "the rest of the wall time, no copy alive (client, rules, process set-up)",
            "requests per image (both registries)",
            f"their round trips per image ({DELAY * 2000:.0f} ms each)",
            "wall per image",
        ),
        tuple(wan_profile_row(row, data, sizes.wan_size) for row, data in wan.items()),
        (
            f"The tool's copy processes are counted every {SAMPLE_INTERVAL} s among its own descendants "
            "(pantsd's probes, known by their request file; the harness's `skopeo` for skopeo sync), so other "
            "work on the machine does not count. Pants runs one probe per image, as many at once as its "
            "process limit allows; each starts Python and opens its own connections. skopeo sync copies one "
            "image after another in one process, so its wall per image is of the order of its round trips per "
            "image (its requests', and a TCP handshake for each new connection: table 7 counts them).",
        ),
    )


# ------------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, as measured: a row of the targets table, and its line."""

    target: str
    measured: str
    met: bool
    why: str = ""  # what limits it, measured, when it is not met (or more to say)

    def row(self) -> tuple[str, str, str]:
        return (self.target, self.measured, "met" if self.met else "not met")

    def line(self) -> str:
        return f"- {self.target}: {self.measured}, {verdict(self.met)}." + (f" {self.why}" if self.why else "")


def targets_table(found: Sequence[Target]) -> Table:
    return Table(
        "Targets of issue 11 (copy mode at scale, tables 5–7)",
        ("target", "measured", "met / not met"),
        tuple(t.row() for t in found),
        ("Measured in this run, side by side; why a target is not met is under \"The issue's targets\" above.",),
    )


def targets(runs: Runs, sizes: ScaleSizes, startup: Startup) -> tuple[Target, ...]:
    return (
        noop_gets_target(runs, sizes),
        noop_slope_target(runs, sizes),
        first_target(runs, sizes),
        wan_target(runs, sizes),
        large_noop_target(runs, sizes, startup),
    )


def noop_gets_target(runs: Runs, sizes: ScaleSizes) -> Target:
    gets = {
        size: (
            sum(m.traffic["source"].manifest_gets for m in runs.noop[PANTS][size]),
            sum(m.traffic["destination"].manifest_gets for m in runs.noop[PANTS][size]),
        )
        for size in sizes.sizes
    }
    heads = {size: runs.noop[PANTS][size][-1].traffic for size in sizes.sizes}
    total = sum(s + d for s, d in gets.values())
    why = "HEADs of the last run (source / destination): " + "; ".join(
        f"N={n:,}: {t['source'].manifest_heads} / {t['destination'].manifest_heads}" for n, t in heads.items()
    ) + "."
    if total:
        by_client: collections.Counter[str] = collections.Counter()
        for size in sizes.sizes:
            for m in runs.noop[PANTS][size]:
                for log in m.log.values():
                    by_client.update(clients(log, "GET"))
        why += " What limits it: the GETs' clients (User-Agent, from the access logs): " + ", ".join(
            f"{a} {c}" for a, c in sorted(by_client.items())
        ) + "."
    return Target(
        f"No-op re-mirror: 0 manifest GETs at the source and at the destination (every warm run, "
        f"N = {', '.join(f'{n:,}' for n in sizes.sizes)})",
        "; ".join(f"N={n:,}: {s} / {d}" for n, (s, d) in gets.items()) + " GETs (source / destination)",
        total == 0,
        why,
    )


def noop_slope_target(runs: Runs, sizes: ScaleSizes) -> Target:
    small, large = sizes.sizes[-2], sizes.sizes[-1]

    def noop_slope(name: str) -> float:
        return slope((small, wall(runs.noop[name][small])), (large, wall(runs.noop[name][large])))

    ours, theirs = noop_slope(PANTS), noop_slope(SKOPEO)
    ratio = ours / theirs if theirs > 0 else float("inf")
    met = ratio <= NOOP_SLOPE_TARGET
    return Target(
        f"No-op re-mirror: marginal cost per image <= {NOOP_SLOPE_TARGET}x `skopeo sync`'s ({small:,} → {large:,} images)",
        f"{ours * 1000:.2f} ms against {theirs * 1000:.2f} ms, {ratio:.2f}x",
        met,
        "" if met else "What limits it: " + per_image_cpu(runs.noop[PANTS], small, large) + ".",
    )


def first_target(runs: Runs, sizes: ScaleSizes) -> Target:
    at = sizes.first_size
    ours, theirs = wall(runs.first[PANTS][at]), wall(runs.first[SKOPEO][at])
    ratio = ours / theirs
    met = ratio <= FIRST_TARGET
    return Target(
        f"First mirror of {at:,} images on loopback: <= {FIRST_TARGET}x `skopeo sync`'s wall time",
        f"{ours:.2f} s against {theirs:.2f} s, {ratio:.2f}x",
        met,
        "" if met else "What limits it: " + cpu_bound(runs.first[PANTS][at], runs.first[SKOPEO][at], os.cpu_count()) + ".",
    )


def wan_target(runs: Runs, sizes: ScaleSizes) -> Target:
    ours = wall([r.measured for r in runs.wan[PANTS]])
    theirs = wall([r.measured for r in runs.wan[SKOPEO]])
    ratio = ours / theirs
    met = ratio <= WAN_TARGET
    why = ""
    if not met:
        last = runs.wan[PANTS][-1]
        stats = last.measured.stats()
        copiers = last.copiers
        why = (
            f"What limits it (table 7a): Pants ran {stats.processes} processes, {stats.process_ms / 1000:.1f} s of run "
            f"time summed ({stats.process_ms / 1000 / max(stats.processes, 1):.2f} s each), in {last.measured.seconds:.1f} s; "
            f"copies ran for {copiers.busy_seconds:.1f} s of it, {copiers.busy_mean:.1f} at once on average (peak "
            f"{copiers.peak}, on {os.cpu_count()} cores: Pants' default limit is one process per core), one copy "
            "process per image. "
            + "; ".join(
                f"With `process_execution_local_parallelism = {p}`: {wall([r.measured for r in runs.wan[raised(p)]]):.1f} s, "
                f"{wall([r.measured for r in runs.wan[raised(p)]]) / theirs:.2f}x, "
                f"peak {runs.wan[raised(p)][-1].copiers.peak} copies at once"
                for p in sizes.wan_parallelism
            )
            + "."
        )
    return Target(
        f"First mirror of {sizes.wan_size:,} images with {DELAY * 2000:.0f} ms per round trip: <= {WAN_TARGET}x "
        "`skopeo sync`'s, default settings",
        f"{ours:.2f} s against {theirs:.2f} s, {ratio:.2f}x",
        met,
        why,
    )


def large_noop_target(runs: Runs, sizes: ScaleSizes, startup: Startup) -> Target:
    large = sizes.sizes[-1]
    noop = wall(runs.noop[PANTS][large])
    met = noop < LARGE_NOOP_TARGET
    why = "" if met and large >= 1000 else noop_breakdown(runs.noop[PANTS][large], startup) + "."
    if large < 1000:
        why += f" (At {large:,} lines, not 1,000: a smaller run, `--quick` or `--up-to`.)"
    return Target(
        f"A {large:,}-line spec: no-op re-mirror under {LARGE_NOOP_TARGET:.0f} s warm on 2 cores ({os.cpu_count()} here)",
        f"{noop:.2f} s (median of {len(runs.noop[PANTS][large])})",
        met,
        why,
    )


def per_image_cpu(data: Mapping[int, Sequence[Measured]], small: int, large: int) -> str:
    """Where the marginal cost of a Pants run goes, from CPU and process times per extra image."""

    def per(pick: Callable[[Cpu], float]) -> float:
        def at(size: int) -> float:
            return median([pick(m.cpu) for m in data[size] if m.cpu])

        return slope((small, at(small)), (large, at(large)))

    process_time = slope(
        (small, median([m.stats().process_ms / 1000 for m in data[small]])),
        (large, median([m.stats().process_ms / 1000 for m in data[large]])),
    )
    return (
        f"per extra image, pantsd's own CPU (Pants' rules: the image's targets, its package record, its "
        f"summary line) grows {per(lambda c: c.daemon) * 1000:.2f} ms, the CPU of the processes it ran (the probe) "
        f"{per(lambda c: c.daemon_processes) * 1000:.2f} ms and their run time {process_time * 1000:.2f} ms, the "
        f"client's CPU {per(lambda c: c.command) * 1000:.2f} ms, the registries' {per(lambda c: c.registries) * 1000:.2f} ms"
    )


def share(m: Measured, cores: int | None) -> str:
    """How much of the machine a run kept busy: every CPU second it caused, over wall time × cores."""
    assert m.cpu
    return f"{(m.cpu.tool + m.cpu.registries + m.cpu.harness) / m.seconds / (cores or 1) * 100:.0f}%"


def cpu_bound(ours: Sequence[Measured], theirs: Sequence[Measured], cores: int | None) -> str:
    """The CPU each side used against the wall time: how much of the machine it took."""
    o, t = ours[-1], theirs[-1]
    assert o.cpu and t.cpu
    stats = o.stats()
    return (
        f"Pants used {o.cpu.tool:.1f} s of CPU (the client {o.cpu.command:.1f} s, pantsd's rules {o.cpu.daemon:.1f} s, "
        f"its {stats.processes} processes {o.cpu.daemon_processes:.1f} s) and the registries {o.cpu.registries:.1f} s, "
        f"in {o.seconds:.1f} s on {cores} cores ({share(o, cores)} of the machine, with the harness and its proxies); "
        f"`skopeo sync` used {t.cpu.tool:.1f} s and the registries {t.cpu.registries:.1f} s, in {t.seconds:.1f} s "
        f"({share(t, cores)})"
    )


def noop_breakdown(data: Sequence[Measured], startup: Startup) -> str:
    last = data[-1]
    assert last.cpu
    stats = last.stats()
    return (
        f"Its last run: {last.seconds:.2f} s, of which a warm Pants client costs about {startup.warm_version:.2f} s "
        f"(`pants --version`, {last.cpu.command:.2f} s of CPU here); pantsd's rules used {last.cpu.daemon:.2f} s of CPU, "
        f"and the {stats.processes} process{'es' if stats.processes != 1 else ''} it ran {stats.process_ms / 1000:.2f} s "
        f"of run time ({last.cpu.daemon_processes:.2f} s of CPU)"
    )
