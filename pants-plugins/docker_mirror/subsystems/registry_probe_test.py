"""The registry probe's PEX: its requirements, and sources that import nothing of Pants."""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
import sys
from pathlib import Path

import h11
from docker_mirror.subsystems.registry_probe import RegistryProbeSubsystem, probe_sources


def test_the_tool_requires_what_the_probe_declares() -> None:
    declared = [
        line.strip()
        for line in importlib.resources.files("docker_mirror.probe")
        .joinpath("requirements.txt")
        .read_text()
        .splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert list(RegistryProbeSubsystem.default_requirements) == declared
    assert RegistryProbeSubsystem.default_version == declared[0]


def test_the_probe_runs_from_its_sources_and_h11_alone(tmp_path: Path) -> None:
    for file in probe_sources():
        path = tmp_path / file.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file.content)
    shutil.copytree(Path(h11.__file__).parent, tmp_path / "h11")
    modules = sorted(
        file.path[: -len(".py")].replace("/", ".").replace(".__init__", "")
        for file in probe_sources()
        if file.path.endswith(".py") and not file.path.endswith("__main__.py")
    )
    # -S: no site-packages, so an import of Pants (or of anything not shipped) fails here.
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]", *modules],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "docker_mirror.probe.cli" in modules and "docker_mirror.image_reference" in modules
