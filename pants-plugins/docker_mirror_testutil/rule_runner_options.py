"""What a `RuleRunner` needs to build PEXes (the registry probe's) as this repository's `./pants`
does: `RuleRunner` reads no `pants.toml`, and Pants' default `pex` download (from GitHub) cannot
be reached here; `./pants` builds the same `pex` from PyPI into its cache."""

from __future__ import annotations

import os
from pathlib import Path

from docker_mirror import generator
from docker_mirror.target_types import DockerMirrorImagesTargetGenerator, DockerMirrorImageTarget
from docker_mirror_testutil.machine import REPO_ROOT
from pants.backend.docker.target_types import DockerImageTarget
from pants.core.target_types import TargetGeneratorSourcesHelperTarget
from pants.testutil.rule_runner import RuleRunner


def bootstrap_cache() -> Path:
    """Where `./pants` keeps Pants and the `pex` it built (the same lookup as the script)."""
    configured = os.environ.get("PANTS_BOOTSTRAP_CACHE")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "pants-docker-mirror"


def pex_building_options() -> tuple[list[str], dict[str, str]]:
    """(options, environment) for `RuleRunner.set_options`, from this repository's pants.toml."""
    import toml  # pants: no-infer-dep (it comes with Pants; the benchmarks never import this)

    config = toml.loads((REPO_ROOT / "pants.toml").read_text())
    pex_cli = config["pex-cli"]
    options = [
        f"--pex-cli-version={pex_cli['version']}",
        f"--pex-cli-known-versions={pex_cli['known_versions']!r}",
        f"--python-bootstrap-search-path={config['python-bootstrap']['search_path']!r}",
        f"--subprocess-environment-env-vars={config['subprocess-environment']['env_vars']['add']!r}",
        f"--ca-certs-path={config['GLOBAL']['ca_certs_path']}",
        f"--python-interpreter-constraints={config['python']['interpreter_constraints']!r}",
    ]
    template = f"file://{bootstrap_cache()}/pex/pex-{{version}}"
    return options, {"PANTS_PEX_CLI_URL_TEMPLATE": template}


# A generated image needs a destination registry (without one it would be pushed to Docker Hub,
# and generation refuses it): RuleRunner tests of the generator get this one as their default.
TEST_REGISTRY = "registry.example.com"


def default_registry_args(address: str = TEST_REGISTRY) -> list[str]:
    """`RuleRunner(bootstrap_args=...)` that make `address` the default registry."""
    registries = {"test": {"address": address, "default": True}}
    return [f"--docker-registries={registries!r}"]


def generator_rule_runner(*bootstrap_args: str) -> RuleRunner:
    """A `RuleRunner` with the generator's rules and every target type it generates; pass
    `*default_registry_args()` for images that need a destination."""
    return RuleRunner(
        bootstrap_args=list(bootstrap_args),
        rules=generator.rules(),
        target_types=[
            DockerMirrorImagesTargetGenerator,
            DockerImageTarget,
            DockerMirrorImageTarget,
            TargetGeneratorSourcesHelperTarget,
        ],
    )
