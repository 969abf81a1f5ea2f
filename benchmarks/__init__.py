"""Benchmarks of the docker_mirror plugin, run by `benchmarks/run` (`python3 -m benchmarks` from
the repository root): plain Python 3.9+ and its standard library, real processes only.

  harness.py    running and timing commands, what a run asked of each registry, and `Bench`,
                which stops every pantsd and registry it started (on exit, error or SIGTERM)
  report.py     tables, target lines and RESULTS.md
  baselines.py  what a user would otherwise reach for (`skopeo sync`, a docker loop), seeding
  scenarios/    one module per measured scenario
  __main__.py   sizes, the shared untimed set-up, the scenarios in order, RESULTS.md

The registries and Pants repositories are the tests' own (`docker_mirror_testutil`).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# docker_mirror_testutil is stdlib-only at import, so the benchmarks need no virtualenv. It finds
# the repository's scripts from the working directory, as the tests do.
if Path.cwd().resolve() != REPO:
    raise SystemExit(f"run the benchmarks from {REPO} (benchmarks/run does)")
if str(REPO / "pants-plugins") not in sys.path:
    sys.path.insert(0, str(REPO / "pants-plugins"))
