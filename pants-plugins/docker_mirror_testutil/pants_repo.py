"""Throwaway repositories with this project's `./pants`, `pants.toml` and plugin, in which the
real Pants runs: as a fresh process (`--no-pantsd`, a one-shot CI job) or against the
repository's own pantsd (Pants' default mode, what a developer sees)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from docker_mirror_testutil.machine import REPO_ROOT
from docker_mirror_testutil.registries import Registry

# A copy-mode generator of `images.txt`, and an environment in which no Docker engine answers:
# copy mode needs none.
COPY_BUILD = "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy')\n"
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}

_KEPT = re.compile(r"Preserving local process execution dir (\S+) for (.+)$", re.M)


def kept_sandboxes(output: str) -> dict[str, Path]:
    """The sandboxes a run with `--keep-sandboxes=always` kept, by their process's description."""
    return {description.strip(): Path(path) for path, description in _KEPT.findall(output)}


@dataclass(frozen=True, repr=False)
class PantsResult:
    returncode: int
    stdout: str
    stderr: str

    def __repr__(self) -> str:  # shown in full by failing asserts
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def check(self) -> PantsResult:
        """This result, if Pants exited 0; otherwise raises with its output."""
        if self.returncode != 0:
            raise RuntimeError(f"./pants failed: {self!r}")
        return self


@dataclass(frozen=True)
class PantsStats:
    """Counters that `--stats-log` prints at the end of a run."""

    processes: int  # local_execution_requests: processes Pants ran (not from a cache)
    process_ms: int  # local_process_total_time_run_ms: their run times added up

    @classmethod
    def parse(cls, output: str) -> PantsStats:
        counters = dict(re.findall(r"^\s+(\w+): (\d+)$", output, re.M))
        if "local_execution_requests" not in counters:
            raise RuntimeError(f"no --stats-log counters in the output:\n{output[-2000:]}")
        return cls(
            int(counters["local_execution_requests"]),
            int(counters.get("local_process_total_time_run_ms", 0)),
        )


def mirror_registry_option(registry: Registry) -> str:
    """`--docker-registries` making `registry` the only default one, under `mirror/`."""
    registries = {
        "mirror": {
            "address": registry.address,
            "default": True,
            "repository": "mirror/{target_repository}",
        }
    }
    return f"--docker-registries={registries!r}"


def without_toml_tables(text: str, names: Iterable[str]) -> str:
    """`text`, a TOML file, without the tables `names` (`[name]` and its keys, up to the next
    table), so that those options take Pants' defaults."""
    drop = {f"[{name}]" for name in names}
    kept: list[str] = []
    dropping = False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            dropping = line.strip() in drop
        if not dropping:
            kept.append(line)
    return "".join(kept)


class PantsRepo:
    """A temporary repository with this project's `./pants`, `pants.toml` and plugin; with
    `copy_plugin=False`, without the plugin (a repository that installs it as a wheel); with
    `pants_defaults_for`, without those tables of pants.toml (e.g. `changed`)."""

    def __init__(
        self, root: Path, *, copy_plugin: bool = True, pants_defaults_for: Iterable[str] = ()
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / "pants", root / "pants")
        toml = (REPO_ROOT / "pants.toml").read_text()
        (root / "pants.toml").write_text(without_toml_tables(toml, pants_defaults_for))
        if not copy_plugin:
            return
        shutil.copytree(
            REPO_ROOT / "pants-plugins" / "docker_mirror",
            root / "pants-plugins" / "docker_mirror",
            ignore=shutil.ignore_patterns(
                "__pycache__", "*_test.py", "conftest.py", "testutil", "BUILD"
            ),
        )

    def write(self, files: dict[str, str]) -> None:
        for relpath, content in files.items():
            path = self.root / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def pants(
        self,
        *args: str,
        registry: Registry | None = None,
        daemon: bool = False,
        timeout: int = 600,
        env: dict[str, str] | None = None,
    ) -> PantsResult:
        """Runs the real `./pants`: a fresh process, or with `daemon=True` against this
        repository's pantsd (started by the first such run; `stop_daemon` ends it).
        `registry` becomes the only default registry; `env` is added to this environment."""
        options = [] if daemon else ["--no-pantsd"]
        if registry is not None:
            options.append(mirror_registry_option(registry))
        result = subprocess.run(
            [str(self.root / "pants"), *options, *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **env} if env else None,
        )
        return PantsResult(result.returncode, result.stdout, result.stderr)

    def daemon_pids(self) -> list[int]:
        """pantsd names itself `pantsd [<buildroot>]`: the pids of this repository's."""
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

    def daemon_rss_mib(self) -> float:
        total = 0.0
        for pid in self.daemon_pids():
            status = Path(f"/proc/{pid}/status").read_text()
            match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
            total += int(match.group(1)) / 1024 if match else 0
        return total

    def stop_daemon(self) -> None:
        """Stops this repository's pantsd, if one runs: SIGTERM, then SIGKILL after 10 s."""
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
