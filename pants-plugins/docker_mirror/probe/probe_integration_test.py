"""The probe as Pants runs it, `python -m docker_mirror.probe` in its own process, against real
registries on loopback: plain, htpasswd, and `auth: token` behind a token server the tests
start; credential helpers on PATH; fault-injecting proxies for retries and rate limits.
Request counts come from the registries' access logs and the token server's log. How the probe
is run: `testutil/probe_process.py`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from docker_mirror_testutil.fault_proxy import FaultProxy, always, first, passthrough
from docker_mirror_testutil.probe_process import (
    PROBE_TIMEOUT,
    basic,
    credential_helper,
    docker_config,
    run_probe,
)
from docker_mirror_testutil.pushes import push_image, push_index
from docker_mirror_testutil.registries import Registry, start_registry
from docker_mirror_testutil.token_server import TokenServer

USER, PASSWORD = "mirror", "correct-horse-battery-staple"
_MANIFEST_REQUEST = re.compile(r'"(HEAD|GET) /v2/\S+/manifests/\S+ HTTP')


def manifest_requests(registry: Registry, since: int) -> Counter:
    """HEAD and GET manifest requests in the registry's access log past line `since`."""
    counts: Counter = Counter()
    for line in registry.access_log()[since:]:
        match = _MANIFEST_REQUEST.search(line)
        if match:
            counts[match.group(1)] += 1
    return counts


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    registry = start_registry(tmp_path_factory.mktemp("plain-registry"))
    try:
        digests = {}
        for tag in range(1, 7):
            digests[f"team/app:{tag}"] = push_image(registry.address, "team/app", str(tag))
        index_digest, index = push_index(registry.address, "base", "1", "base", [("linux", "amd64"), ("linux", "arm64")])
        digests["base:1"] = index_digest
        yield {"registry": registry, "digests": digests, "index": index}
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    directory = tmp_path_factory.mktemp("htpasswd-registry")
    htpasswd = directory / "htpasswd"
    import bcrypt

    # The lowest bcrypt cost: the registry checks it on every request.
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    registry = start_registry(directory / "state", htpasswd)
    try:
        authorization = f"Basic {basic(USER, PASSWORD)}"
        digests = {f"private/app:{t}": push_image(registry.address, "private/app", str(t), authorization=authorization)
                   for t in range(1, 4)}
        yield {"registry": registry, "digests": digests}
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    directory = tmp_path_factory.mktemp("token-registry")
    identity_token = "identity-token-for-alice-0123456789"
    server = TokenServer.start(directory, users={"alice": PASSWORD}, identity_tokens={identity_token: "alice"})
    registry = None
    try:
        registry = start_registry(directory / "state", env=server.registry_env())
        digests = {}
        for repository, tags in (("team/app", 3), ("team/lib", 1), ("public/base", 1)):
            token = server.issue("alice", [f"repository:{repository}:pull,push"])
            for tag in range(1, tags + 1):
                digests[f"{repository}:{tag}"] = push_image(
                    registry.address, repository, str(tag), authorization=f"Bearer {token}")
        yield {"registry": registry, "server": server, "digests": digests, "identity_token": identity_token}
    finally:
        if registry is not None:
            registry.stop()
        server.stop()


# ---------------------------------------------------------------------------------------------
# A plain registry: HEAD only


