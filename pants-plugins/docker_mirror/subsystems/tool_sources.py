"""The sources of a Python tool the plugin ships as a package of its own (the registry probe, the
image extractor), laid out for the tool's PEX: pure, no engine calls."""

from __future__ import annotations

import importlib.resources

from pants.engine.fs import FileContent


def package_sources(*packages: str) -> tuple[FileContent, ...]:
    """The modules of `packages` (not their tests) as a package tree. Every parent package on the
    way gets an empty `__init__.py`: the plugin's own imports Pants, which a tool never does."""
    files: dict[str, bytes] = {}
    for package in packages:
        for entry in importlib.resources.files(package).iterdir():
            if entry.name.endswith(".py") and not entry.name.endswith("_test.py"):
                files[f"{package.replace('.', '/')}/{entry.name}"] = entry.read_bytes()
    for path in list(files):
        directory = path.rpartition("/")[0]
        while directory:
            files.setdefault(f"{directory}/__init__.py", b"")
            directory = directory.rpartition("/")[0]
    return tuple(FileContent(path, content) for path, content in sorted(files.items()))
