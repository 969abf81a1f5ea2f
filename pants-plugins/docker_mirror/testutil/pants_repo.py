"""Throwaway repositories with this project's `./pants`, `pants.toml` and plugin, in which the
real Pants runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from docker_mirror.testutil.machine import REPO_ROOT
from docker_mirror.testutil.registries import Registry


@dataclass(frozen=True, repr=False)
class PantsResult:
    returncode: int
    stdout: str
    stderr: str

    def __repr__(self) -> str:  # shown in full by failing asserts
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class PantsRepo:
    """A temporary repository with this project's `./pants`, `pants.toml` and plugin."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for relpath in ("pants", "pants.toml"):
            shutil.copy2(REPO_ROOT / relpath, root / relpath)
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
        timeout: int = 600,
        env: dict[str, str] | None = None,
    ) -> PantsResult:
        """Runs the real `./pants` (no daemon); `registry` becomes the only default registry;
        `env` is added to this process's environment."""
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


