"""What every scenario uses: running and timing commands, medians and slopes, what a command
asked of each registry, progress on stderr, and `Bench`, which owns the run's throwaway
directory and stops every pantsd and registry started in it."""

from __future__ import annotations

import concurrent.futures
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from docker_mirror.testutil.pants_repo import PantsRepo, PantsStats
from docker_mirror.testutil.registries import Registry, Traffic, start_registry

STARTED = time.perf_counter()


def since_start() -> float:
    return time.perf_counter() - STARTED


def progress(message: str) -> None:
    print(f"[{since_start():6.0f} s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Processes and timing


def run(cmd: Sequence[str], *, cwd: Path | None = None) -> str:
    """Runs `cmd` to completion; its stdout and stderr, or an error with their ends."""
    result = subprocess.run(
        list(cmd), cwd=cwd, capture_output=True, text=True, check=False, timeout=1800
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
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


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def seconds(values: Sequence[float]) -> str:
    return f"{median(values):.2f} s"


def spread(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def slope(smaller: tuple[int, float], larger: tuple[int, float], per: int = 1) -> float:
    """Seconds per `per` extra items between two (size, seconds) points: the marginal cost.
    Equal slopes over successive sizes mean linear growth."""
    (size_a, time_a), (size_b, time_b) = smaller, larger
    return (time_b - time_a) / ((size_b - size_a) / per)


@dataclass(frozen=True)
class Measured:
    """One timed command: its wall time, its output, and what it asked of each watched registry
    (by the name the scenario gave it, e.g. "source" and "destination")."""

    seconds: float
    output: str
    traffic: Mapping[str, Traffic]

    @property
    def requests(self) -> Traffic:
        """Every watched registry's traffic, added up."""
        return sum(self.traffic.values(), Traffic(0, 0, 0))

    def stats(self) -> PantsStats:
        """The `--stats-log` counters of a Pants command run with `--stats-log`."""
        return PantsStats.parse(self.output)


def measure(command: Callable[[], str], registries: Mapping[str, Registry] | None = None) -> Measured:
    """Times `command` alone; the access logs are read before and after, outside the timing."""
    watched = dict(registries or {})
    before = {name: registry.access_log() for name, registry in watched.items()}
    elapsed, output = timed_result(command)
    traffic = {
        name: Traffic.between(before[name], registry.access_log())
        for name, registry in watched.items()
    }
    return Measured(elapsed, output, traffic)


# ------------------------------------------------------------------------------------------
# The run's daemons and registries


class Bench:
    """One benchmark run: its throwaway directory, and every pantsd and registry started in it.
    `close()` stops them all; main calls it on exit, on error and on SIGTERM."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.warnings: list[str] = []  # for RESULTS.md: what makes a row less trustworthy
        self._registries: list[Registry] = []
        # Repositories a daemon was (maybe) started in, with the pids seen after its warm-up.
        self._daemons: dict[PantsRepo, list[int]] = {}
        self._closed = False

    def repo(self, name: str) -> PantsRepo:
        """A new throwaway Pants repository, `work/<name>`."""
        return PantsRepo(self.work / name)

    def registry(self, name: str) -> Registry:
        """A new empty loopback registry, stopped by `stop_registry` or `close`."""
        state_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work))
        try:
            registry = start_registry(state_dir)
        except BaseException:
            # start-registry may have started the registry before failing (or being
            # interrupted); stopping one needs only its state directory.
            Registry("", state_dir).stop()
            raise
        self._registries.append(registry)
        return registry

    def stop_registry(self, registry: Registry) -> None:
        """Stops `registry` once: its pid file stays, and a later kill could hit a reused pid."""
        if registry in self._registries:
            self._registries.remove(registry)
            registry.stop()

    def pants(
        self, repo: PantsRepo, *args: str, registry: Registry | None = None, daemon: bool = True
    ) -> str:
        """Runs `./pants` in `repo`, by default against its pantsd (started by the first such
        run, stopped by `close`), or with `daemon=False` as a fresh `--no-pantsd` process.
        Raises if Pants fails; returns stdout and stderr (`--stats-log` prints to stderr)."""
        if self._closed:
            raise RuntimeError("the benchmark is stopping: no more Pants runs")
        if daemon:
            self._daemons.setdefault(repo, [])
        try:
            result = repo.pants(*args, registry=registry, daemon=daemon, timeout=1800)
        finally:
            if self._closed and daemon:
                # `close` ran meanwhile (a SIGTERM during the side-by-side set-up, whose worker
                # threads run on): stop the daemon this command may have started.
                repo.stop_daemon()
        result.check()
        return result.stdout + result.stderr

    def warm_up(self, repo: PantsRepo, *args: str) -> None:
        """Starts `repo`'s pantsd with one untimed command (`list ::` by default)."""
        self.pants(repo, *(args or ("list", "::")))
        if not repo.daemon_pids():
            raise RuntimeError(f"no pantsd runs for {repo.root} after a Pants command with the daemon")
        self.mark_daemon(repo)
        progress(f"pantsd of {repo.root.name} started ({repo.daemon_rss_mib():.0f} MiB resident)")

    def mark_daemon(self, repo: PantsRepo) -> None:
        """From here on, `check_daemon` compares against the pantsd that runs now."""
        self._daemons[repo] = repo.daemon_pids()

    def check_daemon(self, repo: PantsRepo, section: str) -> None:
        """A pantsd that restarted (e.g. over its memory limit) would have put a start-up into a
        warm row: say so in the results."""
        if repo.daemon_pids() != self._daemons.get(repo):
            self.warnings.append(
                f"- pantsd of `{repo.root.name}` restarted during {section}: one of its rows includes a start-up."
            )
            self.mark_daemon(repo)
        progress(f"pantsd of {repo.root.name} after {section}: {repo.daemon_rss_mib():.0f} MiB resident")

    def stop_daemon(self, repo: PantsRepo) -> None:
        repo.stop_daemon()
        self._daemons.pop(repo, None)

    def close(self) -> None:
        """Stops every daemon and registry still running; one failure does not spare the rest."""
        self._closed = True
        for repo in list(self._daemons):
            _despite_errors(lambda: self.stop_daemon(repo))
        for registry in list(self._registries):
            _despite_errors(lambda: self.stop_registry(registry))


def _despite_errors(stop: Callable[[], None]) -> None:
    try:
        stop()
    except Exception as e:  # report it, and go on stopping the others
        print(f"benchmarks: cleaning up: {e}", file=sys.stderr)
