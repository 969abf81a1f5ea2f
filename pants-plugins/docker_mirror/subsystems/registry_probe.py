"""`[docker-mirror-probe]`: the registry probe, a PEX built from the lockfile shipped with the
plugin (update it with `scripts/lock-registry-probe`, see docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass

from docker_mirror.compat import created_digest, venv_pex
from docker_mirror.compat.python_tools import ToolLockfileRules
from docker_mirror.subsystems.tool_sources import package_sources
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
        `docker-mirror-pin` read registries with, one `HEAD` request per image reference, and
        that copy mode copies images with.
        """
    )
    help = help_short

    # Those of docker_mirror/probe/requirements.txt (a test keeps them equal). Pants 2.17 locks
    # `version` and `extra_requirements`; later versions lock `default_requirements`.
    default_version = "aiohttp==3.13.5"
    default_extra_requirements = ["yarl==1.22.0", "multidict==6.7.1", "cryptography==43.0.3"]
    default_requirements = [default_version, *default_extra_requirements]

    register_interpreter_constraints = True
    default_interpreter_constraints = ["CPython>=3.9,<4"]

    default_lockfile_resource = ("docker_mirror.subsystems", "registry_probe.lock")


@dataclass(frozen=True)
class RegistryProbe:
    pex: VenvPex


# The probe's own package, and the Pants-free core it shares with the plugin.
CORE_PACKAGE = "docker_mirror.oci"


def probe_sources() -> tuple[FileContent, ...]:
    """The probe's modules and the core's, laid out for its PEX."""
    return package_sources(PROBE_PACKAGE, CORE_PACKAGE)


@rule(desc="Setting up the registry probe", level=LogLevel.DEBUG)
async def setup_registry_probe(subsystem: RegistryProbeSubsystem) -> RegistryProbe:
    sources = await created_digest(CreateDigest(probe_sources()))
    pex = await venv_pex(
        subsystem.to_pex_request(main=EntryPoint(f"{PROBE_PACKAGE}.__main__"), sources=sources)
    )
    return RegistryProbe(pex)


def rules():
    return (*collect_rules(), *RegistryProbeSubsystem.rules())
