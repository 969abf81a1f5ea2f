"""One line changed in an N-line spec: the README's `pants --changed-since=HEAD~1 publish`, its
wall time, and the images it selected and pushed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from docker_mirror_testutil.images import make_image
from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.registries import Registry

from benchmarks.harness import Bench, measure, progress
from benchmarks.report import Section, Table


@dataclass(frozen=True)
class ChangedLine:
    repo: PantsRepo  # the mirror repository (a git repository); one directory per case
    dest: Registry
    cases: tuple[tuple[str, int], ...]  # (method, lines)
    spec_lines: Mapping[str, tuple[str, ...]]  # each case's spec file, as committed first
    bumped: Mapping[str, str]  # the line each case changes to


def directory(method: str) -> str:
    return f"changed/{method}"


def prepare(bench: Bench, repo: PantsRepo, cases: Sequence[tuple[str, int]]) -> ChangedLine:
    """Untimed: writes one directory per case (and seeds their upstream repositories, one per
    case so that their destinations differ). No Pants yet: the repository is committed first."""
    upstream = bench.registry("changed-upstream")
    dest = bench.registry("changed-dest")
    spec_lines, bumped = {}, {}
    for method, lines in cases:
        base = f"{upstream.address}/bench/app-{method}"
        make_image(f"{base}:1.0", f"changed-line bench, {method}")
        for i in range(1, lines):
            upstream.put_tag(f"bench/app-{method}", "1.0", f"1.{i}")
        upstream.put_tag(f"bench/app-{method}", "1.0", "2.0")
        repo.write(
            {f"{directory(method)}/BUILD": f"docker_mirror_images(name='mirror', sources=['images.txt'], method='{method}')\n"}
        )
        spec_lines[method] = tuple(f"{base}:1.{i} AS app{i}\n" for i in range(lines))
        bumped[method] = f"{base}:2.0 AS app{lines // 2}\n"
        repo.write({f"{directory(method)}/images.txt": "".join(spec_lines[method])})
    return ChangedLine(repo, dest, tuple(cases), spec_lines, bumped)


def publish_once(bench: Bench, setup: ChangedLine) -> None:
    """Untimed, in the repository's running daemon: publishes changed/, so its mirrors are
    current before the change."""
    bench.pants(setup.repo, "publish", "changed::", registry=setup.dest)
    progress("changed/: initial publish done")


def run_scenario(bench: Bench, setup: ChangedLine) -> Section:
    """Table 4, one run per case; stops the destination registry afterwards."""
    repo, dest = setup.repo, setup.dest
    rows = []
    for method, lines in setup.cases:
        # Untimed: change one line of this case's spec file and commit it.
        spec_lines = list(setup.spec_lines[method])
        spec_lines[lines // 2] = setup.bumped[method]
        repo.write({f"{directory(method)}/images.txt": "".join(spec_lines)})
        repo.git("commit", "-qam", f"bump one image of {directory(method)}/images.txt")
        listed = bench.pants(repo, "--changed-since=HEAD~1", "list")
        selected = listed.count(f"{directory(method)}:mirror#")
        if selected != len(re.findall(r"^\S+:mirror#\S+$", listed, re.M)):
            raise RuntimeError(f"--changed-since selected images outside {directory(method)}/:\n{listed[-2000:]}")
        measured = measure(
            lambda: bench.pants(repo, "--stats-log", "--changed-since=HEAD~1", "publish", registry=dest),
            {"destination": dest},
        )
        pushed = measured.traffic["destination"].manifest_puts
        rows.append(
            (method, str(lines), f"{measured.seconds:.2f} s", str(selected), str(pushed), str(measured.stats().processes))
        )
    bench.stop_registry(dest)
    bench.check_daemon(repo, "the changed-line runs")
    table = Table(
        "4. One line changed in an N-line spec: `pants --changed-since=HEAD~1 publish` (warm pantsd, 1 run)",
        ("method", "N", "wall time", "images selected (`--changed-since=HEAD~1 list`)", "manifests pushed", "processes Pants ran"),
        tuple(rows),
        (
            "Pants selects images per spec file: every image of the changed file is selected; "
            "copy mode then skips those whose destination digest already matches. Build mode is "
            "measured at a smaller N: it rebuilds and pushes every selected image. Run in the mirror "
            "repository's daemon, after an untimed initial publish.",
        ),
    )
    return Section((table,))
