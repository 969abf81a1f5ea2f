"""The environment of every process that talks to registries: credentials are found through it,
never passed on a command line."""

from __future__ import annotations

import os
from dataclasses import dataclass

from docker_mirror.compat import environment_vars
from docker_mirror.subsystems.docker_mirror import DockerMirrorSubsystem
from pants.engine.env_vars import EnvironmentVarsRequest
from pants.engine.rules import collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel


@dataclass(frozen=True)
class RegistryClientEnvironment:
    env: FrozenDict[str, str]


@rule(desc="Finding registry credentials and proxies", level=LogLevel.DEBUG)
async def registry_client_environment(
    env_aware: DockerMirrorSubsystem.EnvironmentAware,
) -> RegistryClientEnvironment:
    env = await environment_vars(EnvironmentVarsRequest(env_aware.env_vars))
    return RegistryClientEnvironment(
        FrozenDict({**env, "PATH": os.pathsep.join(env_aware.executable_search_path)})
    )


def rules():
    return collect_rules()
