"""Where Pants' time goes: a cold start, a cProfile of a cold `pants --version`, a warm start,
and the client's own imports."""

from __future__ import annotations

import os
import pstats
import re
from dataclasses import dataclass
from pathlib import Path

from docker_mirror_testutil.pants_repo import PantsRepo

from benchmarks import REPO
from benchmarks.harness import Bench, median, progress, run, seconds, spread, timed


@dataclass(frozen=True)
class Startup:
    cold_start: float  # `pants --no-pantsd list ::` of an empty repository
    warm_version: float  # `pants --version` against a running pantsd, median
    client_import: float  # the client's imports alone, median
    lines: tuple[str, ...]  # for "Where Pants' time goes"


def pants_venv() -> Path:
    """The virtualenv `./pants` runs Pants from (same lookup as the script)."""
    cache = os.environ.get("PANTS_BOOTSTRAP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pants-docker-mirror"
    )
    version = re.search(r'^\s*pants_version\s*=\s*"([^"]+)"', (REPO / "pants.toml").read_text(), re.M)
    assert version, "no pants_version in pants.toml"
    return Path(cache) / f"pants-{version.group(1)}-py3.9"


@dataclass(frozen=True)
class Profile:
    wall: float
    total: float  # profiled
    create_calls: int
    create_time: float  # native_engine.scheduler_create, cumulative
    imports: float


def profile_cold_version(empty: PantsRepo, venv: Path, out: Path) -> Profile:
    wall = timed(
        lambda: run(
            [str(venv / "bin" / "python"), "-m", "cProfile", "-o", str(out), str(venv / "bin" / "pants"),
             "--no-pantsd", "--version"],
            cwd=empty.root,
        )
    )
    stats = pstats.Stats(str(out))
    create_calls, create_time, imports = 0, 0.0, 0.0
    for (filename, _, name), (_, calls, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "scheduler_create" in name:
            create_calls += calls
            create_time += cumulative
        if name == "_find_and_load" and filename.startswith("<frozen importlib"):
            imports += cumulative
    return Profile(wall, stats.total_tt, create_calls, create_time, imports)  # type: ignore[attr-defined]


def run_scenario(bench: Bench, warm_repo: PantsRepo) -> Startup:
    """`warm_repo` has a running pantsd."""
    empty = bench.repo("startup")
    empty.write({"src/BUILD": ""})
    cold = timed(lambda: bench.pants(empty, "list", "::", daemon=False))
    progress(f"cold start {cold:.1f} s")

    venv = pants_venv()
    profile = profile_cold_version(empty, venv, bench.work / "version.prof")
    progress(f"profiled cold --version {profile.wall:.1f} s")

    warm = [timed(lambda: bench.pants(warm_repo, "--version")) for _ in range(3)]
    client = [
        timed(lambda: run([str(venv / "bin" / "python"), "-c", "import pants.bin.remote_pants_runner"]))
        for _ in range(3)
    ]
    rest = profile.total - profile.create_time - profile.imports
    lines = (
        f"- Cold start (`pants --no-pantsd list ::` of an empty repository, 1 run): {cold:.2f} s. Every cold row pays it.",
        f"- cProfile of a cold `pants --no-pantsd --version` ({profile.wall:.2f} s wall under the profiler, "
        f"{profile.total:.2f} s profiled): `native_engine.scheduler_create` (Rust rule-graph construction) takes "
        f"{profile.create_time:.2f} s in {profile.create_calls} calls (the bootstrap scheduler Pants builds to resolve plugins, "
        f"then the real one); Python imports {profile.imports:.2f} s; everything else {rest:.2f} s.",
        f"- Warm (pantsd running): `pants --version` takes {seconds(warm)} (median of 3: {spread(warm)}); "
        f"the client's imports alone (`python -c 'import pants.bin.remote_pants_runner'`) "
        f"take {seconds(client)} (median of 3). Every warm row pays this.",
    )
    return Startup(cold, median(warm), median(client), lines)
