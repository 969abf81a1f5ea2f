"""What the end-to-end tests and benchmarks need from this machine: the repository's scripts, a
Docker engine, skopeo. Missing pieces skip a test, or fail it under `CI=true`.

Plain stdlib, so that `benchmarks/` can use it without pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Pants runs tests in a sandbox holding the files they depend on, laid out as in the
# repository, with the sandbox as the working directory; plain pytest and the benchmarks run
# from the repository root.
REPO_ROOT = Path.cwd()
SCRIPTS = REPO_ROOT / "scripts"


class Unavailable(Exception):
    """Something this machine lacks, outside pytest."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skips a test that needs something this machine lacks, and fails it under CI; outside
    pytest (the benchmarks, which install what they need first) raises `Unavailable`."""
    try:
        import pytest
    except ImportError:
        raise Unavailable(reason) from None
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def ensure_docker_engine() -> None:
    if not shutil.which("docker"):
        unavailable("the docker CLI is not installed (scripts/install-deps installs it)")
    result = subprocess.run(
        [SCRIPTS / "ensure-docker-engine"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        unavailable(f"no Docker engine: {result.stderr.strip()}")


def require_skopeo() -> None:
    if not shutil.which("skopeo"):
        unavailable("skopeo is not installed (scripts/install-deps installs it)")


