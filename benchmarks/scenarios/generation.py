"""Generation at scale: `pants list` of one spec file with N entries against the same N
`docker_image` targets written by hand in a BUILD file; cold at one size, warm at several."""

from __future__ import annotations

import re
from typing import Sequence

from docker_mirror_testutil.pants_repo import PantsRepo

from benchmarks.harness import Bench, median, progress, seconds, slope, spread, timed_result
from benchmarks.report import Section, Table, verdict

SIDES = ("spec", "hand")
RATIO_TARGET = 1.1  # the spec file against hand-written targets


def generation_files(side: str, size: int, run_id: int, directory: str) -> dict[str, str]:
    """`side` "spec": one generator and its spec file; "hand": the same targets by hand. The
    run number goes into a comment, so each run changes the files Pants has to read again."""
    if side == "spec":
        return {
            f"{directory}/BUILD": f"# run {run_id}\ndocker_mirror_images(name='mirror', sources=['images.txt'])\n",
            f"{directory}/images.txt": f"# run {run_id}\n"
            + "".join(f"registry.example.com/team/app{i}:1.{i}\n" for i in range(size)),
        }
    return {
        f"{directory}/BUILD": f"# run {run_id}\n"
        + "".join(
            f"docker_image(name='app{i}', instructions=['FROM registry.example.com/team/app{i}:1.{i}'], "
            f"repository='team/app{i}', image_tags=['1.{i}'], pull=True)\n"
            for i in range(size)
        ),
    }


def check_listed(output: str, side: str, size: int, directory: str) -> None:
    pattern = rf"^{re.escape(directory)}:mirror#\S+$" if side == "spec" else rf"^{re.escape(directory)}:app\d+$"
    listed = len(re.findall(pattern, output, re.M))
    if listed != size:
        raise RuntimeError(f"{directory}: expected {size} targets, listed {listed}:\n{output[-2000:]}")


def ratio_line(mode: str, size: int, spec: Sequence[float], hand: Sequence[float]) -> str:
    ratio = median(spec) / median(hand)
    overlap = min(spec) <= max(hand) and min(hand) <= max(spec)
    return (
        f"- Generation, spec file against hand-written targets <= {RATIO_TARGET} at {size:,} entries, {mode}: "
        f"{ratio:.2f}x, {verdict(ratio <= RATIO_TARGET)}"
        + (" (the two sides' runs overlap: within run-to-run noise)." if ratio > RATIO_TARGET and overlap else ".")
    )


# ------------------------------------------------------------------------------------------
# Cold


def run_cold(bench: Bench, size: int, runs: int) -> Section:
    """Table 1a: a fresh repository per side, `--no-pantsd`."""
    repos = {}
    for side in SIDES:
        repos[side] = bench.repo(f"gen-cold-{side}")
        repos[side].write(generation_files(side, size, 0, "gen"))
    times: dict[str, list[float]] = {"spec": [], "hand": []}
    for _ in range(runs):
        for side in SIDES:  # interleaved: a slow moment of the machine hits both sides
            elapsed, output = timed_result(lambda: bench.pants(repos[side], "list", "::", daemon=False))
            check_listed(output, side, size, "gen")
            times[side].append(elapsed)
        progress(f"cold generation run: spec {times['spec'][-1]:.1f} s, hand {times['hand'][-1]:.1f} s")
    spec, hand = times["spec"], times["hand"]
    table = Table(
        f"1a. Generation, cold: `pants --no-pantsd list ::` (median of {runs} runs per side, interleaved)",
        ("entries", "docker_mirror_images (spec file)", "runs (s)", "hand-written docker_image targets", "runs (s)", "ratio"),
        ((f"{size:,}", seconds(spec), spread(spec), seconds(hand), spread(hand), f"{median(spec) / median(hand):.2f}x"),),
        ("Both sides include the cold start (see above).",),
    )
    return Section((table,), (ratio_line("cold", size, spec, hand),))


# ------------------------------------------------------------------------------------------
# Warm


def warm_directory(side: str, size: int) -> str:
    return f"gen/{side}-{size}"


def write_warm(repo: PantsRepo, sizes: Sequence[int]) -> None:
    """Untimed: every side and size in a directory of its own, all parsed by the warm-up: a timed
    run then sees one edited BUILD file (and spec file), as after a developer's edit, and not
    10,000 targets replaced by 10,000 others (which a daemon is much slower at)."""
    for size in sizes:
        for side in SIDES:
            repo.write(generation_files(side, size, 0, warm_directory(side, size)))


def run_warm(bench: Bench, repo: PantsRepo, sizes: Sequence[int], runs: int, ratio_size: int) -> Section:
    """Table 1b. One repository, one daemon (warmed up, with `write_warm`'s files); every run
    rewrites one side's files (a new comment), so Pants re-parses the BUILD file and re-reads
    the spec file instead of answering from memory. The target is checked at `ratio_size`."""
    run_id = 0
    times: dict[tuple[int, str], list[float]] = {}
    for size in sizes:
        for _ in range(runs):
            for side in SIDES:  # interleaved
                run_id += 1
                directory = warm_directory(side, size)
                repo.write(generation_files(side, size, run_id, directory))
                elapsed, output = timed_result(lambda: bench.pants(repo, "list", f"{directory}::"))
                check_listed(output, side, size, directory)
                times.setdefault((size, side), []).append(elapsed)
        progress(f"warm generation {size}: spec {seconds(times[size, 'spec'])}, hand {seconds(times[size, 'hand'])}")

    rows, targets, slopes = [], [], []
    previous: int | None = None
    for size in sizes:
        spec, hand = times[size, "spec"], times[size, "hand"]
        if size == ratio_size:
            targets.append(ratio_line("warm", size, spec, hand))
        growth = ["—", "—"]
        if previous is not None:
            spec_slope, hand_slope = (
                slope((previous, median(times[previous, side])), (size, median(times[size, side])), per=1000)
                for side in SIDES
            )
            growth = [f"{spec_slope:.2f} s", f"{hand_slope:.2f} s"]
            slopes.append(f"{previous:,} → {size:,}: {spec_slope:.2f} s (hand-written: {hand_slope:.2f} s)")
        rows.append(
            (
                f"{size:,}",
                f"{median(spec):.2f} s ({spread(spec)})",
                f"{median(hand):.2f} s ({spread(hand)})",
                f"{median(spec) / median(hand):.2f}x",
                *growth,
            )
        )
        previous = size
    if slopes:
        targets.append(f"- Linear growth, warm, seconds per extra 1,000 entries for the spec file: {'; '.join(slopes)}.")
    table = Table(
        f"1b. Generation, warm pantsd: `pants list gen/<side>-<entries>::` after its files changed (median of {runs} runs per side, interleaved)",
        (
            "entries",
            "docker_mirror_images (spec file)",
            "hand-written docker_image targets",
            "ratio",
            "spec: s per extra 1,000 entries",
            "hand: s per extra 1,000 entries",
        ),
        tuple(rows),
        (
            "One repository and daemon; each side and size has a directory of its own, read once by the untimed "
            "warm-up. Each run rewrites that directory's BUILD file (both sides) and spec file with a new comment, then lists it. "
            "\"s per extra 1,000 entries\" is the growth from the row above: equal values mean linear growth. "
            "Both sides include the warm client start (see above).",
        ),
    )
    return Section((table,), tuple(targets))
