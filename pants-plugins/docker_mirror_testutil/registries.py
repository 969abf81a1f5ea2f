"""Docker registries on loopback, started through `scripts/start-registry`, and what they serve,
read through the registry's own HTTP API."""

from __future__ import annotations

import email.message
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from docker_mirror_testutil.machine import SCRIPTS, unavailable
from docker_mirror.oci.manifests import digest_of

MANIFEST_MEDIA_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def _start_registry_script(
    port: int, state_dir: Path, htpasswd: Path | None, env: Mapping[str, str] | None = None
) -> str:
    """Runs `scripts/start-registry`; returns what it printed (the address, for port 0)."""
    result = subprocess.run(
        [SCRIPTS / "start-registry", str(port), str(state_dir), *([htpasswd] if htpasswd else [])],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"scripts/start-registry {port} {state_dir} failed (exit {result.returncode}):\n"
            f"{result.stderr.strip()}"
        )
    return result.stdout.strip()


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, ..., start time (index 19)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _is_own_process(pid: int, state_dir: Path) -> bool:
    """Whether `pid` is alive (not a zombie) and is the registry serving `state_dir`'s config."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = _stat_fields(pid)[0]
    except (OSError, IndexError):
        return False
    config = str(state_dir.resolve() / "config.yml").encode()
    return state != "Z" and cmdline[1:3] == [b"serve", config]


def _has_exited(pid: int, start_time: str) -> bool:
    """Whether every thread of the process `pid` that started at `start_time` has exited, so
    that its sockets are closed. (The registry is multi-threaded: its main thread can be a
    zombie, with an empty cmdline, while other threads still hold its listening socket.)"""
    try:
        if _stat_fields(pid)[19] != start_time:
            return True  # the pid now names another process
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return all(_stat_fields(f"{pid}/task/{task.name}")[0] in "ZX" for task in tasks)
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class Registry:
    """A Docker registry on 127.0.0.1, started for the test session: the only process listening
    on its address (`scripts/start-registry` checks that), serving `state_dir`. With `htpasswd`,
    requests need basic auth from that file."""

    address: str
    state_dir: Path
    htpasswd: Path | None = None
    # docker-registry settings given as REGISTRY_* variables (see `start_registry`).
    env: tuple[tuple[str, str], ...] = ()

    def manifest_digest(
        self, repository: str, reference: str, *, authorization: str | None = None
    ) -> str | None:
        """The digest the registry serves for `repository:reference`, or None if it has none."""
        headers = {"Accept": MANIFEST_MEDIA_TYPES}
        if authorization:
            headers["Authorization"] = authorization
        request = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{reference}",
            method="HEAD",
            headers=headers,
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
        oldest first: `log[n:]` after `n = len(registry.access_log())` are the newer requests.

        The registry writes a line once it has answered, so a client can see its answer before
        the line is there: to prove that a request did *not* happen, read `settled_access_log`.
        """
        log = self.state_dir / "registry.log"
        if not log.exists():
            return []
        lines = log.read_text().splitlines()
        return [line for line in lines if " /v2/" in line and not line.startswith("time=")]

    def settled_access_log(self, quiet: float = 0.5, timeout: float = 30) -> list[str]:
        """The access log once it has stopped growing: unchanged for `quiet` seconds. Raises if
        it still grows after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        log = self.access_log()
        still_since = time.monotonic()
        while time.monotonic() - still_since < quiet:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the access log of {self.address} still grows after {timeout} s"
                )
            time.sleep(0.05)
            now = self.access_log()
            if now != log:
                log, still_since = now, time.monotonic()
        return log

    def _pid(self) -> int | None:
        try:
            return int((self.state_dir / "registry.pid").read_text())
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        """The pid of this registry's process while it runs (e.g. to read its CPU time), else None."""
        pid = self._pid()
        return pid if pid is not None and _is_own_process(pid, self.state_dir) else None

    def stop(self) -> None:
        """Stops this registry (SIGTERM, SIGKILL after 10 s) and returns once it has exited, so
        that its port is free for `start()`. Only ever signals this registry's own process."""
        pid = self._pid()
        if pid is None or not _is_own_process(pid, self.state_dir):
            return
        try:
            start_time = _stat_fields(pid)[19]
        except (OSError, IndexError):
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                if not _has_exited(pid, start_time):
                    os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while not _has_exited(pid, start_time) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _has_exited(pid, start_time):
                break
        else:
            raise RuntimeError(f"registry {self.address} (pid {pid}) did not exit")
        (self.state_dir / "registry.pid").unlink(missing_ok=True)

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Deletes a manifest, and so every tag that serves it (the registry API's DELETE)."""
        request = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{digest}", method="DELETE"
        )
        urllib.request.urlopen(request, timeout=10).close()

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """The manifest `repository:reference` serves, and its media type (registry API)."""
        request = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{reference}",
            headers={"Accept": MANIFEST_MEDIA_TYPES},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read(), response.headers["Content-Type"]

    def skopeo_raw(self, repository: str, reference: str) -> bytes:
        """The manifest `repository` serves for `reference` (a tag or a digest) as another client
        reads it: the bytes `skopeo inspect --raw` prints."""
        separator = "@" if ":" in reference else ":"
        return subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false",
             f"docker://{self.address}/{repository}{separator}{reference}"],
            capture_output=True,
            check=True,
        ).stdout

    def put_manifest(
        self, repository: str, tag: str, body: bytes, media_type: str
    ) -> email.message.Message:
        """Puts a manifest under `tag` (or a digest); returns the answer's headers (e.g. a
        referrers API's `OCI-Subject`)."""
        request = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{tag}",
            data=body,
            method="PUT",
            headers={"Content-Type": media_type},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers

    def put_manifest_by_digest(self, repository: str, body: bytes, media_type: str) -> str:
        """Puts a manifest under its own digest, untagged; returns that digest."""
        digest = digest_of(body)
        served = self.put_manifest(repository, digest, body, media_type)["Docker-Content-Digest"]
        if served != digest:
            raise RuntimeError(f"{self.address}/{repository} stored {digest} as {served}")
        return digest

    def put_blob(self, repository: str, data: bytes) -> str:
        """Uploads a blob (the registry API's POST, then one PUT with all of it); returns its
        digest."""
        digest = digest_of(data)
        start = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/blobs/uploads/", data=b"", method="POST"
        )
        with urllib.request.urlopen(start, timeout=10) as response:
            location = urllib.parse.urljoin(
                f"http://{self.address}/", response.headers["Location"]
            )
        separator = "&" if "?" in location else "?"
        finish = urllib.request.Request(
            f"{location}{separator}digest={urllib.parse.quote(digest)}",
            data=data,
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(finish, timeout=60) as response:
            if response.status != 201:
                raise RuntimeError(f"uploading {digest} to {repository}: {response.status}")
        return digest

    def blob(self, repository: str, digest: str) -> bytes:
        """A blob's content (registry API), checked against its digest."""
        with urllib.request.urlopen(
            f"http://{self.address}/v2/{repository}/blobs/{digest}", timeout=60
        ) as response:
            data: bytes = response.read()
        if digest_of(data) != digest:
            raise RuntimeError(f"{self.address}/{repository} served other content for {digest}")
        return data

    def put_tag(self, repository: str, source_tag: str, new_tag: str) -> None:
        """Tags an existing manifest again (registry API), so seeding many tags is cheap."""
        body, media_type = self.manifest(repository, source_tag)
        self.put_manifest(repository, new_tag, body, media_type)

    def put_tag_into(self, repository: str, source_tag: str, new_repository: str, new_tag: str) -> None:
        """Tags a single-platform manifest of `repository` in another repository of the same
        registry: its config and layers are mounted there (the registry API's cross-repository
        blob mount, no upload), then the manifest is put. So seeding many repositories is cheap."""
        body, media_type = self.manifest(repository, source_tag)
        manifest = json.loads(body)
        if "config" not in manifest:
            raise ValueError(f"{repository}:{source_tag} is not a single-platform manifest ({media_type})")
        for blob in (manifest["config"], *manifest.get("layers", [])):
            mount = urllib.request.Request(
                f"http://{self.address}/v2/{new_repository}/blobs/uploads/"
                f"?mount={blob['digest']}&from={repository}",
                data=b"",
                method="POST",
            )
            with urllib.request.urlopen(mount, timeout=10) as response:
                if response.status != 201:  # 202 would be an upload started instead
                    raise RuntimeError(f"mounting {blob['digest']} into {new_repository}: {response.status}")
        self.put_manifest(new_repository, new_tag, body, media_type)

    def start(self) -> None:
        """Starts this registry again after `stop()`: same address, same stored images, same
        authentication. Raises if another process took the port in between."""
        port = int(self.address.rsplit(":", 1)[1])
        _start_registry_script(port, self.state_dir, self.htpasswd, dict(self.env))


def requests_for(log: list[str], method: str, path: str) -> list[str]:
    """The lines of an access log that record `method path` (`"GET", "/v2/x/manifests/1"`)."""
    return [line for line in log if f'"{method} {path} HTTP/' in line]


def writes(log: list[str]) -> list[str]:
    """The lines of an access log that write something: `PUT`, `POST`, `PATCH` or `DELETE`."""
    return [line for line in log if re.search(r'"(PUT|POST|PATCH|DELETE) ', line)]


def more_than_heads(log: list[str]) -> list[str]:
    """The lines of an access log that do more than a no-op may: anything but a manifest `HEAD`,
    such as a manifest `GET` (Docker Hub's pull), any blob request or any write. The referrers
    API's list and a repository's tag list are allowed: they are how referrers are found (a run
    asks a registry without the API once, and each source repository for its tags once), and
    Docker Hub counts no pull for them."""
    return [
        line
        for line in log
        if "/blobs/" in line
        or not re.search(r'"HEAD /v2/\S+/manifests/|"GET /v2/\S+/(referrers/|tags/list)', line)
    ]


def htpasswd_entry(user: str, password: str) -> str:
    """A line of an htpasswd file, as `docker-registry`'s `auth: htpasswd` reads it (bcrypt)."""
    import bcrypt  # a test requirement; the benchmarks run on the standard library alone
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}\n"


