#!/usr/bin/env python3
"""Benchmarks: target generation at scale and mirroring throughput, side by side with what a
user would otherwise reach for, in one run, with real processes only.

Run it with `benchmarks/run` (which installs and starts what is needed); it writes
`benchmarks/RESULTS.md`. Stdlib only, so it runs on any Python 3.8+.

Pants runs in two modes here:
  - warm: with pantsd, Pants' default mode (what a developer, or a CI job that runs several
    Pants commands, sees). Each throwaway repository's daemon is started by one untimed command
    first; every daemon the benchmark started is stopped before it exits, also on error.
  - cold: `--no-pantsd`, a fresh process that builds Pants' rule graph first (a one-shot CI job).

Scenarios:
  0. where Pants' time goes: cold start, a cProfile of a cold `pants --version`, warm start.
  1. generation: `pants list ::` of one spec file with N entries versus the same N
     `docker_image` targets written by hand in a BUILD file; cold at one size, warm at three.
  2. first mirror of N small images between two loopback registries: our build method, our
     copy method, a shell loop of `docker pull/tag/push`, and `skopeo sync`.
  3. re-mirror when nothing changed: the same four, run again; plus the requests each sent and
     the processes Pants ran (`--stats-log`).
  4. one line changed in a 200-line spec: the README's `--changed-since` command.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.0f} s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Processes


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=1800
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout + result.stderr


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_result(fn: Callable[[], str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def side_by_side() -> concurrent.futures.ThreadPoolExecutor:
    """For untimed set-up work only (mostly waiting for processes): timed work runs alone."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


REGISTRIES: list[Registry] = []
WARNINGS: list[str] = []


@dataclass
class Registry:
    address: str
    state_dir: Path

    @classmethod
    def start(cls, parent: Path, name: str) -> Registry:
        state_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
        port = free_port()
        registry = cls(f"127.0.0.1:{port}", state_dir)
        REGISTRIES.append(registry)
        run([str(SCRIPTS / "start-registry"), str(port), str(state_dir)])
        return registry

    def stop(self) -> None:
        pid = self.state_dir / "registry.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
            pid.unlink()

    def access_log(self) -> list[str]:
        log = self.state_dir / "registry.log"
        return [line for line in log.read_text().splitlines() if '"' in line and "HTTP/1.1" in line]

    def put_tag(self, repository: str, source_tag: str, new_tag: str) -> None:
        """Tags an existing manifest again (registry API), so seeding many tags is cheap."""
        accept = "application/vnd.docker.distribution.manifest.v2+json"
        request = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{source_tag}", headers={"Accept": accept}
        )
        with urllib.request.urlopen(request) as response:
            body, media_type = response.read(), response.headers["Content-Type"]
        put = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{new_tag}",
            data=body,
            method="PUT",
            headers={"Content-Type": media_type},
        )
        urllib.request.urlopen(put).close()


@dataclass(frozen=True)
class Traffic:
    """What one run asked of the registries, from their access logs."""

    requests: int
    blob_uploads: int
    manifest_puts: int

    @classmethod
    def between(cls, before: list[str], after: list[str]) -> Traffic:
        new = after[len(before) :]
        return cls(
            requests=len(new),
            blob_uploads=sum(1 for line in new if re.search(r'"(POST|PATCH|PUT) /v2/\S+/blobs/uploads/', line)),
            manifest_puts=sum(1 for line in new if re.search(r'"PUT /v2/\S+/manifests/', line)),
        )

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(
            self.requests + other.requests,
            self.blob_uploads + other.blob_uploads,
            self.manifest_puts + other.manifest_puts,
        )


# ------------------------------------------------------------------------------------------
# A throwaway Pants repository with this project's ./pants, pants.toml and plugin


def pants_venv() -> Path:
    """The virtualenv `./pants` runs Pants from (same lookup as the script)."""
    cache = os.environ.get("PANTS_BOOTSTRAP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pants-docker-mirror"
    )
    version = re.search(r'^\s*pants_version\s*=\s*"([^"]+)"', (REPO / "pants.toml").read_text(), re.M)
    assert version, "no pants_version in pants.toml"
    return Path(cache) / f"pants-{version.group(1)}-py3.9"


