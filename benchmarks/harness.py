"""What every scenario uses: running and timing commands, medians and slopes, what a command
asked of each registry (and which client asked it), the CPU it used, progress on stderr, and
`Bench`, which owns the run's throwaway directory and stops every pantsd, registry and delaying
proxy started in it."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from docker_mirror_testutil.pants_repo import PantsRepo, PantsStats
from docker_mirror_testutil.registries import Registry, Traffic, start_registry
from docker_mirror_testutil.tcp_proxy import DelayingProxy

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


# ------------------------------------------------------------------------------------------
# CPU time, and which client sent which request


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int, *, with_children: bool = True) -> float:
    """CPU seconds (user + system) that process `pid` used so far, with those of its children
    that it has waited for (the processes pantsd ran, the registry's none), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3 of proc(5), so utime (14) .. cstime (17) are 11..14.
    ticks = [int(value) for value in fields[11:15 if with_children else 13]]
    return sum(ticks) / _TICKS


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children (and theirs): the commands `run` ran."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    """CPU seconds of this process, every thread: the harness and any `DelayingProxy` in it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Cpu:
    """CPU seconds one command used, user + system, by whom."""

    command: float  # the processes it started itself (this process's children): a Pants client, skopeo
    daemon: float  # the daemons it handed its work to (pantsd), their own: Pants' rules
    daemon_processes: float  # the processes those daemons ran for it (and theirs)
    registries: float  # the watched registries' processes
    harness: float  # this process: the harness, and the delaying proxies in its threads

    @property
    def tool(self) -> float:
        """Everything the tool itself used: its processes, its daemons and theirs."""
        return self.command + self.daemon + self.daemon_processes


_AGENT = re.compile(r'"(?P<method>[A-Z]+) (?P<path>/v2/\S*) HTTP/[^"]*" .* "(?P<agent>[^"]*)"$')


def clients(log: Iterable[str], method: str, kind: str = "manifests") -> dict[str, int]:
    """How many `method` requests for /v2/<name>/<kind>/... each client sent (by its User-Agent's
    first word, e.g. `skopeo/1.9.3`), from the lines of an access log."""
    counts: collections.Counter[str] = collections.Counter()
    for line in log:
        match = _AGENT.search(line)
        if match and match["method"] == method and f"/{kind}/" in match["path"]:
            counts[(match["agent"].split() or ["(none)"])[0]] += 1
    return dict(counts)


_BLOB_WRITE = re.compile(r'"(?P<method>POST|PUT) /v2/\S+/blobs/uploads/(?P<rest>\S*) HTTP/[^"]*" (?P<status>\d+)')


def blob_writes(log: Iterable[str]) -> tuple[int, int]:
    """Blobs uploaded (an upload's closing PUT) and blobs mounted from another repository of the
    registry (a POST with `mount=` answered 201, no data sent), from the lines of an access log."""
    uploaded = mounted = 0
    for line in log:
        match = _BLOB_WRITE.search(line)
        if not match:
            continue
        if match["method"] == "PUT" and match["status"] == "201":
            uploaded += 1
        elif match["method"] == "POST" and "mount=" in match["rest"] and match["status"] == "201":
            mounted += 1
    return uploaded, mounted


@dataclass(frozen=True)
class Measured:
    """One timed command: its wall time, its output, what it asked of each watched registry (by
    the name the scenario gave it, e.g. "source" and "destination"), the new lines of each one's
    access log, and the CPU it used."""

    seconds: float
    output: str
    traffic: Mapping[str, Traffic]
    log: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cpu: Cpu | None = None

    @property
    def requests(self) -> Traffic:
        """Every watched registry's traffic, added up."""
        return sum(self.traffic.values(), Traffic(0, 0, 0))

    def stats(self) -> PantsStats:
        """The `--stats-log` counters of a Pants command run with `--stats-log`."""
        return PantsStats.parse(self.output)


def measure(
    command: Callable[[], str],
    registries: Mapping[str, Registry] | None = None,
    daemons: Sequence[int] = (),
) -> Measured:
    """Times `command` alone; the access logs and CPU counters are read before and after,
    outside the timing. `daemons`: pids of long-running processes the command hands its work
    to (a pantsd), whose CPU, with their children's, counts as the command's."""
    watched = dict(registries or {})
    before = {name: registry.access_log() for name, registry in watched.items()}
    registry_pids = [pid for pid in (registry.pid() for registry in watched.values()) if pid]

    def cpu_now() -> tuple[float, float, float, float, float]:
        daemon = sum(cpu_of(pid, with_children=False) for pid in daemons)
        return (
            children_cpu(),
            daemon,
            sum(cpu_of(pid) for pid in daemons) - daemon,
            sum(cpu_of(pid) for pid in registry_pids),
            own_cpu(),
        )

    cpu_before = cpu_now()
    elapsed, output = timed_result(command)
    cpu_after = cpu_now()
    traffic, log = {}, {}
    for name, registry in watched.items():
        # A registry logs a request after answering it: wait for the last lines, so they are
        # neither missed here nor counted for the next command.
        after = registry.settled_access_log(quiet=0.3)
        traffic[name] = Traffic.between(before[name], after)
        log[name] = tuple(after[len(before[name]) :])
    cpu = Cpu(*(b - a for a, b in zip(cpu_before, cpu_after)))
    return Measured(elapsed, output, traffic, log, cpu)


# ------------------------------------------------------------------------------------------
# How many processes ran at once


@dataclass(frozen=True)
class Concurrency:
    """How many processes of one name were alive at once during a command, sampled every
    `interval` seconds."""

    counts: tuple[int, ...]
    interval: float

    @property
    def peak(self) -> int:
        return max(self.counts, default=0)

    @property
    def busy_seconds(self) -> float:
        """About how long at least one was alive."""
        return sum(1 for c in self.counts if c) * self.interval

    @property
    def busy_mean(self) -> float:
        """How many were alive at once on average, while at least one was."""
        busy = [c for c in self.counts if c]
        return statistics.fmean(busy) if busy else 0.0


def _descendants_copying(roots: Sequence[int], copier: Copier) -> int:
    """How many of `copier`'s processes run below any of `roots`."""
    parents: dict[int, int] = {}
    copying: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
            pid = int(stat.parent.name)
            parents[pid] = int(rest[1])
            if comm == copier.comm or (
                copier.argument is not None
                and comm.startswith("python")  # read a command line only where it can match
                and copier.argument in (stat.parent / "cmdline").read_bytes().split(b"\0")
            ):
                copying.append(pid)
        except OSError:
            continue
    wanted, count = set(roots), 0
    for pid in copying:
        ancestor, depth = parents.get(pid, 0), 0
        while ancestor > 1 and ancestor not in wanted and depth < 10:
            ancestor, depth = parents.get(ancestor, 0), depth + 1
        count += ancestor in wanted
    return count


@dataclass(frozen=True)
class Copier:
    """The processes a tool copies with: a program (its `comm`), or a Python process given
    `argument` (the probe runs as a venv's python, known by its request file)."""

    name: str  # as tables name it
    comm: str | None = None
    argument: bytes | None = None


SAMPLE_INTERVAL = 0.1  # seconds


@contextlib.contextmanager
def sampling(roots: Sequence[int], copier: Copier) -> Iterator[Callable[[], Concurrency]]:
    """While the block runs, counts every `SAMPLE_INTERVAL` s `copier`'s processes below
    `roots` (e.g. the probes a pantsd runs); the function it yields returns them,
    once the block is done. Only processes below `roots` count: other work on the machine may
    run the same programs."""
    counts: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_INTERVAL):
            counts.append(_descendants_copying(roots, copier))

    thread = threading.Thread(target=sample, name="sampler", daemon=True)
    thread.start()
    try:
        yield lambda: Concurrency(tuple(counts), SAMPLE_INTERVAL)
    finally:
        done.set()
        thread.join(10)


