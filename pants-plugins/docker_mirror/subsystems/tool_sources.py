"""The sources of a Python tool the plugin ships as a package of its own (the registry probe, the
image extractor), laid out for the tool's PEX: pure, no engine calls."""

from __future__ import annotations

import importlib.resources
from typing import Sequence

from pants.engine.fs import FileContent


def package_sources(
    package: str, *, shared_modules: Sequence[tuple[str, str]] = ()
) -> tuple[FileContent, ...]:
    """The modules of `package` (not its tests) and the plugin's `shared_modules` ((package,
    file name) pairs) that it imports, as a package tree. Every parent package on the way gets
    an empty `__init__.py`: the plugin's own import Pants, which the tool never does."""
    tool = importlib.resources.files(package)
    modules = sorted(
        (
            entry
            for entry in tool.iterdir()
            if entry.name.endswith(".py") and not entry.name.endswith("_test.py")
        ),
        key=lambda entry: entry.name,
    )
    files = {
        f"{owner.replace('.', '/')}/{name}": importlib.resources.files(owner)
        .joinpath(name)
        .read_bytes()
        for owner, name in shared_modules
    }
    files.update(
        (f"{package.replace('.', '/')}/{module.name}", module.read_bytes()) for module in modules
    )
    for path in list(files):
        directory = path.rpartition("/")[0]
        while directory:
            files.setdefault(f"{directory}/__init__.py", b"")
            directory = directory.rpartition("/")[0]
    return tuple(FileContent(path, content) for path, content in sorted(files.items()))
