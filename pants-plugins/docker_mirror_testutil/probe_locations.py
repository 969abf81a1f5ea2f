"""A repository as the registry probe's referrer code reaches it (`mirror_referrers.Location`),
in the test's own process, for tests that find and copy referrers without running the probe as
a process: a session of its own, with only the credentials `home` holds. Resolve "probe" only:
it imports the probe."""

from __future__ import annotations

from pathlib import Path

from docker_mirror.probe.access import Routes
from docker_mirror.probe.credentials import CredentialStore
from docker_mirror.probe.distribution import Distribution
from docker_mirror.probe.mirror_referrers import Location
from docker_mirror.probe.registry import RegistrySession
from docker_mirror.probe.retry import RetryPolicy
from docker_mirror.probe.secrets import Secrets
from docker_mirror.probe.transport import HttpClient


def location(address: str, repository: str, home: Path) -> Location:
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(home), "PATH": "/usr/bin:/bin"}
    secrets = Secrets()
    session = RegistrySession(
        address, address,
        http=HttpClient(Routes(env, secrets=secrets), timeout=10),
        credentials=CredentialStore(env, secrets=secrets), policy=RetryPolicy(attempts=2),
        max_concurrency=8, timeout=10, secrets=secrets,
    )  # fmt: skip
    return Location(Distribution(session), repository)
