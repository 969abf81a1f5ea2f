#!/usr/bin/env python3
"""Benchmarks: target generation at scale and mirroring throughput, side by side with what a
user would otherwise reach for, in one run, with real processes only.

Run it with `benchmarks/run` (which installs and starts what is needed); it writes
`benchmarks/RESULTS.md`. Stdlib only, so it runs on any Python 3.8+.

Scenarios:
  1. generation: `pants list ::` of one spec file with N entries versus the same N
     `docker_image` targets written by hand in a BUILD file.
  2. first mirror of N small images between two loopback registries: our build method, our
     copy method, a shell loop of `docker pull/tag/push`, and `skopeo sync`.
  3. re-mirror when nothing changed: the same four, run again; plus the requests each sent.
  4. one line changed in a 200-line spec: the README's `--changed-since` command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    address: str
    state_dir: Path

    @classmethod
    def start(cls, parent: Path, name: str) -> Registry:
        state_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
        port = free_port()
        run([str(SCRIPTS / "start-registry"), str(port), str(state_dir)])
        return cls(f"127.0.0.1:{port}", state_dir)

    def stop(self) -> None:
        pid = self.state_dir / "registry.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text()), 15)
            except ProcessLookupError:
                pass

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


class PantsRepo:
    def __init__(self, root: Path) -> None:
        self.root = root
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

    def pants(self, *args: str, registry: Registry | None = None) -> str:
        options = ["--no-pantsd"]
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
        return run([str(self.root / "pants"), *options, *args], cwd=self.root)

    def git(self, *args: str) -> str:
        return run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args], cwd=self.root)


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


def seconds(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s"


def spread(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


# ------------------------------------------------------------------------------------------
# 1. Generation


def bench_generation(work: Path, sizes: list[int], runs: int, ratio_size: int) -> Table:
    table = Table(
        f"1. Generation: `pants --no-pantsd list ::` (medians of {runs} runs at {ratio_size}; 1 run elsewhere)",
        ["entries", "docker_mirror_images (spec file)", "hand-written docker_image targets", "ratio"],
    )
    for size in sizes:
        spec_repo = PantsRepo(work / f"gen-spec-{size}")
        spec_repo.write("src/BUILD", "docker_mirror_images(name='mirror', sources=['images.txt'])\n")
        spec_repo.write(
            "src/images.txt", "".join(f"registry.example.com/team/app{i}:1.{i}\n" for i in range(size))
        )
        hand_repo = PantsRepo(work / f"gen-hand-{size}")
        hand_repo.write(
            "src/BUILD",
            "".join(
                f"docker_image(name='app{i}', instructions=['FROM registry.example.com/team/app{i}:1.{i}'], "
                f"repository='team/app{i}', image_tags=['1.{i}'], pull=True)\n"
                for i in range(size)
            ),
        )
        n = runs if size == ratio_size else 1
        spec_times, hand_times = [], []
        for _ in range(n):
            # Interleave, so a slow moment of the machine hits both sides alike.
            spec_times.append(timed(lambda: spec_repo.pants("list", "::")))
            hand_times.append(timed(lambda: hand_repo.pants("list", "::")))
        listed = spec_repo.pants("list", "src::").count("src:mirror#")
        if listed != size:
            raise RuntimeError(f"expected {size} generated targets, listed {listed}")
        ratio = statistics.median(spec_times) / statistics.median(hand_times)
        table.rows.append([f"{size:,}", seconds(spec_times), seconds(hand_times), f"{ratio:.2f}x"])
    table.notes.append(
        "Both sides include Pants' start-up without a daemon (measured alone in the machine notes)."
    )
    return table


# ------------------------------------------------------------------------------------------
# 2 + 3. First mirror and re-mirror


def seed_upstream(upstream: Registry, count: int) -> list[str]:
    references = []
    for i in range(count):
        reference = f"{upstream.address}/bench/img{i:02d}:1.{i}"
        run([str(SCRIPTS / "make-image"), reference, f"bench image {i}"])
        references.append(reference)
    return references


def forget_local_images(references: list[str]) -> None:
    """Removes images from the engine, so every method really pulls on a first mirror."""
    listed = run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).split()
    wanted = {ref.split("/", 1)[1] for ref in references}
    doomed = [ref for ref in listed if ref.split("/", 1)[-1] in wanted or "/mirror/bench/" in ref]
    if doomed:
        subprocess.run(["docker", "image", "rm", "-f", *doomed], capture_output=True, check=False)


def mirror_methods(work: Path, references: list[str]) -> dict[str, Callable[[Registry], object]]:
    spec = "".join(f"{ref}\n" for ref in references)
    build_repo = PantsRepo(work / "mirror-build")
    build_repo.write("src/BUILD", "docker_mirror_images(name='mirror', sources=['images.txt'])\n")
    build_repo.write("src/images.txt", spec)
    copy_repo = PantsRepo(work / "mirror-copy")
    copy_repo.write(
        "src/BUILD", "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy')\n"
    )
    copy_repo.write("src/images.txt", spec)

    def docker_loop(dest: Registry) -> None:
        script = "set -e\n" + "".join(
            f"docker pull -q {ref} >/dev/null\n"
            f"docker tag {ref} {dest.address}/mirror/{ref.split('/', 1)[1]}\n"
            f"docker push -q {dest.address}/mirror/{ref.split('/', 1)[1]} >/dev/null\n"
            for ref in references
        )
        run(["bash", "-c", script])

    def skopeo_sync(dest: Registry) -> None:
        upstream = references[0].split("/", 1)[0]
        images: dict[str, list[str]] = {}
        for ref in references:
            repository, _, tag = ref.split("/", 1)[1].rpartition(":")
            images.setdefault(repository, []).append(tag)
        config = work / "skopeo-sync.yaml"
        # JSON is YAML.
        config.write_text(json.dumps({upstream: {"images": images, "tls-verify": False}}))
        run(
            [
                "skopeo", "sync", "--all", "--preserve-digests", "--src", "yaml", "--dest", "docker",
                "--dest-tls-verify=false", str(config), f"{dest.address}/mirror/bench",
            ]
        )

    return {
        "pants publish, method=build": lambda dest: build_repo.pants("publish", "src::", registry=dest),
        "pants publish, method=copy": lambda dest: copy_repo.pants("publish", "src::", registry=dest),
        "docker pull/tag/push loop": docker_loop,
        "skopeo sync --all": skopeo_sync,
    }


def bench_mirroring(work: Path, count: int, runs: int) -> tuple[Table, Table]:
    upstream = Registry.start(work, "upstream")
    references = seed_upstream(upstream, count)
    methods = mirror_methods(work, references)
    first: dict[str, list[float]] = {name: [] for name in methods}
    second: dict[str, list[float]] = {name: [] for name in methods}
    traffic: dict[str, Traffic] = {}
    for _ in range(runs):
        for name, mirror in methods.items():
            forget_local_images(references)
            dest = Registry.start(work, "dest")
            try:
                first[name].append(timed(lambda: mirror(dest)))
                dest_log, upstream_log = dest.access_log(), upstream.access_log()
                second[name].append(timed(lambda: mirror(dest)))
                traffic[name] = Traffic.between(dest_log, dest.access_log()) + Traffic.between(
                    upstream_log, upstream.access_log()
                )
            finally:
                dest.stop()
    upstream.stop()

    def table(title: str, data: dict[str, list[float]], with_traffic: bool) -> Table:
        best_alternative = min(
            statistics.median(v) for k, v in data.items() if not k.startswith("pants")
        )
        columns = ["method", "median", "runs (s)", "ratio to best alternative"]
        if with_traffic:
            columns += ["registry requests", "blob uploads", "manifest PUTs"]
        t = Table(title, columns)
        for name, values in data.items():
            row = [name, seconds(values), spread(values), f"{statistics.median(values) / best_alternative:.2f}x"]
            if with_traffic:
                row += [str(traffic[name].requests), str(traffic[name].blob_uploads), str(traffic[name].manifest_puts)]
            t.rows.append(row)
        return t

    return (
        table(f"2. First mirror of {count} small images ({runs} runs each)", first, False),
        table(
            f"3. Re-mirror of the same {count} images when nothing changed ({runs} runs each)",
            second,
            True,
        ),
    )


# ------------------------------------------------------------------------------------------
# 4. One line changed in a 200-line spec


def bench_changed_line(work: Path, cases: list[tuple[str, int]]) -> Table:
    upstream = Registry.start(work, "changed-upstream")
    base = f"{upstream.address}/bench/app"
    run([str(SCRIPTS / "make-image"), f"{base}:1.0", "changed-line bench"])
    for i in range(max(lines for _, lines in cases)):
        upstream.put_tag("bench/app", "1.0", f"1.{i}")
    upstream.put_tag("bench/app", "1.0", "2.0")
    table = Table(
        "4. One line changed in an N-line spec: `pants --changed-since=HEAD~1 publish`",
        ["method", "N", "wall time", "images selected (`--changed-since=HEAD~1 list`)", "manifests pushed"],
    )
    for method, lines in cases:
        dest = Registry.start(work, "changed-dest")
        repo = PantsRepo(work / f"changed-{method}")
        repo.write(
            "src/BUILD",
            f"docker_mirror_images(name='mirror', sources=['images.txt'], method='{method}')\n",
        )
        spec_lines = [f"{base}:1.{i} AS app{i}\n" for i in range(lines)]
        repo.write("src/images.txt", "".join(spec_lines))
        repo.git("init", "-q")
        repo.git("add", "-A")
        repo.git("commit", "-qm", "initial")
        repo.pants("publish", "src::", registry=dest)  # the mirror is current before the change
        spec_lines[lines // 2] = f"{base}:2.0 AS app{lines // 2}\n"
        repo.write("src/images.txt", "".join(spec_lines))
        repo.git("commit", "-qam", "bump one image")
        selected = repo.pants("--changed-since=HEAD~1", "list").count("src:mirror#")
        before = dest.access_log()
        elapsed = timed(lambda: repo.pants("--changed-since=HEAD~1", "publish", registry=dest))
        pushed = Traffic.between(before, dest.access_log()).manifest_puts
        table.rows.append([method, str(lines), f"{elapsed:.2f} s", str(selected), str(pushed)])
        dest.stop()
    upstream.stop()
    table.notes.append(
        "Pants selects images per spec file: every image of the changed file is selected; "
        "copy mode then skips those whose destination digest already matches. Build mode is "
        "measured at a smaller N: it rebuilds and pushes every selected image."
    )
    return table


# ------------------------------------------------------------------------------------------


def machine_notes(work: Path) -> list[str]:
    storage = run(["docker", "info", "--format", "{{.Driver}}"]).strip()
    engine = run(["docker", "version", "--format", "{{.Server.Version}}"]).strip()
    skopeo = run(["skopeo", "--version"]).strip()
    empty = PantsRepo(work / "startup")
    empty.write("src/BUILD", "")
    startup = [timed(lambda: empty.pants("list", "::")) for _ in range(3)]
    return [
        f"- cores: {os.cpu_count()}, memory: {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, {platform.platform()}",
        f"- Docker engine {engine}, storage driver `{storage}`; {skopeo}; registries: Debian `docker-registry` on 127.0.0.1",
        f"- Pants 2.17.1 without a daemon (`--no-pantsd`): `pants list ::` of an empty repository takes {seconds(startup)} (median of 3), a fixed cost in every Pants row",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: checks the harness")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args()

    # Sized to finish in about ten minutes on 2 cores: every Pants row pays Pants' start-up.
    sizes, gen_runs, ratio_size = ([300, 3000, 10000], 2, 3000) if not args.quick else ([30, 300], 1, 300)
    count, runs = (20, 2) if not args.quick else (5, 1)
    changed = [("copy", 200), ("build", 20)] if not args.quick else [("copy", 20), ("build", 5)]

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="docker-mirror-bench-") as tmp:
        work = Path(tmp)
        notes = machine_notes(work)
        tables = [bench_generation(work, sizes, gen_runs, ratio_size)]
        tables += bench_mirroring(work, count, runs)
        tables.append(bench_changed_line(work, changed))
    total = time.perf_counter() - started

    report = [
        "# Benchmark results",
        "",
        f"Produced by `benchmarks/run{' --quick' if args.quick else ''}` on {time.strftime('%Y-%m-%d')} in {total / 60:.1f} minutes; do not edit by hand.",
        "",
        "Machine:",
        "",
        *notes,
        "",
        *[table.markdown() for table in tables],
    ]
    Path(args.output).write_text("\n".join(report))
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
