"""Docker registries on loopback, started through `scripts/start-registry`, and what they serve,
read through the registry's own HTTP API."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from docker_mirror.testutil.machine import SCRIPTS, unavailable

MANIFEST_MEDIA_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Registry:
    """A Docker registry on 127.0.0.1, started for the test session."""

    address: str
    state_dir: Path

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest the registry serves for `repository:reference`, or None if it has none."""
        request = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{reference}",
            method="HEAD",
            headers={"Accept": MANIFEST_MEDIA_TYPES},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return str(response.headers["Docker-Content-Digest"])
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def tags(self, repository: str) -> list[str]:
        try:
            with urllib.request.urlopen(
                f"http://{self.address}/v2/{repository}/tags/list", timeout=10
            ) as response:
                return sorted(json.load(response).get("tags") or [])
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise

    def repositories(self) -> list[str]:
        with urllib.request.urlopen(f"http://{self.address}/v2/_catalog", timeout=10) as response:
            return sorted(json.load(response).get("repositories") or [])

    def access_log(self) -> list[str]:
        """The registry's access log, one request a line (`"GET /v2/... HTTP/1.1" 200 ...`),
        oldest first: `log[n:]` after `n = len(registry.access_log())` are the newer requests."""
        log = self.state_dir / "registry.log"
        if not log.exists():
            return []
        lines = log.read_text().splitlines()
        return [line for line in lines if " /v2/" in line and not line.startswith("time=")]

    def stop(self) -> None:
        pid_file = self.state_dir / "registry.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass

    def put_tag(self, repository: str, source_tag: str, new_tag: str) -> None:
        """Tags an existing manifest again (registry API), so seeding many tags is cheap."""
        request = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{source_tag}",
            headers={"Accept": MANIFEST_MEDIA_TYPES},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body, media_type = response.read(), response.headers["Content-Type"]
        put = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{new_tag}",
            data=body,
            method="PUT",
            headers={"Content-Type": media_type},
        )
        urllib.request.urlopen(put, timeout=10).close()

    def start(self) -> None:
        """Starts this registry again after `stop()`: same address, same stored images."""
        port = self.address.rsplit(":", 1)[1]
        subprocess.run([SCRIPTS / "start-registry", port, str(self.state_dir)], check=True)


def htpasswd_entry(user: str, password: str) -> str:
    """A line of an htpasswd file, as `docker-registry`'s `auth: htpasswd` reads it (bcrypt)."""
    import bcrypt  # a test requirement; the benchmarks run on the standard library alone
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}\n"


def start_registry(
    state_dir: Path, htpasswd: Path | None = None, *, env: Mapping[str, str] | None = None
) -> Registry:
    """A registry on a free loopback port; with `htpasswd`, requests need basic auth from it.
    `env` adds `docker-registry` settings as `REGISTRY_*` variables, which override its
    configuration file (e.g. `TokenServer.registry_env()` for `auth: token`)."""
    if not shutil.which("docker-registry"):
        unavailable("docker-registry is not installed (scripts/install-deps installs it)")
    port = free_port()
    auth = [str(htpasswd)] if htpasswd else []
    subprocess.run(
        [SCRIPTS / "start-registry", str(port), str(state_dir), *auth],
        check=True,
        env={**os.environ, **env} if env else None,
    )
    return Registry(f"127.0.0.1:{port}", state_dir)


@dataclass(frozen=True)
class Traffic:
    """What a run asked of registries, from their access logs."""

    requests: int
    blob_uploads: int
    manifest_puts: int

    @classmethod
    def between(cls, before: list[str], after: list[str]) -> Traffic:
        """The requests in `after` (an access log) past the `before` ones."""
        new = after[len(before) :]
        return cls(
            requests=len(new),
            blob_uploads=sum(
                1 for line in new if re.search(r'"(POST|PATCH|PUT) /v2/\S+/blobs/uploads/', line)
            ),
            manifest_puts=sum(1 for line in new if re.search(r'"PUT /v2/\S+/manifests/', line)),
        )

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(
            self.requests + other.requests,
            self.blob_uploads + other.blob_uploads,
            self.manifest_puts + other.manifest_puts,
        )
