"""Where credentials come from, in which order; helpers as real processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from docker_mirror.probe.credentials import CredentialError, Credentials, CredentialStore, auth_files
from docker_mirror.probe.secrets import REDACTED, Secrets


def _auth(user: str, password: str) -> Dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def _write(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


class FakeHelpers:
    def __init__(self, answers: Dict[Tuple[str, str], Optional[Tuple[str, str]]]) -> None:
        self.answers = answers
        self.calls: List[Tuple[str, str]] = []

    async def __call__(self, helper: str, server: str) -> Optional[Tuple[str, str]]:
        self.calls.append((helper, server))
        return self.answers.get((helper, server))


def _lookup(env: Dict[str, str], registry: str, repository: str = "app", helpers: Optional[FakeHelpers] = None) -> Optional[Credentials]:
    store = CredentialStore(env, secrets=Secrets(), run_helper=helpers)
    return asyncio.run(store.lookup(registry, repository))


def test_the_files_in_skopeos_order(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": "/run/user/7"}
    assert auth_files(env) == [
        Path("/run/user/7/containers/auth.json"),
        tmp_path / ".config/containers/auth.json",
        tmp_path / ".docker/config.json",
    ]
    env.update(XDG_CONFIG_HOME="/cfg", DOCKER_CONFIG="/dc")
    assert auth_files(env)[1:] == [Path("/cfg/containers/auth.json"), Path("/dc/config.json")]
    assert auth_files({"HOME": str(tmp_path)}, uid=42)[0] == Path("/run/containers/42/auth.json")
    # skopeo's --authfile default: that file, and no other.
    assert auth_files({**env, "REGISTRY_AUTH_FILE": "/a.json"}) == [Path("/a.json")]


def test_the_first_file_with_credentials_wins(tmp_path: Path) -> None:
    runtime, home = tmp_path / "run", tmp_path / "home"
    _write(runtime / "containers/auth.json", {"auths": {"other.io": _auth("x", "y")}})
    _write(home / ".config/containers/auth.json", {"auths": {"r.io": _auth("containers", "pw1")}})
    _write(home / ".docker/config.json", {"auths": {"r.io": _auth("docker", "pw2")}})
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    found = _lookup(env, "r.io")
    assert found is not None and (found.username, found.password) == ("containers", "pw1")
    assert found.source == str(home / ".config/containers/auth.json")
    (home / ".config/containers/auth.json").unlink()
    found = _lookup(env, "r.io")
    assert found is not None and found.username == "docker"
    assert _lookup(env, "elsewhere.io") is None


def test_registry_auth_file_excludes_the_docker_config(tmp_path: Path) -> None:
    _write(tmp_path / ".docker/config.json", {"auths": {"r.io": _auth("docker", "pw")}})
    _write(tmp_path / "auth.json", {"auths": {}})
    env = {"HOME": str(tmp_path), "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    assert _lookup(env, "r.io") is None


def test_docker_config_env_var(tmp_path: Path) -> None:
    _write(tmp_path / "elsewhere/config.json", {"auths": {"r.io:5000": {"username": "u", "password": "p"}}})
    found = _lookup({"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "elsewhere")}, "r.io:5000")
    assert found is not None and (found.username, found.password) == ("u", "p")


def test_namespaced_keys_most_specific_first(tmp_path: Path) -> None:
    _write(tmp_path / ".docker/config.json", {"auths": {
        "quay.io": _auth("host", "1"), "quay.io/team": _auth("team", "2"), "quay.io/team/app": _auth("app", "3"),
    }})
    env = {"HOME": str(tmp_path)}
    assert _lookup(env, "quay.io", "team/app").username == "app"  # type: ignore[union-attr]
    assert _lookup(env, "quay.io", "team/other").username == "team"  # type: ignore[union-attr]
    assert _lookup(env, "quay.io", "solo").username == "host"  # type: ignore[union-attr]


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_keys(tmp_path: Path, key: str) -> None:
    _write(tmp_path / ".docker/config.json", {"auths": {key: _auth("hub", "pw")}})
    assert _lookup({"HOME": str(tmp_path)}, "docker.io", "library/python").username == "hub"  # type: ignore[union-attr]


def test_url_keys_lose_scheme_and_path(tmp_path: Path) -> None:
    _write(tmp_path / ".docker/config.json", {"auths": {"https://r.io:5000/v2/": _auth("u", "p")}})
    assert _lookup({"HOME": str(tmp_path)}, "r.io:5000") is not None


def test_identity_token(tmp_path: Path) -> None:
    _write(tmp_path / ".docker/config.json", {"auths": {"r.io": {"auth": "", "identitytoken": "refresh-me"}}})
    found = _lookup({"HOME": str(tmp_path)}, "r.io")
    assert found is not None and found.identity_token == "refresh-me" and found.password is None


def test_empty_entries_hold_nothing(tmp_path: Path) -> None:
    _write(tmp_path / ".docker/config.json", {"auths": {"r.io": {}}})
    assert _lookup({"HOME": str(tmp_path)}, "r.io") is None


def test_cred_helpers_come_before_cred_store_and_auths(tmp_path: Path) -> None:
    _write(tmp_path / ".docker/config.json", {
        "auths": {"r.io": _auth("file", "pw")}, "credsStore": "store", "credHelpers": {"r.io": "helper"},
    })
    helpers = FakeHelpers({("helper", "r.io"): ("from-helper", "s1"), ("store", "r.io"): ("from-store", "s2")})
    env = {"HOME": str(tmp_path)}
    assert _lookup(env, "r.io", helpers=helpers).username == "from-helper"  # type: ignore[union-attr]
    helpers.answers.pop(("helper", "r.io"))
    # A credHelpers entry is the registry's only source in that file, as in skopeo.
    assert _lookup(env, "r.io", helpers=helpers) is None
    _write(tmp_path / ".docker/config.json", {"auths": {"r.io": _auth("file", "pw")}, "credsStore": "store"})
    assert _lookup(env, "r.io", helpers=helpers).username == "from-store"  # type: ignore[union-attr]
    helpers.answers.clear()
    assert _lookup(env, "r.io", helpers=helpers).username == "file"  # type: ignore[union-attr]


def test_docker_hub_helpers_are_asked_for_dockers_url_first(tmp_path: Path) -> None:
    _write(tmp_path / ".docker/config.json", {"credsStore": "desktop"})
    helpers = FakeHelpers({("desktop", "docker.io"): ("<token>", "idtok")})
    found = _lookup({"HOME": str(tmp_path)}, "docker.io", helpers=helpers)
    assert helpers.calls == [("desktop", "https://index.docker.io/v1/"), ("desktop", "docker.io")]
    assert found is not None and found.identity_token == "idtok" and found.username is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ("[]", "is not a JSON object"),
        (json.dumps({"auths": {"r.io": {"auth": "%%%"}}}), "not base64"),
        (json.dumps({"auths": {"r.io": "x"}}), "is not a JSON object"),
        (json.dumps({"credHelpers": {"r.io": "../evil"}}), "not a valid name"),
    ],
)
def test_broken_files_are_named_without_their_content(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker/config.json").write_text(content)
    with pytest.raises(CredentialError, match=message) as raised:
        _lookup({"HOME": str(tmp_path)}, "r.io")
    assert str(tmp_path / ".docker/config.json") in str(raised.value) or "helper" in str(raised.value)
    assert "%%%" not in str(raised.value)


def _helper(bin_dir: Path, name: str, script: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _env_with_helper(tmp_path: Path, name: str, script: str) -> Dict[str, str]:
    _helper(tmp_path / "bin", name, script)
    _write(tmp_path / ".docker/config.json", {"credHelpers": {"r.io": name}})
    return {"HOME": str(tmp_path), "PATH": f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin"}


def test_a_real_helper_gets_the_server_on_stdin(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    env = _env_with_helper(tmp_path, "t", f'printf "%s|" "$*" >>{log}; cat >>{log}; echo\n'
                           'echo \'{"ServerURL":"r.io","Username":"u","Secret":"helper-secret"}\'\n')
    secrets = Secrets()
    found = asyncio.run(CredentialStore(env, secrets=secrets).lookup("r.io", "app"))
    assert found is not None and (found.username, found.password) == ("u", "helper-secret")
    assert log.read_text().splitlines() == ["get|r.io"]
    assert secrets.scrub("x helper-secret y") == f"x {REDACTED} y"


def test_a_helper_without_the_credentials(tmp_path: Path) -> None:
    env = _env_with_helper(tmp_path, "t", "echo 'credentials not found in native keychain'; exit 1\n")
    assert asyncio.run(CredentialStore(env).lookup("r.io", "app")) is None


@pytest.mark.parametrize(
    "script, message",
    [
        ("echo 'the secret s3cr3t leaked'; exit 3\n", r"failed for r.io \(exit 3\)"),
        ("echo garbage\n", "did not answer with JSON"),
        ("sleep 30\n", "did not answer within 0.5 s"),
    ],
)
def test_a_failing_helper(tmp_path: Path, script: str, message: str) -> None:
    env = _env_with_helper(tmp_path, "t", script)
    with pytest.raises(CredentialError, match=message) as raised:
        asyncio.run(CredentialStore(env, timeout=0.5).lookup("r.io", "app"))
    assert "s3cr3t" not in str(raised.value)


def test_a_missing_helper(tmp_path: Path) -> None:
    _write(tmp_path / ".docker/config.json", {"credHelpers": {"r.io": "absent"}})
    with pytest.raises(CredentialError, match="docker-credential-absent is not on PATH"):
        asyncio.run(CredentialStore({"HOME": str(tmp_path), "PATH": str(tmp_path)}).lookup("r.io", "app"))
