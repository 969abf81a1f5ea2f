"""A copy-mode no-op re-mirror before and after a change to the plugin (issue 25: the tag list),
side by side with `skopeo sync --all`, in one run: N images with nothing attached (N = 20, 200
and 1,000, laid out as the scale scenario's: a repository per image, sharing a few distinct
images), referrers carried (the default).

"After" is this checkout's plugin, in the mirror repository and its pantsd; "before" is the
plugin of the checkout `--before` names, in a repository and pantsd of its own (the same
`./pants` and `pants.toml`: only `pants-plugins/docker_mirror` differs). Every size's
destination is filled once by `skopeo sync` (untimed: the same manifests as a first mirror by
either side, digests preserved) and kept for the run, so that the timed runs can go round: each
round times every size and tool once, the tools' order turning each round, and the 1-minute load
average is read before every run. The marginal cost per image is the slope between the medians
of two sizes; the ratio to `skopeo sync`'s is the issue's target (<= 0.5x, 20 → 200 images).
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from docker_mirror_testutil.images import make_image
from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.registries import Registry

from benchmarks import REPO
from benchmarks.baselines import skopeo_sync
from benchmarks.harness import Bench, Measured, measure, median, progress, run, slope, spread
from benchmarks.report import Section, Table, verdict
from benchmarks.scenarios.scale import DISTINCT_IMAGES, NOOP_SLOPE_TARGET, per_image_cpu, reference

AFTER = "pants publish, method=copy: after (this checkout)"
BEFORE = "pants publish, method=copy: before (`--before`)"
SKOPEO = "skopeo sync --all"
TOOLS = (AFTER, BEFORE, SKOPEO)


@dataclass(frozen=True)
class BeforeAfterSizes:
    sizes: tuple[int, ...]  # ascending; the ratio is taken between the first two
    runs: int  # rounds: each times every size and tool once


@dataclass(frozen=True)
class Setup:
    after: PantsRepo  # the mirror repository
    before: PantsRepo
    before_label: str  # `commit <hash>` of each side, for the table
    after_label: str
    upstream: Registry
    references: tuple[str, ...]  # the largest size's lines; size N uses the first N
    sizes: BeforeAfterSizes


def directory(size: int) -> str:
    return f"before_after/n{size}"


def with_plugin_of(repo: PantsRepo, checkout: Path) -> None:
    """Replaces `repo`'s copy of the plugin by `checkout`'s, copied as `PantsRepo` copies it."""
    target = repo.root / "pants-plugins" / "docker_mirror"
    shutil.rmtree(target)
    shutil.copytree(
        checkout / "pants-plugins" / "docker_mirror",
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*_test.py", "conftest.py", "testutil", "BUILD"),
    )


def commit_of(checkout: Path) -> str:
    """`commit <short hash>` of a git checkout, with `+ changes` if its plugin differs from it."""
    commit = run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"]).strip()
    changed = run(["git", "-C", str(checkout), "status", "--porcelain", "--", "pants-plugins/docker_mirror"]).strip()
    return f"commit {commit}" + (" + changes" if changed else "")


def prepare(bench: Bench, repo: PantsRepo, sizes: BeforeAfterSizes, before: Path) -> Setup:
    """Untimed: the upstream registry, the "before" repository, and one generator per size in each."""
    if not (before / "pants-plugins" / "docker_mirror" / "register.py").is_file():
        raise SystemExit(f"--before {before}: no pants-plugins/docker_mirror/register.py there")
    before_label = commit_of(before)
    upstream = bench.registry("before-after-upstream")
    references = tuple(reference(upstream.address, i) for i in range(max(sizes.sizes)))
    before_repo = bench.repo("before")
    with_plugin_of(before_repo, before)
    generator = "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy')\n"
    for target in (repo, before_repo):
        for size in sizes.sizes:
            target.write(
                {
                    f"{directory(size)}/BUILD": generator,
                    f"{directory(size)}/images.txt": "".join(f"{r}\n" for r in references[:size]),
                }
            )
    return Setup(repo, before_repo, before_label, commit_of(REPO), upstream, references, sizes)


def seed(setup: Setup) -> None:
    """As the scale scenario seeds: a few distinct images, then every line's repository and tag."""
    for j in range(DISTINCT_IMAGES):
        make_image(f"{setup.upstream.address}/bench/seed{j}:1", f"before-after bench image {j}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(setup.upstream.put_tag_into, f"bench/seed{i % DISTINCT_IMAGES}", "1", f"bench/img{i:04d}", f"1.{i}")
            for i in range(len(setup.references))
        ]
    for future in futures:
        future.result()


