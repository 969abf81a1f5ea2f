"""What a scenario hands back (`Section`: tables and target lines), and RESULTS.md."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Sequence

from benchmarks.harness import run


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join(" --- " for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += ["", *self.notes]
        return "\n".join(lines).rstrip() + "\n"


@dataclass(frozen=True)
class Section:
    """What one scenario adds to RESULTS.md: its tables, its lines (`- ...`) under "The issue's
    targets", in the order the scenarios ran, and any table that sums the targets up."""

    tables: tuple[Table, ...]
    targets: tuple[str, ...] = ()
    summary: tuple[Table, ...] = ()  # under "The targets", after every section's lines


def verdict(holds: bool) -> str:
    return "holds" if holds else "does not hold"


def machine_notes() -> list[str]:
    storage = run(["docker", "info", "--format", "{{.Driver}}"]).strip()
    engine = run(["docker", "version", "--format", "{{.Server.Version}}"]).strip()
    skopeo = run(["skopeo", "--version"]).strip()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"- cores: {os.cpu_count()}, memory: {memory:.0f} GiB, {platform.platform()}",
        f"- Docker engine {engine}, storage driver `{storage}`; {skopeo}; registries: Debian `docker-registry` on 127.0.0.1",
    ]


@dataclass(frozen=True)
class Report:
    command: str  # how it was produced, e.g. "benchmarks/run --quick"
    total: float  # seconds, set-up included
    setup: float  # seconds of untimed set-up
    modes: str  # the paragraph on warm and cold rows
    machine: Sequence[str]  # `- ...` lines, load and warnings included
    time_goes: Sequence[str]  # `- ...` lines under "Where Pants' time goes"
    sections: Sequence[Section]

    def markdown(self) -> str:
        return "\n".join(
            [
                "# Benchmark results",
                "",
                f"Produced by `{self.command}` on {time.strftime('%Y-%m-%d')} "
                f"in {self.total / 60:.1f} minutes ({self.setup:.0f} s of it untimed set-up); do not edit by hand.",
                "",
                self.modes,
                "",
                "Machine:",
                "",
                *self.machine,
                "",
                "## Where Pants' time goes",
                "",
                *self.time_goes,
                "",
                "## The issue's targets",
                "",
                *[line for section in self.sections for line in section.targets],
                "",
                *[table.markdown() for section in self.sections for table in section.summary],
                "## Tables",
                "",
                *[table.markdown() for section in self.sections for table in section.tables],
            ]
        )
