"""Registry credentials, found where skopeo and docker find them: auth files in skopeo's order,
credential helpers (the server URL on stdin), `auths` entries."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Tuple

from docker_mirror.oci.reference import DOCKER_HUB
from docker_mirror.oci.reference import DOCKER_HUB_NAMES
from docker_mirror.probe.secrets import SECRETS, Secrets

DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"
TOKEN_USERNAME = "<token>"
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", re.ASCII)
_MAX_FILE_SIZE = 16 * 1024 * 1024
_MAX_HELPER_OUTPUT = 1024 * 1024


class CredentialError(Exception):
    """Credentials that cannot be read: a broken file, a failing or missing helper. The message
    names the file or the helper, never a secret."""


@dataclass(frozen=True)
class Credentials:
    username: Optional[str]
    password: Optional[str]
    identity_token: Optional[str]
    # Where they came from, for messages: a file, or a helper and the file that names it.
    source: str

    def basic_authorization(self, secrets: Secrets = SECRETS) -> Optional[str]:
        if self.username is None or self.password is None:
            return None
        return secrets.add_basic(self.username, self.password)


# (helper name, server URL) -> (username, secret), or None when it has none for that server.
HelperRunner = Callable[[str, str], Awaitable[Optional[Tuple[str, str]]]]


def auth_files(env: Mapping[str, str], uid: Optional[int] = None) -> List[Path]:
    """The files to read, in order."""
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    explicit = env.get("REGISTRY_AUTH_FILE")
    if explicit:
        return [Path(explicit)]
    files = []
    runtime_dir = env.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        files.append(Path(runtime_dir) / "containers" / "auth.json")
    else:
        files.append(Path(f"/run/containers/{os.getuid() if uid is None else uid}/auth.json"))
    config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    files.append(config_home / "containers" / "auth.json")
    docker_config = env.get("DOCKER_CONFIG")
    files.append(Path(docker_config) / "config.json" if docker_config else home / ".docker" / "config.json")
    return files


def _is_docker_hub(registry: str) -> bool:
    return registry.lower() in DOCKER_HUB_NAMES


def _normalized_key(key: str) -> str:
    """An `auths` key as a host: URL keys lose their scheme and path; Docker Hub's names
    become `docker.io`."""
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme) :].partition("/")[0]
            break
    return DOCKER_HUB if _is_docker_hub(key) else key


def _namespaced_keys(registry: str, repository: str) -> List[str]:
    """`host/a/b/c`, `host/a/b`, `host/a`, `host`: skopeo's lookup order."""
    keys = []
    parts = repository.split("/")
    for end in range(len(parts), 0, -1):
        keys.append(f"{registry}/{'/'.join(parts[:end])}")
    keys.append(registry)
    return keys


def _server_urls(registry: str) -> List[str]:
    """What to ask a helper for: Docker Hub's credentials are stored under Docker's URL by
    `docker login` and under `docker.io` by `skopeo login`."""
    return [DOCKER_HUB_SERVER_URL, DOCKER_HUB] if _is_docker_hub(registry) else [registry]


