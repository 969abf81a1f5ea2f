"""The registry probe's PEX: its requirements, and sources that import nothing but those, the
standard library and each other. (The probe's own tests, in the `probe` resolve, where Pants is
not installed, import and run every module.)"""

from __future__ import annotations

import ast
import importlib.resources
import importlib.util
import sys
import sysconfig
from pathlib import Path
from typing import List, Set

from docker_mirror.subsystems.registry_probe import RegistryProbeSubsystem, probe_sources

# The modules the probe's requirements provide (aiohttp's, and cryptography for signatures).
REQUIREMENT_MODULES = {"aiohttp", "yarl", "multidict", "cryptography"}


def _requirements(text: str) -> List[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def declared_requirements() -> List[str]:
    return _requirements(
        importlib.resources.files("docker_mirror.probe").joinpath("requirements.txt").read_text()
    )


def test_the_tool_requires_what_the_probe_declares() -> None:
    declared = declared_requirements()
    assert list(RegistryProbeSubsystem.default_requirements) == declared
    assert [RegistryProbeSubsystem.default_version, *RegistryProbeSubsystem.default_extra_requirements] == declared
    assert {r.partition("==")[0] for r in declared} == REQUIREMENT_MODULES


def test_the_probes_tests_run_the_requirements_it_ships() -> None:
    tested = _requirements(Path("3rdparty/python/probe-requirements.txt").read_text())
    assert set(declared_requirements()) <= set(tested)


def _is_standard_library(name: str) -> bool:
    if name in sys.builtin_module_names or name == "__future__":
        return True
    spec = importlib.util.find_spec(name)
    origin = (spec.origin or "") if spec else ""
    return bool(origin) and origin.startswith(sysconfig.get_paths()["stdlib"]) and "site-packages" not in origin


def test_the_probe_imports_only_its_sources_its_requirements_and_the_standard_library() -> None:
    sources = {file.path: file.content for file in probe_sources()}
    shipped = {path[: -len(".py")].replace("/", ".").replace(".__init__", "") for path in sources}
    foreign: Set[str] = set()
    for path, content in sources.items():
        if not path.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(content)):
            names = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                top = name.partition(".")[0]
                if name in shipped or top in REQUIREMENT_MODULES or _is_standard_library(top):
                    continue
                foreign.add(f"{path}: {name}")
    assert foreign == set()
    assert {"docker_mirror.probe.cli", "docker_mirror.oci.reference"} <= shipped
