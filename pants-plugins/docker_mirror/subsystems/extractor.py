"""`[docker-mirror-extractor]`: the image extractor, a PEX of PyYAML built from the lockfile shipped
with the plugin (docs/architecture.md says how to update the lockfile)."""

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

EXTRACTOR_PACKAGE = "docker_mirror.extractor"


class ImageExtractorSubsystem(ToolLockfileRules, PythonToolRequirementsBase):
    options_scope = "docker-mirror-extractor"
    help_short = softwrap(
        """
        The image extractor: the program `docker-mirror-extract` reads Kubernetes YAML with. It
        uses PyYAML's parser, with limits against alias bombs, deep nesting and huge files.
        """
    )
    help = help_short

    # Pants 2.17 locks `version` (and `extra_requirements`, none here); later versions
    # `default_requirements`.
    default_version = "PyYAML==6.0.3"
    default_requirements = [default_version]

    register_interpreter_constraints = True
    default_interpreter_constraints = ["CPython>=3.9,<3.15"]

    default_lockfile_resource = ("docker_mirror.subsystems", "extractor.lock")


@dataclass(frozen=True)
class ImageExtractor:
    pex: VenvPex


def extractor_sources() -> tuple[FileContent, ...]:
    """The extractor's modules, laid out for its PEX: it imports none of the plugin."""
    return package_sources(EXTRACTOR_PACKAGE)


@rule(desc="Setting up the image extractor", level=LogLevel.DEBUG)
async def setup_image_extractor(subsystem: ImageExtractorSubsystem) -> ImageExtractor:
    sources = await created_digest(CreateDigest(extractor_sources()))
    pex = await venv_pex(
        subsystem.to_pex_request(main=EntryPoint(f"{EXTRACTOR_PACKAGE}.__main__"), sources=sources)
    )
    return ImageExtractor(pex)


def rules():
    return (*collect_rules(), *ImageExtractorSubsystem.rules())
