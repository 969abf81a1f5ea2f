"""The probe, as Pants runs it, against hostile registries: scripted servers on loopback
(`testutil/hostile_registry.py`) that redirect, challenge, echo, stall and answer with what no
registry should. Each test names the rule it holds: credentials go only where the registry itself
sent them, never to another host or over plain HTTP; TLS and proxies follow the host contacted;
one registry's answer fails its own references and nothing else; every answer is bounded.

Hosts that are not loopback by the access rule but reach this machine stand in for remote
hosts: `127.1` (inet_aton's 127.0.0.1), `0.0.0.0` and `[::ffff:7f00:1]`. Their TLS is verified,
so the tests trust their CA through `~/.config/containers/certs.d/<host:port>/`, as a user would.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import pytest

from docker_mirror_testutil.hostile_registry import (
    Hold,
    HostileServer,
    Raw,
    Reply,
    Request,
    digest_reply,
)
from docker_mirror_testutil.fault_proxy import wait_until
from docker_mirror_testutil.probe_process import basic, docker_config, run_probe, trust_ca
from docker_mirror_testutil.tls import make_certificates

DIGEST = "sha256:" + "ab" * 32
FORGED = "sha256:" + "66" * 32
USER, PASSWORD = "alice", "pässwörd-Secret-0123456789abcdef"
TOKEN = "registry-token-0123456789"
MEBIBYTE = 1024 * 1024


def bearer_registry(realm: str) -> Callable[[Request], Reply]:
    """A registry that wants `Bearer <TOKEN>` from the token server at `realm`."""

    def handler(request: Request) -> Reply:
        if request.header("authorization") == f"Bearer {TOKEN}":
            return digest_reply(DIGEST)
        return Reply(401, [("WWW-Authenticate", f'Bearer realm="{realm}",service="svc"')])

    return handler


def token_server(request: Request) -> Reply:
    return Reply(200, [("Content-Type", "application/json")], json.dumps({"token": TOKEN}).encode())


def with_credentials(home: Path, registry: str) -> None:
    docker_config(home, {"auths": {registry: {"auth": basic(USER, PASSWORD)}}})


def assert_secret_never_reached(*servers: HostileServer) -> None:
    secrets = (PASSWORD, basic(USER, PASSWORD), TOKEN)
    for server in servers:
        for request in server.seen():
            text = request.text()
            assert not any(secret in text for secret in secrets), f"{server.address} got a secret"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    directory = tmp_path / "home"
    directory.mkdir()
    return directory


@pytest.fixture
def certificates(tmp_path: Path) -> Tuple[Path, Path, Path]:
    """A CA no system trusts, and its certificate for `127.1`."""
    directory = tmp_path / "certs"
    directory.mkdir()
    return make_certificates(directory, "127.1")


# ---------------------------------------------------------------------------------------------
# Credentials go only where the registry itself sends them


def test_a_host_the_registry_redirects_to_cannot_choose_where_its_credentials_go(
    tmp_path: Path, home: Path
) -> None:
    """Registry A redirects to B, B challenges with a realm on C: A's credentials never reach
    B or C (skopeo never contacts C), for the first repository or the next."""
    with HostileServer.start(token_server) as realm, HostileServer.start(
        lambda r: Reply(401, [("WWW-Authenticate", f'Bearer realm="{realm.url("/token")}"')]),
        host="127.0.0.2",
    ) as elsewhere, HostileServer.start(
        lambda r: Reply(307, [("Location", elsewhere.url(r.target))])
    ) as registry:
        with_credentials(home, registry.address)
        run = run_probe(tmp_path, [f"{registry.address}/team/app:1", f"{registry.address}/team/lib:1"],
                        home=home)
    assert_secret_never_reached(realm, elsewhere)
    assert (run.code, run.stderr) == (0, "")
    assert run.outcomes() == ["unauthorized", "unauthorized"]
    assert "127.0.0.2" in run.results[0]["message"]
    run.assert_no_secret(PASSWORD, basic(USER, PASSWORD))


def test_a_token_realm_that_redirects_never_gets_the_identity_token_resent(
    tmp_path: Path, home: Path, certificates: Tuple[Path, Path, Path]
) -> None:
    """The realm (HTTPS, named by the registry) answers the identity token's POST with a 307
    to plain HTTP on another host: the POST is not resent there."""
    identity_token = "identity-token-for-alice-0123456789"
    ca, cert, key = certificates
    with HostileServer.start(token_server, host="127.0.0.2") as plain, HostileServer.start(
        lambda r: Reply(307, [("Location", plain.url("/token"))]), tls=(cert, key)
    ) as realm, HostileServer.start(
        bearer_registry(f"https://127.1:{realm.port}/token")
    ) as registry:
        trust_ca(home, f"127.1:{realm.port}", ca)
        docker_config(home, {"auths": {registry.address: {"identitytoken": identity_token}}})
        run = run_probe(tmp_path, [f"{registry.address}/team/app:1"], home=home)
    assert [r.method for r in realm.seen()] == ["POST"]  # the realm the registry named: yes
    assert not any(identity_token in r.text() for r in plain.seen())
    assert plain.seen() == []
    assert run.outcomes() == ["error"]
    assert "redirect" in run.results[0]["message"]
    run.assert_no_secret(identity_token)


def test_authorization_is_dropped_on_redirects_to_another_host_or_port(
    tmp_path: Path, home: Path
) -> None:
    with HostileServer.start(lambda r: digest_reply(DIGEST)) as other_port:
        with HostileServer.start(lambda r: Reply(307, [("Location", other_port.url(r.target))])) as registry:
            with HostileServer.start(lambda r: digest_reply(DIGEST), host="127.0.0.2",
                                     port=registry.port) as other_host:

                def handler(request: Request) -> Reply:
                    if request.header("authorization") is None:
                        return Reply(401, [("WWW-Authenticate", 'Basic realm="r"')])
                    target = other_port if "/port/" in request.path else other_host
                    return Reply(307, [("Location", target.url(request.target))])

                registry.handler = handler
                with_credentials(home, registry.address)
                run = run_probe(tmp_path, [f"{registry.address}/port/app:1",
                                           f"{registry.address}/host/app:1"], home=home)
    assert run.outcomes() == ["ok", "ok"]
    assert [r.path for r in other_port.seen()] == ["/v2/port/app/manifests/1"]
    assert [r.path for r in other_host.seen()] == ["/v2/host/app/manifests/1"]
    assert_secret_never_reached(other_port, other_host)
    assert all(r.header("authorization") for r in registry.seen()[1:])  # the registry's own: yes


# ---------------------------------------------------------------------------------------------
# TLS and proxies follow the host contacted


def test_the_token_realm_of_a_loopback_registry_is_tls_verified(
    tmp_path: Path, home: Path, certificates: Tuple[Path, Path, Path]
) -> None:
    """A loopback registry's TLS is not verified; its realm on another host's is."""
    _, cert, key = certificates  # the CA is not trusted
    with HostileServer.start(token_server, tls=(cert, key)) as realm, HostileServer.start(
        bearer_registry(f"https://127.1:{realm.port}/token")
    ) as registry:
        with_credentials(home, registry.address)
        run = run_probe(tmp_path, [f"{registry.address}/team/app:1"], home=home)
    # The server counts a refused handshake once it reads the client's alert: maybe after the
    # probe has exited.
    wait_until(lambda: realm.handshake_failures >= 1, 5, "the realm's refused handshake")
    assert realm.seen() == []
    assert run.outcomes() == ["tls"]
    assert f"127.1:{realm.port}" in run.results[0]["message"]


def test_a_redirect_from_a_loopback_registry_to_another_host_is_tls_verified(
    tmp_path: Path, certificates: Tuple[Path, Path, Path]
) -> None:
    _, cert, key = certificates
    with HostileServer.start(lambda r: digest_reply(FORGED), tls=(cert, key)) as elsewhere, \
            HostileServer.start(lambda r: Reply(307, [("Location", elsewhere.url(r.target, host="127.1"))])
                                ) as registry:
        run = run_probe(tmp_path, [f"{registry.address}/team/app:1"])
    assert elsewhere.seen() == []
    assert run.outcomes() == ["tls"] and run.results[0]["digest"] is None


def test_the_token_realm_of_a_loopback_registry_is_reached_through_the_proxy(
    tmp_path: Path, home: Path, certificates: Tuple[Path, Path, Path]
) -> None:
    """Loopback is never proxied; the realm it names, on another host, is."""
    ca, cert, key = certificates
    with HostileServer.start(lambda r: Reply(400), proxy=True) as proxy, HostileServer.start(
        token_server, tls=(cert, key)
    ) as realm, HostileServer.start(bearer_registry(f"https://127.1:{realm.port}/token")) as registry:
        trust_ca(home, f"127.1:{realm.port}", ca)
        run = run_probe(tmp_path, [f"{registry.address}/team/app:1"], home=home,
                        env={"HTTPS_PROXY": proxy.url(), "HTTP_PROXY": proxy.url()})
    assert [(r.method, r.target) for r in proxy.seen()] == [("CONNECT", f"127.1:{realm.port}")]
    assert run.outcomes() == ["ok"] and run.results[0]["digest"] == DIGEST
    assert [r.path for r in realm.seen()] == ["/token"]


def test_an_https_registry_cannot_be_redirected_to_plain_http(
    tmp_path: Path, home: Path, certificates: Tuple[Path, Path, Path]
) -> None:
    """A plain-HTTP hop could forge the digest copy decisions rest on."""
    ca, cert, key = certificates
    with HostileServer.start(lambda r: digest_reply(FORGED), host="127.0.0.2") as plain, \
            HostileServer.start(lambda r: Reply(307, [("Location", plain.url(r.target))]),
                                tls=(cert, key)) as registry:
        trust_ca(home, f"127.1:{registry.port}", ca)
        run = run_probe(tmp_path, [f"127.1:{registry.port}/team/app:1"], home=home)
    assert plain.seen() == []
    (result,) = run.results
    assert (result["outcome"], result["digest"]) == ("error", None)
    assert "plain HTTP" in result["message"]


@pytest.mark.parametrize("host", ["127.1", "0.0.0.0", "[::ffff:7f00:1]"])
def test_tls_is_verified_for_addresses_that_only_reach_loopback(
    tmp_path: Path, certificates: Tuple[Path, Path, Path], host: str
) -> None:
    """Only `localhost`, 127.0.0.0/8 and ::1 as written skip verification (`localhost.evil.com`
    and `127.0.0.1.nip.io`, which need DNS, are in util_rules/registry_access_test.py)."""
    _, cert, key = certificates
    with HostileServer.start(lambda r: digest_reply(DIGEST), tls=(cert, key)) as registry:
        run = run_probe(tmp_path, [f"{host}:{registry.port}/team/app:1"])
    wait_until(lambda: registry.handshake_failures >= 1, 5, "the registry's refused handshake")
    assert registry.seen() == []
    assert run.outcomes() == ["tls"]


# ---------------------------------------------------------------------------------------------
# One registry's answer fails its own references, and the others go on


@contextlib.contextmanager
def _hostile(case: str, tmp_path: Path) -> Iterator[Tuple[List[Dict[str, object]], Dict[str, str]]]:
    """(request entries, environment) of a registry that broke the probe before."""
    with contextlib.ExitStack() as stack:

        def start(handler: Callable[[Request], object], **options: object) -> HostileServer:
            return stack.enter_context(HostileServer.start(handler, **options))  # type: ignore[arg-type]

        env: Dict[str, str] = {}
        need_body = False
        reference = "team/app:1"
        if case == "Retry-After of a superscript digit":
            server = start(lambda r: Raw(b"HTTP/1.1 503 Busy\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n\r\n"))
        elif case == "token JSON nested 200,000 deep":
            realm = start(lambda r: Reply(200, body=b"[" * 200_000))
            server = start(bearer_registry(realm.url("/token")))
        elif case == "error JSON nested 200,000 deep":
            server = start(lambda r: Reply(404, body=b"[" * 200_000))
            need_body = True
        elif case == "expires_in of 4,000 digits":
            body = b'{"token": "%s", "expires_in": 1%s}' % (TOKEN.encode(), b"0" * 4000)
            realm = start(lambda r: Reply(200, body=body))
            server = start(bearer_registry(realm.url("/token")))
        elif case == "non-ASCII Location":
            server = start(lambda r: Reply(302, [("Location", b"/v2/caf\xc3\xa9/manifests/1")])
                           if "caf" not in r.target else Reply(404))
        elif case == "non-ASCII realm path":
            realm = start(token_server)
            server = start(bearer_registry(realm.url("/tok\u00e9n")))
        elif case == "a host label of 64 characters":
            server = start(lambda r: digest_reply(DIGEST))
            reference = ""
            yield [{"reference": f"{'a' * 64}.test/team/app:1"}], env
            return
        elif case == "a malformed HTTPS_PROXY":
            server = start(lambda r: digest_reply(DIGEST))
            env["HTTPS_PROXY"] = "http://proxy.test:notaport"
            yield [{"reference": f"127.1:{server.port}/team/app:1"}], env
            return
        else:
            raise AssertionError(case)
        yield [{"reference": f"{server.address}/{reference}", "need_body": need_body}], env


CRASHERS = {
    # case: the outcome of the hostile reference once the probe holds
    "Retry-After of a superscript digit": "error",
    "token JSON nested 200,000 deep": "error",
    "error JSON nested 200,000 deep": "not_found",
    "expires_in of 4,000 digits": "ok",
    "non-ASCII Location": "not_found",
    "non-ASCII realm path": "ok",
    "a host label of 64 characters": "error",
    "a malformed HTTPS_PROXY": "error",
}


@pytest.mark.parametrize("case", sorted(CRASHERS))
def test_one_registrys_answer_fails_only_its_own_references(tmp_path: Path, case: str) -> None:
    with HostileServer.start(lambda r: digest_reply(DIGEST)) as healthy, _hostile(case, tmp_path) as (entries, env):
        run = run_probe(tmp_path, [*entries, f"{healthy.address}/team/app:1"], env=env, attempts=2)
    assert (run.code, run.stderr) == (0, "")
    hostile, other = run.results
    assert (other["outcome"], other["digest"]) == ("ok", DIGEST)
    assert hostile["outcome"] == CRASHERS[case], hostile["message"]
    if hostile["outcome"] != "ok":
        assert hostile["message"] and "\n" not in hostile["message"]


# ---------------------------------------------------------------------------------------------
# What leaves the probe: secrets scrubbed before a message is cut, no control characters


def test_a_secret_echoed_by_a_registry_is_scrubbed_before_the_message_is_cut(
    tmp_path: Path, home: Path
) -> None:
    def handler(request: Request) -> Reply:
        authorization = request.header("authorization")
        if authorization is None:
            return Reply(401, [("WWW-Authenticate", 'Basic realm="r"')])
        message = f"requested access to the resource is denied; you sent Authorization: {authorization}"
        return Reply(403, [("Content-Type", "application/json")],
                     json.dumps({"errors": [{"code": "DENIED", "message": message}]}).encode())

    with HostileServer.start(handler) as registry:
        with_credentials(home, registry.address)
        run = run_probe(tmp_path, [{"reference": f"{registry.address}/team/app:1", "need_body": True}],
                        home=home)
    (result,) = run.results
    assert result["outcome"] == "denied" and "DENIED" in result["message"]
    encoded = basic(USER, PASSWORD)
    for start in range(0, len(encoded) - 12):
        assert encoded[start:start + 12] not in run.text + run.stderr
    assert "<redacted>" in result["message"]


def test_control_characters_never_reach_the_output(tmp_path: Path) -> None:
    message = "denied \x1b[31mred\x1b[0m \x00 \u202egnp.exe \u2028next line"
    body = json.dumps({"errors": [{"code": "DENIED\x07", "message": message}]}).encode()
    with HostileServer.start(lambda r: Reply(403, body=body)) as registry:
        run = run_probe(tmp_path, [{"reference": f"{registry.address}/team/app:1", "need_body": True}])
    (result,) = run.results
    assert result["outcome"] == "denied" and "red" in result["message"]
    assert all(" " <= c <= "~" for c in result["message"]), result["message"]


def test_a_credential_helper_name_with_a_slash_is_refused(tmp_path: Path, home: Path) -> None:
    with HostileServer.start(lambda r: Reply(401, [("WWW-Authenticate", 'Basic realm="r"')])) as registry:
        docker_config(home, {"credHelpers": {registry.address: "../../bin/sh"}})
        run = run_probe(tmp_path, [f"{registry.address}/team/app:1"], home=home)
    (result,) = run.results
    assert result["outcome"] == "error" and "not a valid name" in result["message"]


# ---------------------------------------------------------------------------------------------
# Every answer is bounded: bodies, headers, redirects, time


def test_a_manifest_or_token_of_more_than_4_mib_is_refused(tmp_path: Path) -> None:
    big = b"{" + b" " * (4 * MEBIBYTE) + b"}"
    with HostileServer.start(lambda r: Reply(200, body=big)) as realm, HostileServer.start(
        bearer_registry(realm.url("/token"))
    ) as token_registry, HostileServer.start(
        lambda r: Reply(200, [("Docker-Content-Digest", DIGEST)], big)
    ) as manifest_registry:
        run = run_probe(tmp_path, [f"{token_registry.address}/team/app:1",
                                   {"reference": f"{manifest_registry.address}/team/app:1", "need_body": True}])
    assert run.outcomes() == ["error", "error"]
    assert all("4194304 bytes" in r["message"] for r in run.results), run.results


def test_a_megabyte_of_headers_is_refused(tmp_path: Path) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Filler-%d: %s\r\n" % (n, b"x" * 1000) for n in range(1000))
    with HostileServer.start(lambda r: Raw(head + b"Content-Length: 0\r\n\r\n")) as registry:
        run = run_probe(tmp_path, [f"{registry.address}/team/app:1"], attempts=2)
    assert run.outcomes() == ["unreachable"] and run.elapsed < 30
    assert "broken HTTP answer" in run.results[0]["message"]


def test_a_registry_that_stalls_mid_answer_is_bounded_in_time(tmp_path: Path) -> None:
    head = b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: " + DIGEST.encode() + b"\r\nContent-Length: 1000\r\n\r\n{"
    with HostileServer.start(lambda r: Hold(60, head)) as registry:
        run = run_probe(tmp_path, [{"reference": f"{registry.address}/team/app:1", "need_body": True}],
                        attempts=2, timeout_seconds=1)
    assert run.outcomes() == ["unreachable"] and run.elapsed < 20
    assert len(registry.seen()) == 2


def test_redirect_loops_are_bounded(tmp_path: Path) -> None:
    with HostileServer.start(lambda r: Reply(302, [("Location", r.target)])) as registry:
        run = run_probe(tmp_path, [f"{registry.address}/team/app:1"])
    (result,) = run.results
    assert result["outcome"] == "error" and "redirected" in result["message"]
    assert len(registry.seen()) <= 6


def test_retry_after_is_bounded(tmp_path: Path) -> None:
    long_wait = Reply(429, [("Retry-After", "9" * 5000)])
    with HostileServer.start(lambda r: long_wait) as registry:
        run = run_probe(tmp_path, [f"{registry.address}/team/app:1"], max_retry_after_seconds=60)
    (result,) = run.results
    assert (result["outcome"], result["retry_after_seconds"]) == ("rate_limited", 86400)
    assert len(registry.seen()) == 1 and run.elapsed < 30