def _decode_entry(entry: Any, key: str, path: Path) -> Optional[Credentials]:
    where = f"the auths entry {json.dumps(key)} in {path}"
    if not isinstance(entry, dict):
        raise CredentialError(f"{where} is not a JSON object")
    username = password = None
    auth = entry.get("auth")
    if auth:
        if not isinstance(auth, str):
            raise CredentialError(f"{where} has an auth value that is not a string")
        try:
            decoded = base64.b64decode(auth.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise CredentialError(f"{where} has an auth value that is not base64") from None
        user, colon, secret = decoded.partition(":")
        if not colon:
            # As Docker and skopeo do: such an entry holds no credentials.
            return None
        username, password = user, secret.strip("\x00")
    elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        username, password = entry["username"], entry["password"]
    identity_token = entry.get("identitytoken")
    if not isinstance(identity_token, str) or not identity_token:
        identity_token = None
    if identity_token is None and (not username or password is None):
        return None
    return Credentials(username or None, password, identity_token, str(path))


class CredentialStore:
    """Looks credentials up for a registry and repository; each file is read and each helper
    asked once per run."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        timeout: float = 30.0,
        secrets: Secrets = SECRETS,
        run_helper: Optional[HelperRunner] = None,
        files: Optional[List[Path]] = None,
    ) -> None:
        self._env = dict(env)
        self._timeout = timeout
        self._secrets = secrets
        self._run_helper = run_helper or self._run_helper_process
        self._files = auth_files(env) if files is None else files
        self._documents: Dict[Path, Optional[dict]] = {}
        self._helper_answers: Dict[Tuple[str, str], Optional[Tuple[str, str]]] = {}
        # Made in the running loop: Python 3.9 ties a lock to the loop current at its creation.
        self._lock: Optional[asyncio.Lock] = None

    @property
    def files(self) -> List[Path]:
        return list(self._files)

    def _document(self, path: Path) -> Optional[dict]:
        if path not in self._documents:
            try:
                with open(path, "rb") as f:
                    raw = f.read(_MAX_FILE_SIZE + 1)
            except FileNotFoundError:
                self._documents[path] = None
                return None
            except OSError as e:
                raise CredentialError(f"cannot read {path}: {e.strerror}") from None
            try:
                document = json.loads(raw)
            except ValueError:
                raise CredentialError(f"{path} is not valid JSON") from None
            if not isinstance(document, dict):
                raise CredentialError(f"{path} is not a JSON object")
            self._documents[path] = document
        return self._documents[path]

    async def lookup(self, registry: str, repository: str) -> Optional[Credentials]:
        """The credentials for `repository` at `registry`; None when there are none."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            for path in self._files:
                document = self._document(path)
                if document is None:
                    continue
                found = await self._lookup_in(document, path, registry, repository)
                if found is not None:
                    return found
            return None

    async def _lookup_in(
        self, document: dict, path: Path, registry: str, repository: str
    ) -> Optional[Credentials]:
        helpers = document.get("credHelpers")
        if isinstance(helpers, dict):
            for key, helper in helpers.items():
                if key == registry or (_is_docker_hub(registry) and _normalized_key(key) == DOCKER_HUB):
                    return await self._from_helper(helper, registry, f"credHelpers in {path}")
        store = document.get("credsStore")
        if store:
            found = await self._from_helper(store, registry, f"credsStore in {path}")
            if found is not None:
                return found
        auths = document.get("auths")
        if not isinstance(auths, dict):
            return None
        canonical = DOCKER_HUB if _is_docker_hub(registry) else registry
        for key in _namespaced_keys(canonical, repository):
            if key in auths:
                return self._remember(_decode_entry(auths[key], key, path))
        for key, entry in auths.items():
            if isinstance(key, str) and _normalized_key(key) == canonical:
                return self._remember(_decode_entry(entry, key, path))
        return None

    def _remember(self, credentials: Optional[Credentials]) -> Optional[Credentials]:
        if credentials is not None:
            self._secrets.add(credentials.password)
            self._secrets.add(credentials.identity_token)
            if credentials.username and credentials.password:
                self._secrets.add_basic(credentials.username, credentials.password)
        return credentials

    async def _from_helper(self, helper: Any, registry: str, where: str) -> Optional[Credentials]:
        if not isinstance(helper, str) or not _HELPER_NAME.fullmatch(helper):
            raise CredentialError(f"the credential helper named in {where} is not a valid name")
        for server in _server_urls(registry):
            key = (helper, server)
            if key not in self._helper_answers:
                self._helper_answers[key] = await self._run_helper(helper, server)
            answer = self._helper_answers[key]
            if answer is None:
                continue
            username, secret = answer
            source = f"docker-credential-{helper} ({where})"
            if username == TOKEN_USERNAME:
                return self._remember(Credentials(None, None, secret, source))
            return self._remember(Credentials(username, secret, None, source))
        return None

    async def _run_helper_process(self, helper: str, server: str) -> Optional[Tuple[str, str]]:
        program = f"docker-credential-{helper}"
        executable = shutil.which(program, path=self._env.get("PATH", os.defpath))
        if executable is None:
            raise CredentialError(f"the credential helper {program} is not on PATH")
        argv = [executable, "get"]

        # In a thread rather than an asyncio subprocess: `subprocess.run` kills the helper when
        # it overruns, and behaves the same on every Python from 3.9.
        def run() -> "subprocess.CompletedProcess[bytes]":
            return subprocess.run(
                argv,
                input=server.encode(),
                capture_output=True,
                env=self._env,
                timeout=self._timeout,
                check=False,
            )

        try:
            completed = await asyncio.get_running_loop().run_in_executor(None, run)
        except subprocess.TimeoutExpired:
            raise CredentialError(
                f"{program} get did not answer within {self._timeout:g} s for {server}"
            ) from None
        except OSError as e:
            raise CredentialError(f"cannot run {program}: {e.strerror}") from None
        stdout, stderr = completed.stdout, completed.stderr
        if completed.returncode != 0:
            if b"credentials not found" in (stdout + stderr).lower():
                return None
            raise CredentialError(f"{program} get failed for {server} (exit {completed.returncode})")
        if len(stdout) > _MAX_HELPER_OUTPUT:
            raise CredentialError(f"{program} get answered with too much output for {server}")
        try:
            answer = json.loads(stdout)
            username, secret = answer.get("Username") or "", answer.get("Secret") or ""
        except (ValueError, AttributeError):
            raise CredentialError(f"{program} get did not answer with JSON for {server}") from None
        if not isinstance(username, str) or not isinstance(secret, str):
            raise CredentialError(f"{program} get answered with a malformed entry for {server}")
        self._secrets.add(secret)
        if not username and not secret:
            return None
        return username, secret