# ------------------------------------------------------------------------------------------
# The run's daemons and registries


class Bench:
    """One benchmark run: its throwaway directory, and every pantsd and registry started in it.
    `close()` stops them all; main calls it on exit, on error and on SIGTERM."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.warnings: list[str] = []  # for RESULTS.md: what makes a row less trustworthy
        self._registries: list[Registry] = []
        self._proxies: list[DelayingProxy] = []
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

    def proxy(self, target: str, delay_seconds: float, bytes_per_second: float | None = None) -> DelayingProxy:
        """A new `DelayingProxy` on loopback in front of `target` ("host:port"), stopped by
        `stop_proxy` or `close`."""
        proxy = DelayingProxy(target, delay_seconds, bytes_per_second).start()
        self._proxies.append(proxy)
        return proxy

    def stop_proxy(self, proxy: DelayingProxy) -> None:
        if proxy in self._proxies:
            self._proxies.remove(proxy)
            proxy.stop()

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
        for proxy in list(self._proxies):
            _despite_errors(lambda: self.stop_proxy(proxy))
        for registry in list(self._registries):
            _despite_errors(lambda: self.stop_registry(registry))


def _despite_errors(stop: Callable[[], None]) -> None:
    try:
        stop()
    except Exception as e:  # report it, and go on stopping the others
        print(f"benchmarks: cleaning up: {e}", file=sys.stderr)