def warm_up(bench: Bench, setup: Setup) -> None:
    """Untimed (after `seed`): starts the "before" repository's pantsd, and packages every
    generator once in each repository, against a throwaway destination."""
    dest = bench.registry("before-after-warm-up")
    try:
        for repo in (setup.after, setup.before):
            bench.pants(repo, "package", "before_after::", registry=dest)
            bench.mark_daemon(repo)
    finally:
        bench.stop_registry(dest)
    progress(f"before_after/: {len(setup.references)} images seeded, generators packaged once on each side")


# ------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class Run:
    measured: Measured
    load: float  # 1-minute load average just before it


def run_scenario(bench: Bench, setup: Setup) -> Section:
    sizes = setup.sizes
    runs: dict[str, dict[int, list[Run]]] = {t: {n: [] for n in sizes.sizes} for t in TOOLS}
    repos = {AFTER: setup.after, BEFORE: setup.before}

    def noop(name: str, size: int, dest: Registry) -> Measured:
        if name == SKOPEO:
            command = lambda: skopeo_sync(bench.work / "before-after-sync.yaml", setup.references[:size], dest)
            daemons: list[int] = []
        else:
            repo = repos[name]
            command = lambda: bench.pants(repo, "--stats-log", "publish", f"{directory(size)}::", registry=dest)
            daemons = repo.daemon_pids()
        measured = measure(command, {"source": setup.upstream, "destination": dest}, daemons)
        if measured.traffic["destination"].manifest_puts:
            bench.warnings.append(f"- {name}, no-op of {size}: {measured.traffic['destination'].manifest_puts} manifest PUTs.")
        return measured

    dests = {size: bench.registry(f"before-after-dest{size}") for size in sizes.sizes}
    try:
        for size, dest in dests.items():
            # Untimed: the first mirror, then one no-op per side (its first run at this size).
            filled = measure(lambda: skopeo_sync(bench.work / "before-after-sync.yaml", setup.references[:size], dest), {"destination": dest})
            if filled.traffic["destination"].manifest_puts != size:
                bench.warnings.append(f"- before/after, first mirror of {size}: {filled.traffic['destination'].manifest_puts} manifest PUTs, not {size}.")
            for name in (AFTER, BEFORE):
                noop(name, size, dest)
        progress("before/after: destinations filled, one untimed no-op per side and size")
        for round_number in range(sizes.runs):
            order = TOOLS[round_number % 3 :] + TOOLS[: round_number % 3]
            for size in sizes.sizes:
                for name in order:
                    load = os.getloadavg()[0]
                    runs[name][size].append(Run(noop(name, size, dests[size]), load))
            progress(
                f"before/after, round {round_number + 1}: "
                + "; ".join(
                    f"{size}: " + ", ".join(f"{name.split(':')[-1].split('(')[0].strip()} {runs[name][size][-1].measured.seconds:.2f}" for name in TOOLS)
                    for size in sizes.sizes
                )
            )
    finally:
        for dest in dests.values():
            bench.stop_registry(dest)
    bench.check_daemon(setup.after, "the before/after runs (after)")
    bench.check_daemon(setup.before, "the before/after runs (before)")
    bench.stop_daemon(setup.before)
    return Section((table(runs, setup),), targets(runs, sizes))


# ------------------------------------------------------------------------------------------
# Tables


_REQUEST = re.compile(r'"(?P<method>[A-Z]+) /v2/(?P<path>\S*) HTTP/')


def kinds(log: Iterable[str]) -> collections.Counter[str]:
    """Requests by kind, from access-log lines: manifest HEAD / GET, tag list, other."""
    counts: collections.Counter[str] = collections.Counter()
    for line in log:
        match = _REQUEST.search(line)
        if not match:
            continue
        method, path = match["method"], match["path"]
        if "/manifests/" in path and method in ("HEAD", "GET"):
            counts[f"manifest {method}"] += 1
        elif "/tags/list" in path and method == "GET":
            counts["tag list"] += 1
        else:
            counts["other"] += 1
    return counts