def test_a_no_op_probe_is_one_head_per_reference_and_no_get(plain: Dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = plain["registry"]
    present = [f"team/app:{t}" for t in range(1, 7)] + ["base:1"]
    missing = ["team/app:missing", "nothing/here:1"]
    since = len(registry.access_log())
    run = run_probe(tmp_path, [f"{registry.address}/{r}" for r in present + missing])
    assert (run.code, run.stderr) == (0, "")
    assert manifest_requests(registry, since) == Counter({"HEAD": len(present) + len(missing)})
    assert run.sent(registry.address) == {"HEAD": 9, "GET": 0, "token": 0}
    for result, name in zip(run.results, present):
        assert result["outcome"] == "ok" and result["method"] == "HEAD" and result["body"] is None
        assert result["digest"] == plain["digests"][name] == registry.manifest_digest(*name.split(":"))
    assert run.results[len(present) - 1]["media_type"] == "application/vnd.oci.image.index.v1+json"
    assert run.results[0]["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert run.results[0]["size"] > 0
    assert run.outcomes()[-2:] == ["not_found", "not_found"]
    assert run.results[-2]["message"] == f"team/app:missing not found at {registry.address} (404)"


def test_a_body_is_one_get_and_a_pin_one_head(plain: Dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = plain["registry"]
    pinned = f"{registry.address}/team/app:1@{plain['digests']['team/app:1']}"
    since = len(registry.access_log())
    run = run_probe(tmp_path, [{"reference": f"{registry.address}/base:1", "need_body": True}, pinned])
    index, pin = run.results
    assert (index["outcome"], index["method"], base64.b64decode(index["body"])) == ("ok", "GET", plain["index"])
    assert index["digest"] == plain["digests"]["base:1"] and index["size"] == len(plain["index"])
    assert (pin["outcome"], pin["method"], pin["digest"]) == ("ok", "HEAD", plain["digests"]["team/app:1"])
    assert manifest_requests(registry, since) == Counter({"HEAD": 1, "GET": 1})
    assert any(f"HEAD /v2/team/app/manifests/{plain['digests']['team/app:1']}" in line
               for line in registry.access_log()[since:])


def test_without_a_digest_header_the_digest_is_that_of_the_body(plain: Dict[str, Any], tmp_path: Path) -> None:
    proxy = FaultProxy.start(plain["registry"].address, passthrough(), strip_headers=["Docker-Content-Digest"])
    try:
        run = run_probe(tmp_path, [f"{proxy.address}/team/app:2"])
    finally:
        proxy.stop()
    (result,) = run.results
    assert (result["outcome"], result["method"], result["digest"]) == ("ok", "GET", plain["digests"]["team/app:2"])
    assert [(r.method, r.status) for r in proxy.requests()] == [("HEAD", 200), ("GET", 200)]


def test_a_bad_request_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "request.json").write_text('{"version": 1, "requests": "python"}')
    process = subprocess.run(
        [sys.executable, "-m", "docker_mirror.probe", str(tmp_path / "request.json"), str(tmp_path / "out.json")],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        capture_output=True, text=True, timeout=PROBE_TIMEOUT,
    )
    assert process.returncode == 2 and process.stdout == ""
    assert process.stderr.endswith("requests must be a list\n") and process.stderr.count("\n") == 1


# ---------------------------------------------------------------------------------------------
# htpasswd: Basic credentials


def test_basic_credentials_from_the_docker_config(htpasswd_registry: Dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = htpasswd_registry["registry"]
    home = tmp_path / "home"
    docker_config(home, {"auths": {registry.address: {"auth": basic(USER, PASSWORD)}}})
    names = sorted(htpasswd_registry["digests"])
    since = len(registry.access_log())
    run = run_probe(tmp_path, [f"{registry.address}/{n}" for n in names], home=home)
    assert run.outcomes() == ["ok"] * 3
    assert [r["digest"] for r in run.results] == [htpasswd_registry["digests"][n] for n in names]
    # One 401 teaches the probe that the registry wants Basic; the rest send it at once.
    assert manifest_requests(registry, since) == Counter({"HEAD": 4})
    assert run.sent(registry.address) == {"HEAD": 4, "GET": 0, "token": 0}
    run.assert_no_secret(PASSWORD, basic(USER, PASSWORD))


def test_wrong_credentials_are_unauthorized_and_never_shown(htpasswd_registry: Dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = htpasswd_registry["registry"]
    home = tmp_path / "home"
    wrong = "wrong-password-do-not-print"
    config = docker_config(home, {"auths": {registry.address: {"auth": basic(USER, wrong)}}})
    run = run_probe(tmp_path, [f"{registry.address}/private/app:1", f"{registry.address}/private/app:2"], home=home)
    assert (run.code, run.stdout, run.stderr) == (0, "", "")
    assert run.outcomes() == ["unauthorized", "unauthorized"]
    assert run.results[0]["http_status"] == 401
    assert run.results[0]["message"] == (
        f"unauthorized by {registry.address} (401) for private/app:1: it refused the credentials from {config}")
    run.assert_no_secret(wrong, basic(USER, wrong), PASSWORD)


def test_no_credentials(htpasswd_registry: Dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = htpasswd_registry["registry"]
    run = run_probe(tmp_path, [f"{registry.address}/private/app:1"])
    assert run.outcomes() == ["unauthorized"]
    assert "no credentials for" in run.results[0]["message"]


def test_the_containers_auth_file(htpasswd_registry: Dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = htpasswd_registry["registry"]
    home = tmp_path / "home"
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {f"{registry.address}/private": {"auth": basic(USER, PASSWORD)}}}))
    docker_config(home, {"auths": {registry.address: {"auth": basic(USER, "stale")}}})
    run = run_probe(tmp_path, [f"{registry.address}/private/app:1"], home=home,
                    env={"REGISTRY_AUTH_FILE": str(auth_file)})
    assert run.outcomes() == ["ok"]
    # As skopeo does: with REGISTRY_AUTH_FILE set, that file is the only one read.
    auth_file.write_text(json.dumps({"auths": {}}))
    docker_config(home, {"auths": {registry.address: {"auth": basic(USER, PASSWORD)}}})
    run = run_probe(tmp_path, [f"{registry.address}/private/app:1"], home=home,
                    env={"REGISTRY_AUTH_FILE": str(auth_file)})
    assert run.outcomes() == ["unauthorized"]
    # Without it: the runtime file (XDG_RUNTIME_DIR), then ~/.config, then the Docker config.
    (home / "containers").mkdir()
    (home / "containers" / "auth.json").write_text(json.dumps({"auths": {registry.address: {"auth": basic(USER, "x")}}}))
    run = run_probe(tmp_path, [f"{registry.address}/private/app:1"], home=home)
    assert run.outcomes() == ["unauthorized"]
    (home / "containers" / "auth.json").unlink()
    run = run_probe(tmp_path, [f"{registry.address}/private/app:1"], home=home)
    assert run.outcomes() == ["ok"]


# ---------------------------------------------------------------------------------------------
# auth: token, with the test's token server


def test_anonymous_tokens(token_registry: Dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = token_registry["registry"]
    server: TokenServer = token_registry["server"]
    before = len(server.requests())
    run = run_probe(tmp_path, [f"{registry.address}/public/base:1", f"{registry.address}/team/app:1"])
    assert run.outcomes() == ["ok", "unauthorized"]
    assert run.results[0]["digest"] == token_registry["digests"]["public/base:1"]
    issued = server.requests()[before:]
    assert sorted((t.user, tuple(t.scopes)) for t in issued) == [
        (None, ("repository:public/base:pull",)), (None, ("repository:team/app:pull",))]


def test_one_token_per_scope_with_basic_credentials(token_registry: Dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = token_registry["registry"]
    server: TokenServer = token_registry["server"]
    home = tmp_path / "home"
    docker_config(home, {"auths": {registry.address: {"auth": basic("alice", PASSWORD)}}})
    names = ["team/app:1", "team/app:2", "team/app:3", "team/lib:1", "team/app:1", "team/app:nope"]
    before, since = len(server.requests()), len(registry.access_log())
    run = run_probe(tmp_path, [f"{registry.address}/{n}" for n in names], home=home, max_concurrency_per_registry=4)
    assert run.outcomes() == ["ok"] * 5 + ["not_found"]
    assert [r["digest"] for r in run.results[:5]] == [token_registry["digests"][n] for n in names[:5]]
    issued = server.requests()[before:]
    assert sorted((t.method, t.user, tuple(t.scopes), t.status) for t in issued) == [
        ("GET", "alice", ("repository:team/app:pull",), 200), ("GET", "alice", ("repository:team/lib:pull",), 200)]
    # 5 distinct references, and the first one's 401.
    assert manifest_requests(registry, since) == Counter({"HEAD": 6})
    assert run.sent(registry.address) == {"HEAD": 6, "GET": 0, "token": 2}
    run.assert_no_secret(PASSWORD, basic("alice", PASSWORD))


def test_a_credential_helper_on_path(token_registry: Dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = token_registry["registry"]
    server: TokenServer = token_registry["server"]
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    log = credential_helper(bin_dir, "mirrortest", {"ServerURL": registry.address, "Username": "alice", "Secret": PASSWORD})
    docker_config(home, {"auths": {registry.address: {}}, "credHelpers": {registry.address: "mirrortest"}})
    before = len(server.requests())
    run = run_probe(tmp_path, [f"{registry.address}/team/app:1", f"{registry.address}/team/lib:1"], home=home,
                    env={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert run.outcomes() == ["ok", "ok"]
    # Asked once for the registry, the server URL on stdin, only `get` in argv.
    assert log.read_text().splitlines() == [f"get|{registry.address}"]
    parent = (bin_dir / "mirrortest.parent").read_text()
    assert "docker_mirror.probe" in parent and PASSWORD not in parent
    assert {t.user for t in server.requests()[before:]} == {"alice"}
    run.assert_no_secret(PASSWORD)


def test_a_creds_store_with_an_identity_token(token_registry: Dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = token_registry["registry"]
    server: TokenServer = token_registry["server"]
    identity_token = token_registry["identity_token"]
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    credential_helper(bin_dir, "mirrorstore", {"ServerURL": registry.address, "Username": "<token>", "Secret": identity_token})
    docker_config(home, {"credsStore": "mirrorstore"})
    before = len(server.requests())
    run = run_probe(tmp_path, [f"{registry.address}/team/app:2"], home=home,
                    env={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert run.outcomes() == ["ok"]
    issued = server.requests()[before:]
    assert [(t.method, t.grant_type, t.user) for t in issued] == [("POST", "refresh_token", "alice")]
    run.assert_no_secret(identity_token)


def test_wrong_credentials_at_the_token_server(token_registry: Dict[str, Any], tmp_path: Path) -> None:
    registry: Registry = token_registry["registry"]
    home = tmp_path / "home"
    wrong = "not-alices-password-0000"
    config = docker_config(home, {"auths": {registry.address: {"auth": basic("alice", wrong)}}})
    run = run_probe(tmp_path, [f"{registry.address}/team/app:1"], home=home)
    assert run.outcomes() == ["unauthorized"]
    host = token_registry["server"].address.split(":")[0]
    assert run.results[0]["message"] == (
        f"unauthorized by {registry.address} for team/app:1: its token server {host} refused the "
        f"credentials from {config} (401)")
    run.assert_no_secret(wrong, basic("alice", wrong), PASSWORD)


# ---------------------------------------------------------------------------------------------
# Faults: retries, rate limits, registries that do not answer


def test_503_twice_then_the_registry_answers(plain: Dict[str, Any], tmp_path: Path) -> None:
    proxy = FaultProxy.start(plain["registry"].address, first(2, 503))
    try:
        run = run_probe(tmp_path, [f"{proxy.address}/team/app:3"])
    finally:
        proxy.stop()
    assert run.outcomes() == ["ok"] and run.results[0]["digest"] == plain["digests"]["team/app:3"]
    assert [(r.method, r.status, r.injected) for r in proxy.requests()] == [
        ("HEAD", 503, True), ("HEAD", 503, True), ("HEAD", 200, False)]
    assert run.sent(proxy.address) == {"HEAD": 3, "GET": 0, "token": 0}


def test_a_rate_limit_beyond_the_cap_is_named_at_once(plain: Dict[str, Any], tmp_path: Path) -> None:
    proxy = FaultProxy.start(plain["registry"].address, always(429, {"Retry-After": "3600"}))
    try:
        run = run_probe(tmp_path, [f"{proxy.address}/team/app:{t}" for t in (1, 2, 3)], max_retry_after_seconds=60)
    finally:
        proxy.stop()
    assert run.outcomes() == ["rate_limited"] * 3
    first_result = run.results[0]
    assert first_result["message"] == f"rate limited by {proxy.address} (429), retry after 3600 s"
    assert (first_result["retry_after_seconds"], first_result["http_status"]) == (3600, 429)
    assert len(proxy.requests()) == 1  # the other images do not ask again
    assert run.elapsed < 30


def test_a_short_rate_limit_is_waited_for(plain: Dict[str, Any], tmp_path: Path) -> None:
    proxy = FaultProxy.start(plain["registry"].address, first(1, 429, {"Retry-After": "1"}))
    try:
        run = run_probe(tmp_path, [f"{proxy.address}/team/app:4"])
    finally:
        proxy.stop()
    assert run.outcomes() == ["ok"] and run.elapsed >= 1
    assert len(proxy.requests()) == 2


def test_a_registry_that_keeps_failing(plain: Dict[str, Any], tmp_path: Path) -> None:
    proxy = FaultProxy.start(plain["registry"].address, always(503))
    try:
        run = run_probe(tmp_path, [f"{proxy.address}/team/app:5"], attempts=3)
    finally:
        proxy.stop()
    assert run.outcomes() == ["error"] and len(proxy.requests()) == 3
    assert run.results[0]["message"] == f"{proxy.address}: answered 503 Service Unavailable (3 attempts)"


def test_nothing_listening(tmp_path: Path) -> None:
    # A port bound and not listening: connections are refused, and nobody else can take it.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{bound.getsockname()[1]}"
        run = run_probe(tmp_path, [f"{address}/a:1", f"{address}/b:1"], attempts=3)
    assert run.outcomes() == ["unreachable"] * 2
    assert run.results[0]["message"] == f"registry {address} unreachable: connection refused (3 attempts)"
    assert run.elapsed < 30


def test_a_registry_that_never_answers_is_bounded_in_time(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts connections (the kernel does) and says nothing
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        run = run_probe(tmp_path, [f"{address}/a:1"], attempts=2, timeout_seconds=1)
        assert run.outcomes() == ["unreachable"] and "timed out" in run.results[0]["message"]
        assert run.elapsed < 20
        run = run_probe(tmp_path, [f"{address}/a:1"], attempts=4, timeout_seconds=5, deadline_seconds=2)
        assert run.outcomes() == ["unreachable"]
        assert run.results[0]["message"] == f"no answer from {address} within the probe's deadline of 2 s"
        assert run.elapsed < 15
