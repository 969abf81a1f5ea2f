"""Real processes for the end-to-end tests: a Docker engine, registries on loopback, and
throwaway repositories in which the real `./pants` runs.

Everything is started through the repository's own `scripts/`, the same ones the Quick start
demo uses. Under `CI=true` a missing engine or registry fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

# Pants runs tests in a sandbox holding the files they depend on, laid out as in the
# repository, with the sandbox as the working directory; plain pytest runs from the root.
REPO_ROOT = Path.cwd()
SCRIPTS = REPO_ROOT / "scripts"

MANIFEST_MEDIA_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def unavailable(reason: str) -> None:
    """Skips a test that needs something this machine lacks; fails it under CI."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


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

    def start(self) -> None:
        """Starts this registry again after `stop()`: same address, same stored images."""
        port = self.address.rsplit(":", 1)[1]
        subprocess.run([SCRIPTS / "start-registry", port, str(self.state_dir)], check=True)


def start_registry(state_dir: Path, htpasswd: Path | None = None) -> Registry:
    """A registry on a free loopback port; with `htpasswd`, requests need basic auth from it."""
    if not shutil.which("docker-registry"):
        unavailable("docker-registry is not installed (scripts/install-deps installs it)")
    port = free_port()
    auth = [str(htpasswd)] if htpasswd else []
    subprocess.run([SCRIPTS / "start-registry", str(port), str(state_dir), *auth], check=True)
    return Registry(f"127.0.0.1:{port}", state_dir)


def ensure_docker_engine() -> None:
    if not shutil.which("docker"):
        unavailable("the docker CLI is not installed (scripts/install-deps installs it)")
    result = subprocess.run(
        [SCRIPTS / "ensure-docker-engine"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        unavailable(f"no Docker engine: {result.stderr.strip()}")


def make_image(reference: str, label: str | None = None) -> str:
    """Pushes a tiny image made offline to `reference`; returns its manifest digest."""
    result = subprocess.run(
        [SCRIPTS / "make-image", reference, label or reference],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@dataclass(frozen=True, repr=False)
class PantsResult:
    returncode: int
    stdout: str
    stderr: str

    def __repr__(self) -> str:  # shown in full by failing asserts
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class PantsRepo:
    """A temporary repository with this project's `./pants`, `pants.toml` and plugin."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for relpath in ("pants", "pants.toml"):
            shutil.copy2(REPO_ROOT / relpath, root / relpath)
        shutil.copytree(
            REPO_ROOT / "pants-plugins" / "docker_mirror",
            root / "pants-plugins" / "docker_mirror",
            ignore=shutil.ignore_patterns("__pycache__", "*_test.py", "BUILD"),
        )

    def write(self, files: dict[str, str]) -> None:
        for relpath, content in files.items():
            path = self.root / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def pants(
        self,
        *args: str,
        registry: Registry | None = None,
        timeout: int = 600,
        env: dict[str, str] | None = None,
    ) -> PantsResult:
        """Runs the real `./pants` (no daemon); `registry` becomes the only default registry;
        `env` is added to this process's environment."""
        options = ["--no-pantsd"]
        if registry is not None:
            options.append(
                "--docker-registries="
                + repr(
                    {
                        "mirror": {
                            "address": registry.address,
                            "default": True,
                            "repository": "mirror/{target_repository}",
                        }
                    }
                )
            )
        result = subprocess.run(
            [str(self.root / "pants"), *options, *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **env} if env else None,
        )
        return PantsResult(result.returncode, result.stdout, result.stderr)


def require_skopeo() -> None:
    if not shutil.which("skopeo"):
        unavailable("skopeo is not installed (scripts/install-deps installs it)")


@dataclass(frozen=True)
class OciImage:
    """A multi-platform image made by `scripts/make-oci-image`: its index and manifest digests."""

    index: str
    manifests: dict[str, str]


def push_oci_image(reference: str, label: str, *platforms: str) -> OciImage:
    """Makes a multi-platform image offline (no Docker engine) and pushes it to `reference` on
    a loopback registry with every platform and digest kept."""
    require_skopeo()
    with tempfile.TemporaryDirectory() as layout:
        made = subprocess.run(
            [SCRIPTS / "make-oci-image", layout, label, *platforms],
            capture_output=True,
            text=True,
            check=True,
        )
        subprocess.run(
            ["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
             f"oci:{layout}", f"docker://{reference}"],
            capture_output=True,
            check=True,
        )
    image = json.loads(made.stdout)
    return OciImage(image["index"], image["manifests"])