def per_image(log: Sequence[str], size: int) -> str:
    """manifest HEAD / manifest GET / tag list / other, per image; the total per image."""
    counts = kinds(log)
    parts = [counts[k] / size for k in ("manifest HEAD", "manifest GET", "tag list", "other")]
    return " / ".join(f"{p:g}" for p in parts) + f" = {len(log) / size:g}"


def wall(data: Sequence[Run]) -> float:
    return median([r.measured.seconds for r in data])


def marginal(runs: Mapping[int, Sequence[Run]], small: int, large: int) -> float:
    return slope((small, wall(runs[small])), (large, wall(runs[large])))


def table(runs: Mapping[str, Mapping[int, Sequence[Run]]], setup: Setup) -> Table:
    sizes = setup.sizes.sizes
    rows = []
    for name in TOOLS:
        for i, size in enumerate(sizes):
            data = runs[name][size]
            last = data[-1].measured
            stats = last.stats() if name != SKOPEO else None
            loads = [r.load for r in data]
            rows.append(
                (
                    name,
                    f"{size:,}",
                    f"{wall(data):.2f} s",
                    spread([r.measured.seconds for r in data]),
                    f"{marginal(runs[name], sizes[i - 1], size) * 1000:.2f} ms" if i else "—",
                    f"{wall(data) / wall(runs[SKOPEO][size]):.2f}x",
                    per_image(last.log["source"], size),
                    per_image(last.log["destination"], size),
                    f"{stats.processes} / {median([r.measured.stats().process_ms / 1000 for r in data]):.2f} s" if stats else "—",
                    f"{median([r.measured.cpu.tool for r in data if r.measured.cpu]):.2f} / "
                    f"{median([r.measured.cpu.registries for r in data if r.measured.cpu]):.2f} s",
                    f"{min(loads):.2f}–{max(loads):.2f}",
                )
            )
    return Table(
        f"25. No-op re-mirror of N images with nothing attached, before and after the tag list "
        f"(issue 25; {setup.sizes.runs} rounds, each timing every size and tool once)",
        (
            "tool",
            "N",
            "median",
            "runs (s), in order",
            "marginal per image (from the size above)",
            "ratio to skopeo sync",
            "source, per image: manifest HEAD / manifest GET / tag list / other = all",
            "destination, per image: the same",
            "processes Pants ran / their run time (median)",
            "CPU: tool / registries (median)",
            "load (1 min) before its runs: min–max",
        ),
        tuple(rows),
        (
            f"Before: the plugin of {setup.before_label}, in a repository and pantsd of its own; after: this "
            f"checkout's, {setup.after_label}; the same `./pants`, `pants.toml`, upstream and destination registries. Each line is an "
            f"image in a repository of its own (the {DISTINCT_IMAGES} distinct images they share are tagged into "
            "each by blob mounts), nothing attached, referrers carried (the default). Each size's destination "
            "was filled once by `skopeo sync` (digests preserved), and each side ran one untimed no-op into it "
            "first; the rounds then go through every size and tool, the tools' order turning each round. "
            "Requests are the registries' access-log lines of the last run, divided by N; \"other\" is the "
            "referrers API's `GET` (answered 404, once per registry and run) and the like. CPU is user + system: "
            "for Pants the client, pantsd and the processes it ran (the probe).",
        ),
    )


def targets(runs: Mapping[str, Mapping[int, Sequence[Run]]], sizes: BeforeAfterSizes) -> tuple[str, ...]:
    small, large = sizes.sizes[0], sizes.sizes[1]
    theirs = marginal(runs[SKOPEO], small, large)
    lines = []
    for name in (AFTER, BEFORE):
        ours = marginal(runs[name], small, large)
        ratio = ours / theirs if theirs > 0 else float("inf")
        data = {n: [r.measured for r in runs[name][n]] for n in sizes.sizes}
        lines.append(
            f"- Issue 25, no-op re-mirror with nothing attached, referrers carried: marginal cost per image "
            f"<= {NOOP_SLOPE_TARGET}x `skopeo sync`'s ({small:,} → {large:,} images), {name}: {ours * 1000:.2f} ms "
            f"against {theirs * 1000:.2f} ms, {ratio:.2f}x, {verdict(ratio <= NOOP_SLOPE_TARGET)}. Where it goes: "
            + per_image_cpu(data, small, large)
            + "."
        )
    return tuple(lines)