def start_registry(
    state_dir: Path, htpasswd: Path | None = None, *, env: Mapping[str, str] | None = None
) -> Registry:
    """A registry on a loopback port that the kernel picked as it bound it, so that no other
    process holds it; with `htpasswd`, requests need basic auth from that file. `env` adds
    `docker-registry` settings as `REGISTRY_*` variables, which override its configuration
    file (e.g. `TokenServer.registry_env()` for `auth: token`)."""
    if not shutil.which("docker-registry"):
        unavailable("docker-registry is not installed (scripts/install-deps installs it)")
    address = _start_registry_script(0, state_dir, htpasswd, env)
    if not re.fullmatch(r"127\.0\.0\.1:\d+", address):
        raise RuntimeError(f"scripts/start-registry printed {address!r}, not an address")
    return Registry(address, state_dir, htpasswd, tuple(sorted((env or {}).items())))


@dataclass(frozen=True)
class Traffic:
    """What a run asked of registries, from their access logs."""

    requests: int
    blob_uploads: int
    manifest_puts: int
    # Docker Hub counts a manifest GET as a pull, and a HEAD as none.
    manifest_gets: int = 0
    manifest_heads: int = 0

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
            manifest_gets=sum(1 for line in new if re.search(r'"GET /v2/\S+/manifests/', line)),
            manifest_heads=sum(1 for line in new if re.search(r'"HEAD /v2/\S+/manifests/', line)),
        )

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(
            self.requests + other.requests,
            self.blob_uploads + other.blob_uploads,
            self.manifest_puts + other.manifest_puts,
            self.manifest_gets + other.manifest_gets,
            self.manifest_heads + other.manifest_heads,
        )
