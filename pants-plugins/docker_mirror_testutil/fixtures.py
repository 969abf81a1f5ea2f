"""The fixtures every test of the plugin and of the test kit shares; each conftest.py imports them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest
from docker_mirror_testutil.machine import ensure_docker_engine
from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.registries import Registry, start_registry

# `./pants` sets it afresh for every invocation; see the integration targets' `extra_env_vars`.
RUN_ID = "DOCKER_MIRROR_RUN_ID"


@pytest.fixture(autouse=True)
def never_served_from_cache(request: pytest.FixtureRequest) -> None:
    """A real run (`*_integration_test.py`) talks to registries and engines, so Pants must never
    report a pass of it from its cache. Under `pants test` that needs a fresh
    `DOCKER_MIRROR_RUN_ID` in the test's environment: its target must list it in
    `extra_env_vars`, and Pants must run through `./pants`."""
    if (
        request.path.name.endswith("_integration_test.py")
        and os.environ.get("DOCKER_MIRROR_UNDER_PANTS")  # set by pants.toml's [test]
        and not os.environ.get(RUN_ID)
    ):
        pytest.fail(
            f"{request.path.name} runs for real, but {RUN_ID} is not set: add "
            f'extra_env_vars=["{RUN_ID}"] to its target, and run Pants through ./pants, so '
            "that Pants never serves its pass from cache",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def docker_engine() -> None:
    ensure_docker_engine()


@pytest.fixture(scope="session")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Registry]]:
    """Starts registries on demand for the session, and stops them all at its end; `start(htpasswd)`
    starts one that requires basic auth from that htpasswd file."""
    started: list[Registry] = []

    def start(htpasswd: Path | None = None) -> Registry:
        registry = start_registry(tmp_path_factory.mktemp("registry"), htpasswd)
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture
def pants_repo(tmp_path: Path) -> Iterator[PantsRepo]:
    """A throwaway repository; a pantsd that the test started in it is stopped afterwards."""
    repo = PantsRepo(tmp_path)
    yield repo
    repo.stop_daemon()
