"""`[docker-mirror-probe]`: the registry probe, a Python tool Pants runs from its own lockfile.

The probe (`docker_mirror.probe`) reads what registries serve with `HEAD` requests; see
`docker_mirror.util_rules.probe`. Pants builds it into a PEX from the lockfile shipped with the
plugin, as its docker backend does for its Dockerfile parser, so users install nothing.

To update the lockfile after changing the requirements (with this repository's Pants 2.17):

    ./pants generate-lockfiles --resolve=docker-mirror-probe \\
        --docker-mirror-probe-lockfile=pants-plugins/docker_mirror/subsystems/registry_probe.lock
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass

from docker_mirror.compat import created_digest, venv_pex
from docker_mirror.compat.python_tools import ToolLockfileRules
from pants.backend.python.subsystems.python_tool_base import PythonToolRequirementsBase
from pants.backend.python.target_types import EntryPoint
from pants.backend.python.util_rules.pex import VenvPex
from pants.engine.fs import CreateDigest, FileContent
from pants.engine.rules import collect_rules, rule
from pants.util.logging import LogLevel
from pants.util.strutil import softwrap

PROBE_PACKAGE = "docker_mirror.probe"


class RegistryProbeSubsystem(ToolLockfileRules, PythonToolRequirementsBase):
    options_scope = "docker-mirror-probe"
    help_short = softwrap(
        """
        The registry probe: the program `docker_mirror_images(method="copy")` and
        `docker-mirror-pin` read registries with, one `HEAD` request per image reference.
        """
    )
    help = help_short

    # Keep in sync with docker_mirror/probe/requirements.txt. Pants 2.17 locks `version` and
    # `extra_requirements` (from these defaults); later versions `default_requirements`.
    default_version = "httpx==0.28.1"
    default_extra_requirements = ["docker==7.1.0"]
    default_requirements = [default_version, *default_extra_requirements]

    register_interpreter_constraints = True
    default_interpreter_constraints = ["CPython>=3.9,<3.15"]

    default_lockfile_resource = ("docker_mirror.subsystems", "registry_probe.lock")


@dataclass(frozen=True)
class RegistryProbe:
    pex: VenvPex


def probe_sources() -> tuple[FileContent, ...]:
    """The probe package's modules (not its tests), laid out as a package for the PEX."""
    package = importlib.resources.files(PROBE_PACKAGE)
    modules = sorted(
        (
            entry
            for entry in package.iterdir()
            if entry.name.endswith(".py") and not entry.name.endswith("_test.py")
        ),
        key=lambda entry: entry.name,
    )
    prefix = PROBE_PACKAGE.replace(".", "/")
    return (
        # The parent package's `__init__.py` is empty: the probe imports none of the plugin.
        FileContent("docker_mirror/__init__.py", b""),
        *(FileContent(f"{prefix}/{module.name}", module.read_bytes()) for module in modules),
    )


@rule(desc="Setting up the registry probe", level=LogLevel.DEBUG)
async def setup_registry_probe(subsystem: RegistryProbeSubsystem) -> RegistryProbe:
    sources = await created_digest(CreateDigest(probe_sources()))
    pex = await venv_pex(
        subsystem.to_pex_request(main=EntryPoint(f"{PROBE_PACKAGE}.__main__"), sources=sources)
    )
    return RegistryProbe(pex)


def rules():
    return (*collect_rules(), *RegistryProbeSubsystem.rules())