@dataclass(frozen=True)
class PantsStats:
    """Counters printed by `--stats-log` at the end of a run."""

    processes: int  # local_execution_requests: processes Pants ran (not from a cache)
    process_ms: int  # local_process_total_time_run_ms: their run times added up

    @classmethod
    def parse(cls, output: str) -> PantsStats:
        counters = dict(re.findall(r"^\s+(\w+): (\d+)$", output, re.M))
        if "local_execution_requests" not in counters:
            raise RuntimeError(f"no --stats-log counters in the output:\n{output[-2000:]}")
        return cls(int(counters["local_execution_requests"]), int(counters.get("local_process_total_time_run_ms", 0)))


class PantsRepo:
    with_daemon: list[PantsRepo] = []  # every repository a daemon was (maybe) started in

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started_pids: list[int] = []
        root.mkdir(parents=True, exist_ok=True)
        for relpath in ("pants", "pants.toml"):
            shutil.copy2(REPO / relpath, root / relpath)
        shutil.copytree(
            REPO / "pants-plugins" / "docker_mirror",
            root / "pants-plugins" / "docker_mirror",
            ignore=shutil.ignore_patterns("__pycache__", "BUILD"),
        )

    def write(self, relpath: str, content: str) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    def pants(
        self,
        *args: str,
        registry: Registry | None = None,
        daemon: bool = True,
        env: dict[str, str] | None = None,
    ) -> str:
        """Runs `./pants`: with this repository's pantsd (started by the first such call), or
        with `daemon=False` as a fresh `--no-pantsd` process."""
        options = []
        if daemon:
            if self not in PantsRepo.with_daemon:
                PantsRepo.with_daemon.append(self)
        else:
            options.append("--no-pantsd")
        if registry is not None:
            options.append(
                "--docker-registries="
                + repr(
                    {
                        "mirror": {
                            "address": registry.address,
                            "default": True,
                            "repository": "mirror/{target_repository}",
                        }
                    }
                )
            )
        return run(
            [str(self.root / "pants"), *options, *args],
            cwd=self.root,
            env=None if env is None else {**os.environ, **env},
        )

    def warm_up(self, *args: str) -> None:
        """Starts this repository's pantsd with one untimed command, and checks it runs."""
        self.pants(*(args or ("list", "::")))
        self.started_pids = self.daemon_pids()
        if not self.started_pids:
            raise RuntimeError(f"no pantsd runs for {self.root} after a Pants command with the daemon")
        progress(f"pantsd of {self.root.name} started ({self.daemon_rss_mib():.0f} MiB resident)")

    def daemon_rss_mib(self) -> float:
        total = 0.0
        for pid in self.daemon_pids():
            status = Path(f"/proc/{pid}/status").read_text()
            match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
            total += int(match.group(1)) / 1024 if match else 0
        return total

    def check_daemon(self, section: str) -> None:
        """A pantsd that restarted (e.g. over its memory limit) would have put a start-up into a
        warm row: say so in the results."""
        if self.daemon_pids() != self.started_pids:
            WARNINGS.append(f"- pantsd of `{self.root.name}` restarted during {section}: one of its rows includes a start-up.")
            self.started_pids = self.daemon_pids()
        progress(f"pantsd of {self.root.name} after {section}: {self.daemon_rss_mib():.0f} MiB resident")

    def daemon_pids(self) -> list[int]:
        """pantsd names itself `pantsd [<buildroot>]`; find those of this repository."""
        title = f"pantsd [{self.root}]".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.rstrip(b"\0") == title:
                pids.append(int(proc.name))
        return pids

    def stop_daemon(self) -> None:
        pids = self.daemon_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = [pid for pid in pids if pid in self.daemon_pids()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self in PantsRepo.with_daemon:
            PantsRepo.with_daemon.remove(self)

    def git(self, *args: str) -> str:
        return run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args], cwd=self.root)


def stop_everything() -> None:
    for repo in list(PantsRepo.with_daemon):
        repo.stop_daemon()
    for registry in REGISTRIES:
        registry.stop()


