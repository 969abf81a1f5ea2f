"""A user's repository: the plugin's wheel, built by the real `./pants package`, installed through
`[GLOBAL].plugins` into a fresh repository that keeps Pants' defaults (no `[changed]` section, its
own interpreter constraints), run by Pants itself with none of the environment variables this
repository's `./pants` sets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from docker_mirror_testutil.machine import REPO_ROOT
from docker_mirror_testutil.pants_repo import PantsRepo, PantsResult
from docker_mirror_testutil.registries import Registry

DIST = "pants-plugins/docker_mirror:dist"
# What the wheel's build reads (`//:repo-config` and `//:dist-inputs` in the root BUILD file).
BUILD_INPUTS = ("pants", "pants.toml", "BUILD", "mypy.ini", "3rdparty/python", "pants-plugins")
# A user's environment: what a shell has, and nothing that this repository's `./pants` exports.
USER_ENV_VARS = ("PATH", "HOME", "LANG", "TMPDIR", "DOCKER_HOST", "DOCKER_CONFIG")


def copy_of_this_repository(root: Path) -> PantsRepo:
    """The files the wheel's build reads, in a repository of their own."""
    repo = PantsRepo(root, copy_plugin=False)
    for relpath in BUILD_INPUTS:
        source, target = REPO_ROOT / relpath, root / relpath
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
            shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    return repo


def build_wheel(root: Path, extra_files: dict[str, str] | None = None) -> Path:
    """The plugin's wheel, built with the real `./pants package` in a copy of this repository
    (with `extra_files` added to the copy)."""
    builder = copy_of_this_repository(root)
    builder.write(extra_files or {})
    built = builder.pants("package", DIST, timeout=900)
    if built.returncode != 0:
        raise RuntimeError(f"building the wheel failed: {built!r}")
    [wheel] = (builder.root / "dist").glob("*.whl")
    return wheel


def _toml_value(key: str) -> str:
    match = re.search(rf'^\s*{key}\s*=\s*"([^"]+)"', (REPO_ROOT / "pants.toml").read_text(), re.M)
    assert match, f"pants.toml has no {key}"
    return match.group(1)


def _pex_known_version() -> str:
    match = re.search(r'^\s*"(v[^"|]+\|linux_x86_64\|[^"]+)"', (REPO_ROOT / "pants.toml").read_text(), re.M)
    assert match, "pants.toml has no [pex-cli] known_versions entry"
    return match.group(1)


def bootstrapped_pants() -> tuple[Path, Path]:
    """(Pants' own `pants` entry point, the pex tool) as `./pants` installed them from PyPI: a
    user runs Pants with a launcher of their own; this machine reaches no GitHub, where Pants'
    launcher and pex would come from."""
    subprocess.run([str(REPO_ROOT / "pants"), "--version"], check=True, capture_output=True)
    cache = Path(
        os.environ.get("PANTS_BOOTSTRAP_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pants-docker-mirror"
    )
    pants = cache / f"pants-{_toml_value('pants_version')}-py3.9" / "bin" / "pants"
    pex = cache / "pex" / f"pex-{_toml_value('version')}"
    assert pants.is_file() and pex.is_file(), (pants, pex)
    return pants, pex


def user_pants_toml(*, requirement: str, find_links: Path, pex: Path, named_caches: Path) -> str:
    """A user's pants.toml: the plugin from the wheel, Pants' defaults otherwise. Two settings
    only these tests need: pex from a local file (this machine reaches no GitHub) and the cache
    directory of the wheel's install (see `PluginInstall`)."""
    version, _, _ = _pex_known_version().partition("|")
    return f"""\
[GLOBAL]
pants_version = "{_toml_value('pants_version')}"
plugins = ["{requirement}"]
backend_packages = ["pants.backend.docker", "docker_mirror"]
named_caches_dir = "{named_caches}"

[python-repos]
find_links = ["file://{find_links}"]

[python]
interpreter_constraints = ["CPython>=3.9,<3.13"]

[pex-cli]
version = "{version}"
known_versions = ["{_pex_known_version()}"]
url_template = "file://{pex.parent}/pex-{{version}}"
"""


@dataclass(frozen=True)
class PluginInstall:
    """Where users' repositories find the wheel, and the cache directory they share: one per
    wheel built, since Pants keys a resolved plugin by its requirement, not the wheel's bytes."""

    wheel: Path
    find_links: Path
    named_caches: Path

    @classmethod
    def create(cls, wheel: Path, root: Path) -> PluginInstall:
        find_links, named_caches = root / "find-links", root / "named-caches"
        find_links.mkdir(parents=True)
        shutil.copy2(wheel, find_links / wheel.name)
        return cls(wheel, find_links, named_caches)


class UserRepo(PantsRepo):
    """A git repository with a user's pants.toml and the plugin from its wheel."""

    def __init__(self, root: Path, plugin: PluginInstall, *, mirror: Registry) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.pants_bin, pex = bootstrapped_pants()
        self.named_caches = plugin.named_caches
        name, version = plugin.wheel.name.split("-")[:2]
        self.write(
            {
                "pants.toml": user_pants_toml(
                    requirement=f"{name.replace('_', '-')}=={version}",
                    find_links=plugin.find_links,
                    pex=pex,
                    named_caches=plugin.named_caches,
                )
                + f"""
[docker.registries.mirror]
address = "{mirror.address}"
default = true
""",
                ".gitignore": "/dist/\n/.pants.d/\n/.pids/\n",
            }
        )
        self.git("init", "-q", "-b", "main")

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def pants(  # type: ignore[override]
        self,
        *args: str,
        daemon: bool = False,
        timeout: int = 600,
        env: dict[str, str] | None = None,
    ) -> PantsResult:
        """Runs Pants in a user's environment: the variables of `USER_ENV_VARS`, plus `env`."""
        user_env = {name: os.environ[name] for name in USER_ENV_VARS if name in os.environ}
        result = subprocess.run(
            [str(self.pants_bin), *([] if daemon else ["--no-pantsd"]), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**user_env, **(env or {})},
        )
        return PantsResult(result.returncode, result.stdout, result.stderr)
