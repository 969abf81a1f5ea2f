from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from docker_mirror.testutil.machine import ensure_docker_engine
from docker_mirror.testutil.pants_repo import PantsRepo
from docker_mirror.testutil.registries import Registry, start_registry


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