# ------------------------------------------------------------------------------------------
# Results


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join(" --- " for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += [""] + [f"{note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def median(values: list[float]) -> float:
    return statistics.median(values)


def seconds(values: list[float]) -> str:
    return f"{median(values):.2f} s"


def spread(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


@dataclass
class Findings:
    """Measured numbers the summary of the issue's targets needs."""

    ratio_size: int = 0  # the size the generation target is checked at
    cold_start: float = 0.0
    warm_version: float = 0.0
    client_import: float = 0.0
    generation_ratios: dict[str, float] = field(default_factory=dict)  # "cold, 3,000" -> ratio
    generation_runs: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # spec, hand
    generation_slopes: list[tuple[str, float, float]] = field(default_factory=list)  # span, spec, hand: s/1,000
    copy_remirror: dict[str, float] = field(default_factory=dict)  # "warm" / "cold" -> median s
    skopeo_remirror: float = 0.0
    copy_remirror_stats: PantsStats | None = None


# ------------------------------------------------------------------------------------------
# 0. Where Pants' time goes


def where_time_goes(work: Path, warm_repo: PantsRepo, findings: Findings) -> list[str]:
    empty = PantsRepo(work / "startup")
    empty.write("src/BUILD", "")
    cold = timed(lambda: empty.pants("list", "::", daemon=False))
    findings.cold_start = cold
    progress(f"cold start {cold:.1f} s")

    venv = pants_venv()
    profile = work / "version.prof"
    profiled = timed(
        lambda: run(
            [str(venv / "bin" / "python"), "-m", "cProfile", "-o", str(profile), str(venv / "bin" / "pants"),
             "--no-pantsd", "--version"],
            cwd=empty.root,
        )
    )
    stats = pstats.Stats(str(profile))
    create_calls, create_time, imports = 0, 0.0, 0.0
    for (filename, _, name), (_, calls, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "scheduler_create" in name:
            create_calls += calls
            create_time += cumulative
        if name == "_find_and_load" and filename.startswith("<frozen importlib"):
            imports += cumulative
    total = stats.total_tt  # type: ignore[attr-defined]
    progress(f"profiled cold --version {profiled:.1f} s")

    warm = [timed(lambda: warm_repo.pants("--version")) for _ in range(3)]
    findings.warm_version = median(warm)
    client = [
        timed(lambda: run([str(venv / "bin" / "python"), "-c", "import pants.bin.remote_pants_runner"]))
        for _ in range(3)
    ]
    findings.client_import = median(client)
    return [
        f"- Cold start (`pants --no-pantsd list ::` of an empty repository, 1 run): {cold:.2f} s. Every cold row pays it.",
        f"- cProfile of a cold `pants --no-pantsd --version` ({profiled:.2f} s wall under the profiler, "
        f"{total:.2f} s profiled): `native_engine.scheduler_create` (Rust rule-graph construction) takes "
        f"{create_time:.2f} s in {create_calls} calls (the bootstrap scheduler Pants builds to resolve plugins, "
        f"then the real one); Python imports {imports:.2f} s; everything else {total - create_time - imports:.2f} s.",
        f"- Warm (pantsd running): `pants --version` takes {seconds(warm)} (median of 3: {spread(warm)}); "
        f"the client's imports alone (`python -c 'import pants.bin.remote_pants_runner'`) "
        f"take {seconds(client)} (median of 3). Every warm row pays this.",
    ]


# ------------------------------------------------------------------------------------------
# 1. Generation


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


def write_files(repo: PantsRepo, files: dict[str, str]) -> None:
    for relpath, content in files.items():
        repo.write(relpath, content)


def check_listed(output: str, side: str, size: int, directory: str) -> None:
    pattern = rf"^{re.escape(directory)}:mirror#\S+$" if side == "spec" else rf"^{re.escape(directory)}:app\d+$"
    listed = len(re.findall(pattern, output, re.M))
    if listed != size:
        raise RuntimeError(f"{directory}: expected {size} targets, listed {listed}:\n{output[-2000:]}")


def warm_generation_directory(side: str, size: int) -> str:
    return f"gen/{side}-{size}"


def write_warm_generation(repo: PantsRepo, sizes: list[int]) -> None:
    """Every side and size in a directory of its own, all parsed by the untimed warm-up: a timed
    run then sees one edited BUILD file (and spec file), as after a developer's edit, and not
    10,000 targets replaced by 10,000 others (which a daemon is much slower at)."""
    for size in sizes:
        for side in ("spec", "hand"):
            write_files(repo, generation_files(side, size, 0, warm_generation_directory(side, size)))


def bench_generation_cold(work: Path, size: int, runs: int, findings: Findings) -> Table:
    repos = {}
    for side in ("spec", "hand"):
        repos[side] = PantsRepo(work / f"gen-cold-{side}")
        write_files(repos[side], generation_files(side, size, 0, "gen"))
    times: dict[str, list[float]] = {"spec": [], "hand": []}
    for _ in range(runs):
        for side in ("spec", "hand"):  # interleaved: a slow moment of the machine hits both sides
            elapsed, output = timed_result(lambda: repos[side].pants("list", "::", daemon=False))
            check_listed(output, side, size, "gen")
            times[side].append(elapsed)
        progress(f"cold generation run: spec {times['spec'][-1]:.1f} s, hand {times['hand'][-1]:.1f} s")
    ratio = median(times["spec"]) / median(times["hand"])
    findings.generation_ratios[f"cold, {size:,}"] = ratio
    findings.generation_runs[f"cold, {size:,}"] = (times["spec"], times["hand"])
    table = Table(
        f"1a. Generation, cold: `pants --no-pantsd list ::` (median of {runs} runs per side, interleaved)",
        ["entries", "docker_mirror_images (spec file)", "runs (s)", "hand-written docker_image targets", "runs (s)", "ratio"],
    )
    table.rows.append(
        [f"{size:,}", seconds(times["spec"]), spread(times["spec"]), seconds(times["hand"]), spread(times["hand"]), f"{ratio:.2f}x"]
    )
    table.notes.append("Both sides include the cold start (see above).")
    return table


def bench_generation_warm(repo: PantsRepo, sizes: list[int], runs: int, findings: Findings) -> Table:
    """One repository, one daemon; every run rewrites one side's files (a new comment), so Pants
    re-parses the BUILD file and re-reads the spec file instead of answering from memory."""
    run_id = 0
    times: dict[tuple[int, str], list[float]] = {}
    for size in sizes:
        for _ in range(runs):
            for side in ("spec", "hand"):  # interleaved
                run_id += 1
                directory = warm_generation_directory(side, size)
                write_files(repo, generation_files(side, size, run_id, directory))
                elapsed, output = timed_result(lambda: repo.pants("list", f"{directory}::"))
                check_listed(output, side, size, directory)
                times.setdefault((size, side), []).append(elapsed)
        progress(f"warm generation {size}: spec {seconds(times[size, 'spec'])}, hand {seconds(times[size, 'hand'])}")
    table = Table(
        f"1b. Generation, warm pantsd: `pants list gen/<side>-<entries>::` after its files changed (median of {runs} runs per side, interleaved)",
        [
            "entries",
            "docker_mirror_images (spec file)",
            "hand-written docker_image targets",
            "ratio",
            "spec: s per extra 1,000 entries",
            "hand: s per extra 1,000 entries",
        ],
    )
    previous: int | None = None
    for size in sizes:
        spec, hand = median(times[size, "spec"]), median(times[size, "hand"])
        ratio = spec / hand
        findings.generation_ratios[f"warm, {size:,}"] = ratio
        findings.generation_runs[f"warm, {size:,}"] = (times[size, "spec"], times[size, "hand"])
        slopes = ["—", "—"]
        if previous is not None:
            per_thousand = (size - previous) / 1000
            spec_slope = (spec - median(times[previous, "spec"])) / per_thousand
            hand_slope = (hand - median(times[previous, "hand"])) / per_thousand
            slopes = [f"{spec_slope:.2f} s", f"{hand_slope:.2f} s"]
            findings.generation_slopes.append((f"{previous:,} → {size:,}", spec_slope, hand_slope))
        table.rows.append(
            [f"{size:,}", f"{spec:.2f} s ({spread(times[size, 'spec'])})", f"{hand:.2f} s ({spread(times[size, 'hand'])})", f"{ratio:.2f}x", *slopes]
        )
        previous = size
    table.notes.append(
        "One repository and daemon; each side and size has a directory of its own, read once by the untimed "
        "warm-up. Each run rewrites that directory's BUILD file (both sides) and spec file with a new comment, then lists it. "
        "\"s per extra 1,000 entries\" is the growth from the row above: equal values mean linear growth. "
        "Both sides include the warm client start (see above)."
    )
    return table


# ------------------------------------------------------------------------------------------
# 2 + 3. First mirror and re-mirror


def seed_upstream(references: list[str]) -> None:
    for i, reference in enumerate(references):
        run([str(SCRIPTS / "make-image"), reference, f"bench image {i}"])


def forget_local_images(references: list[str]) -> None:
    """Removes images from the engine, so every method really pulls on a first mirror."""
    listed = run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).split()
    wanted = {ref.split("/", 1)[1] for ref in references}
    doomed = [ref for ref in listed if ref.split("/", 1)[-1] in wanted or "/mirror/bench/" in ref]
    if doomed:
        subprocess.run(["docker", "image", "rm", "-f", *doomed], capture_output=True, check=False)


@dataclass
class Mirroring:
    upstream: Registry
    references: list[str]
    repo: PantsRepo  # build/ holds the build-method generator, copy/ the copy-method one


def prepare_mirroring(work: Path, repo: PantsRepo, count: int) -> Mirroring:
    """Untimed: starts the upstream registry and writes build/ and copy/ (seeded later)."""
    upstream = Registry.start(work, "upstream")
    references = [f"{upstream.address}/bench/img{i:02d}:1.{i}" for i in range(count)]
    spec = "".join(f"{ref}\n" for ref in references)
    for method in ("build", "copy"):
        repo.write(f"{method}/BUILD", f"docker_mirror_images(name='mirror', sources=['images.txt'], method='{method}')\n")
        repo.write(f"{method}/images.txt", spec)
    return Mirroring(upstream, references, repo)


PANTS_BUILD = "pants publish, method=build"
PANTS_COPY = "pants publish, method=copy"
PANTS_COPY_COLD = "pants publish, method=copy, cold (`--no-pantsd`, 1 run)"


def mirror_methods(work: Path, setup: Mirroring) -> dict[str, Callable[[Registry], str]]:
    references = setup.references

    def docker_loop(dest: Registry) -> str:
        script = "set -e\n" + "".join(
            f"docker pull -q {ref} >/dev/null\n"
            f"docker tag {ref} {dest.address}/mirror/{ref.split('/', 1)[1]}\n"
            f"docker push -q {dest.address}/mirror/{ref.split('/', 1)[1]} >/dev/null\n"
            for ref in references
        )
        return run(["bash", "-c", script])

    def skopeo_sync(dest: Registry) -> str:
        upstream = references[0].split("/", 1)[0]
        images: dict[str, list[str]] = {}
        for ref in references:
            repository, _, tag = ref.split("/", 1)[1].rpartition(":")
            images.setdefault(repository, []).append(tag)
        config = work / "skopeo-sync.yaml"
        # JSON is YAML.
        config.write_text(json.dumps({upstream: {"images": images, "tls-verify": False}}))
        return run(
            [
                "skopeo", "sync", "--all", "--preserve-digests", "--src", "yaml", "--dest", "docker",
                "--dest-tls-verify=false", str(config), f"{dest.address}/mirror/bench",
            ]
        )

    return {
        PANTS_BUILD: lambda dest: setup.repo.pants("--stats-log", "publish", "build::", registry=dest),
        PANTS_COPY: lambda dest: setup.repo.pants("--stats-log", "publish", "copy::", registry=dest),
        "docker pull/tag/push loop": docker_loop,
        "skopeo sync --all": skopeo_sync,
    }


def bench_mirroring(work: Path, setup: Mirroring, runs: int, findings: Findings) -> tuple[Table, Table]:
    references = setup.references
    methods = mirror_methods(work, setup)
    first: dict[str, list[float]] = {name: [] for name in methods}
    second: dict[str, list[float]] = {name: [] for name in methods}
    order = [*methods]
    order.insert(order.index(PANTS_COPY) + 1, PANTS_COPY_COLD)
    first_stats: dict[str, list[PantsStats]] = {}
    second_stats: dict[str, list[PantsStats]] = {}
    traffic: dict[str, Traffic] = {}

    def remirror(name: str, mirror: Callable[[], str], dest: Registry) -> None:
        dest_log, upstream_log = dest.access_log(), setup.upstream.access_log()
        elapsed, output = timed_result(mirror)
        second.setdefault(name, []).append(elapsed)
        if name.startswith("pants"):
            second_stats.setdefault(name, []).append(PantsStats.parse(output))
        traffic[name] = Traffic.between(dest_log, dest.access_log()) + Traffic.between(
            upstream_log, setup.upstream.access_log()
        )

    for run_number in range(runs):
        for name, mirror in methods.items():
            if name in (PANTS_BUILD, "docker pull/tag/push loop"):  # the methods that use the engine
                forget_local_images(references)
            dest = Registry.start(work, "dest")
            try:
                elapsed, output = timed_result(lambda: mirror(dest))
                first[name].append(elapsed)
                if name.startswith("pants"):
                    first_stats.setdefault(name, []).append(PantsStats.parse(output))
                remirror(name, lambda: mirror(dest), dest)
                if name == PANTS_COPY and run_number == runs - 1:
                    remirror(
                        PANTS_COPY_COLD,
                        lambda: setup.repo.pants("--stats-log", "publish", "copy::", registry=dest, daemon=False),
                        dest,
                    )
            finally:
                dest.stop()
        progress(
            f"mirroring run {run_number + 1}: "
            + ", ".join(f"{name.split(',')[-1].strip()} {first[name][-1]:.1f}/{second[name][-1]:.1f} s" for name in methods)
        )
    findings.copy_remirror = {"warm": median(second[PANTS_COPY]), "cold": median(second[PANTS_COPY_COLD])}
    findings.skopeo_remirror = median(second["skopeo sync --all"])
    findings.copy_remirror_stats = second_stats[PANTS_COPY][-1]

    def table(title: str, data: dict[str, list[float]], stats: dict[str, list[PantsStats]], with_traffic: bool) -> Table:
        best_alternative = min(median(v) for k, v in data.items() if not k.startswith("pants"))
        columns = ["method", "median", "runs (s)", "ratio to best alternative", "processes Pants ran", "their run time, summed"]
        if with_traffic:
            columns += ["registry requests", "blob uploads", "manifest PUTs"]
        t = Table(title, columns)
        for name in [name for name in order if name in data]:
            values = data[name]
            row = [name, seconds(values), spread(values), f"{median(values) / best_alternative:.2f}x"]
            if name in stats:
                row += [
                    "/".join(sorted({str(s.processes) for s in stats[name]})),
                    f"{median([s.process_ms / 1000 for s in stats[name]]):.2f} s",
                ]
            else:
                row += ["—", "—"]
            if with_traffic:
                row += [str(traffic[name].requests), str(traffic[name].blob_uploads), str(traffic[name].manifest_puts)]
            t.rows.append(row)
        t.notes.append(
            "Pants rows run with a warm pantsd unless marked cold. \"processes Pants ran\" and their summed "
            "run time are `--stats-log`'s `local_execution_requests` and `local_process_total_time_run_ms` "
            "(processes run in parallel, so the sum can exceed the wall time)."
        )
        return t

    count = len(references)
    return (
        table(f"2. First mirror of {count} small images ({runs} runs each)", first, first_stats, False),
        table(
            f"3. Re-mirror of the same {count} images when nothing changed ({runs} runs each)",
            second,
            second_stats,
            True,
        ),
    )


# ------------------------------------------------------------------------------------------
# 4. One line changed in a 200-line spec


@dataclass
class ChangedLine:
    repo: PantsRepo  # the mirror repository (a git repository); one directory per case
    dest: Registry
    cases: list[tuple[str, int]]
    spec_lines: dict[str, list[str]]
    bumped: dict[str, str]  # the line each case changes to


def changed_directory(method: str) -> str:
    return f"changed/{method}"


def prepare_changed_line(work: Path, repo: PantsRepo, cases: list[tuple[str, int]]) -> ChangedLine:
    """Untimed: writes one directory per case (and seeds their upstream repositories, one per
    case so that their destinations differ). No Pants yet: the repository is committed first."""
    upstream = Registry.start(work, "changed-upstream")
    setup = ChangedLine(repo, Registry.start(work, "changed-dest"), cases, {}, {})
    for method, lines in cases:
        base = f"{upstream.address}/bench/app-{method}"
        run([str(SCRIPTS / "make-image"), f"{base}:1.0", f"changed-line bench, {method}"])
        for i in range(1, lines):
            upstream.put_tag(f"bench/app-{method}", "1.0", f"1.{i}")
        upstream.put_tag(f"bench/app-{method}", "1.0", "2.0")
        directory = changed_directory(method)
        repo.write(
            f"{directory}/BUILD",
            f"docker_mirror_images(name='mirror', sources=['images.txt'], method='{method}')\n",
        )
        setup.spec_lines[method] = [f"{base}:1.{i} AS app{i}\n" for i in range(lines)]
        setup.bumped[method] = f"{base}:2.0 AS app{lines // 2}\n"
        repo.write(f"{directory}/images.txt", "".join(setup.spec_lines[method]))
    return setup


def warm_up_mirror_repository(mirroring: Mirroring, changed_line: ChangedLine) -> None:
    """Untimed: starts the mirror repository's daemon while the upstream is seeded; packages
    build/ and copy/ once, so that the first timed publish is not also the daemon's first build
    (Pants runs some processes once per daemon: finding binaries and interpreters); publishes
    changed/ so its mirrors are current before the change."""
    repo = mirroring.repo
    with side_by_side() as pool:
        futures = [pool.submit(repo.warm_up), pool.submit(seed_upstream, mirroring.references)]
    for future in futures:
        future.result()
    repo.pants("package", "build::", "copy::")
    progress(f"upstream seeded with {len(mirroring.references)} images; build/ and copy/ packaged once")
    repo.pants("publish", "changed::", registry=changed_line.dest)
    progress("changed/: initial publish done")


def bench_changed_line(setup: ChangedLine) -> Table:
    table = Table(
        "4. One line changed in an N-line spec: `pants --changed-since=HEAD~1 publish` (warm pantsd, 1 run)",
        ["method", "N", "wall time", "images selected (`--changed-since=HEAD~1 list`)", "manifests pushed", "processes Pants ran"],
    )
    repo, dest = setup.repo, setup.dest
    for method, lines in setup.cases:
        # Untimed: change one line of this case's spec file and commit it.
        spec_lines = setup.spec_lines[method]
        spec_lines[lines // 2] = setup.bumped[method]
        directory = changed_directory(method)
        repo.write(f"{directory}/images.txt", "".join(spec_lines))
        repo.git("commit", "-qam", f"bump one image of {directory}/images.txt")
        listed = repo.pants("--changed-since=HEAD~1", "list")
        selected = listed.count(f"{directory}:mirror#")
        if selected != len(re.findall(r"^\S+:mirror#\S+$", listed, re.M)):
            raise RuntimeError(f"--changed-since selected images outside {directory}/:\n{listed[-2000:]}")
        before = dest.access_log()
        elapsed, output = timed_result(
            lambda: repo.pants("--stats-log", "--changed-since=HEAD~1", "publish", registry=dest)
        )
        pushed = Traffic.between(before, dest.access_log()).manifest_puts
        stats = PantsStats.parse(output)
        table.rows.append([method, str(lines), f"{elapsed:.2f} s", str(selected), str(pushed), str(stats.processes)])
    dest.stop()
    repo.check_daemon("the changed-line runs")
    table.notes.append(
        "Pants selects images per spec file: every image of the changed file is selected; "
        "copy mode then skips those whose destination digest already matches. Build mode is "
        "measured at a smaller N: it rebuilds and pushes every selected image. Run in the mirror "
        "repository's daemon, after an untimed initial publish."
    )
    return table


# ------------------------------------------------------------------------------------------


def target_summary(findings: Findings) -> list[str]:
    lines = []
    for label, ratio in findings.generation_ratios.items():
        mode, size = label.split(", ")
        if size == f"{findings.ratio_size:,}":
            spec, hand = findings.generation_runs[label]
            overlap = min(spec) <= max(hand) and min(hand) <= max(spec)
            lines.append(
                f"- Generation, spec file against hand-written targets <= 1.1 at {size} entries, {mode}: "
                f"{ratio:.2f}x, {'holds' if ratio <= 1.1 else 'does not hold'}"
                + (" (the two sides' runs overlap: within run-to-run noise)." if ratio > 1.1 and overlap else ".")
            )
    if findings.generation_slopes:
        slopes = "; ".join(
            f"{span}: {spec:.2f} s (hand-written: {hand:.2f} s)" for span, spec, hand in findings.generation_slopes
        )
        lines.append(f"- Linear growth, warm, seconds per extra 1,000 entries for the spec file: {slopes}.")
    copy_warm, copy_cold = findings.copy_remirror["warm"], findings.copy_remirror["cold"]
    ratio = copy_warm / findings.skopeo_remirror
    line = (
        f"- Re-mirror, copy method <= 1.2x `skopeo sync`: warm {copy_warm:.2f} s against {findings.skopeo_remirror:.2f} s, "
        f"{ratio:.1f}x, {'holds' if ratio <= 1.2 else 'does not hold'}; cold {copy_cold:.2f} s ({copy_cold / findings.skopeo_remirror:.0f}x)."
    )
    if ratio > 1.2 and findings.copy_remirror_stats:
        stats = findings.copy_remirror_stats
        line += (
            f" What limits it: a warm Pants command costs {findings.warm_version:.2f} s before any work "
            f"(`pants --version`; the client's imports alone take {findings.client_import:.2f} s), and the re-mirror "
            f"runs {stats.processes} processes ({stats.process_ms / 1000:.2f} s of process time summed) where `skopeo sync` "
            f"is one process; cold, the {findings.cold_start:.0f} s start-up (rule-graph construction, see the profile) dominates."
        )
    lines.append(line)
    return lines


def machine_notes() -> list[str]:
    storage = run(["docker", "info", "--format", "{{.Driver}}"]).strip()
    engine = run(["docker", "version", "--format", "{{.Server.Version}}"]).strip()
    skopeo = run(["skopeo", "--version"]).strip()
    return [
        f"- cores: {os.cpu_count()}, memory: {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, {platform.platform()}",
        f"- Docker engine {engine}, storage driver `{storage}`; {skopeo}; registries: Debian `docker-registry` on 127.0.0.1",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: checks the harness")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args()
    # A SIGTERM ends the run through the `finally` below, so the daemons are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    # Sized to finish in under ten minutes on 2 cores.
    sizes, cold_size, cold_runs, warm_runs = ([300, 3000, 10000], 3000, 2, 3) if not args.quick else ([30, 300], 300, 1, 1)
    count, runs = (20, 3) if not args.quick else (5, 1)
    changed = [("copy", 200), ("build", 20)] if not args.quick else [("copy", 20), ("build", 5)]

    load_before = os.getloadavg()[0]
    findings = Findings(ratio_size=cold_size)
    with tempfile.TemporaryDirectory(prefix="docker-mirror-bench-") as tmp:
        work = Path(tmp).resolve()
        try:
            notes = machine_notes()
            # Untimed set-up, side by side: seed the registries and start every daemon.
            progress("set-up: seeding registries, starting daemons")
            # Warm rows run in two repositories with a daemon each. `gen` holds every size and
            # side of the generation benchmark (26,600 targets at full size); `mirror`, a git
            # repository, holds build/, copy/ and changed/. They are kept apart because a daemon
            # that holds many targets makes every run slower, even runs about other targets
            # (measured: a re-mirror took about twice as long next to the generation targets).
            gen_repo = PantsRepo(work / "gen")
            write_warm_generation(gen_repo, sizes)
            mirror_repo = PantsRepo(work / "mirror")
            mirroring = prepare_mirroring(work, mirror_repo, count)
            changed_line = prepare_changed_line(work, mirror_repo, changed)
            mirror_repo.git("init", "-q")
            mirror_repo.git("add", "-A")
            mirror_repo.git("commit", "-qm", "initial")
            with side_by_side() as pool:
                futures = [pool.submit(gen_repo.warm_up), pool.submit(warm_up_mirror_repository, mirroring, changed_line)]
            for future in futures:
                future.result()
            mirror_repo.started_pids = mirror_repo.daemon_pids()
            setup_time = time.perf_counter() - STARTED
            progress("set-up done; timing from here, one thing at a time")
            profile = where_time_goes(work, mirror_repo, findings)
            tables = [bench_generation_cold(work, cold_size, cold_runs, findings)]
            tables.append(bench_generation_warm(gen_repo, sizes, warm_runs, findings))
            gen_repo.check_daemon("the warm generation runs")
            gen_repo.stop_daemon()
            tables += bench_mirroring(work, mirroring, runs, findings)
            mirror_repo.check_daemon("the mirroring runs")
            tables.append(bench_changed_line(changed_line))
            mirror_repo.stop_daemon()
        finally:
            stop_everything()
    total = time.perf_counter() - STARTED
    load_after = os.getloadavg()[0]

    report = [
        "# Benchmark results",
        "",
        f"Produced by `benchmarks/run{' --quick' if args.quick else ''}` on {time.strftime('%Y-%m-%d')} "
        f"in {total / 60:.1f} minutes ({setup_time:.0f} s of it untimed set-up); do not edit by hand.",
        "",
        "Pants rows are **warm** unless marked **cold**: warm runs go to a running pantsd (Pants' default "
        "mode: a developer's machine, or a CI job that runs several Pants commands), started by one untimed "
        "command in each throwaway repository; cold runs use `--no-pantsd`, a fresh process per command "
        "(a one-shot CI job). Cold rows: the cold start and profile below, table 1a, and one row of table 3.",
        "",
        "Machine:",
        "",
        *notes,
        f"- load average (1 min) at start and end: {load_before:.2f}, {load_after:.2f} (other work on the machine makes timings noisier)",
        *WARNINGS,
        "",
        "## Where Pants' time goes",
        "",
        *profile,
        "",
        "## The issue's targets",
        "",
        *target_summary(findings),
        "",
        "## Tables",
        "",
        *[table.markdown() for table in tables],
    ]
    Path(args.output).write_text("\n".join(report))
    print("\n".join(report))
    print(f"total: {total:.0f} s ({total / 60:.1f} minutes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
