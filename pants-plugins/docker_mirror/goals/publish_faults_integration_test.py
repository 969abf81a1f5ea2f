"""End to end under faults: the real `./pants publish` (one pantsd for the module), the real
registry probe copying, real `docker-registry` processes, and the fault proxy (`testutil/fault_proxy.py`) between the
plugin and the destination registry. After every fault, `assert_destination_consistent` reads
the whole destination back through the registry API (every blob fetched).

The figures for the issue's note (faults injected by kind, runs that recovered, tags checked,
blobs missing, tags overwritten wrongly) are printed at the end of the module and written to
`fault-figures.json` in pytest's base temporary directory (or `$DOCKER_MIRROR_FAULT_FIGURES`)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest
from docker_mirror_testutil import consistency, cosign
from docker_mirror_testutil.consistency import Tag, assert_destination_consistent, destination_tags
from docker_mirror_testutil.fault_proxy import (
    BLOB_UPLOAD,
    MANIFEST,
    PUSH_METHODS,
    FaultProxy,
    Reset,
    Rule,
    Stall,
    Then,
    passthrough,
    respond,
    rules,
    wait_until,
)
from docker_mirror_testutil.pants_repo import COPY_BUILD, NO_DOCKER, PantsRepo, PantsResult
from docker_mirror_testutil.pushes import push_image
from docker_mirror_testutil.registries import MANIFEST_MEDIA_TYPES, Registry, htpasswd_entry
from docker_mirror_testutil.tls import make_certificates

# Every Pants run of this module must end within this (a stalled copy must not hang the suite).
RUN_TIMEOUT = 240
# The requests that carry a blob's bytes (the POST that opens an upload has no body).
BLOB_BODY = frozenset({"PATCH", "PUT"})

FAULTS: Counter = Counter()  # by kind, over the module
RUNS: Counter = Counter()  # "recovered": runs that succeeded through injected faults, ...


@pytest.fixture(scope="module", autouse=True)
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    consistency.FIGURES.clear()
    yield
    report = {
        "faults_injected": dict(FAULTS),
        "runs": dict(RUNS),
        "destination_tags_checked": consistency.FIGURES["tags_checked"],
        "blobs_fetched": consistency.FIGURES["blobs_fetched"],
        "blobs_missing": consistency.FIGURES["blobs_missing"],
        "tags_overwritten_wrongly": consistency.FIGURES["tags_overwritten_wrongly"],
    }
    path = Path(
        os.environ.get("DOCKER_MIRROR_FAULT_FIGURES")
        or tmp_path_factory.getbasetemp() / "fault-figures.json"
    )
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"\nfault figures ({path}):\n{json.dumps(report, sort_keys=True)}")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PantsRepo]:
    repo = PantsRepo(tmp_path_factory.mktemp("faults-repo"))
    try:
        yield repo
    finally:
        repo.stop_daemon()


@pytest.fixture(scope="module")
def upstream(registries: Callable[..., Registry]) -> Registry:
    return registries()


@pytest.fixture
def proxies() -> Iterator[Callable[..., FaultProxy]]:
    """Starts fault proxies; stops each (and counts its faults) when the test ends."""
    started: List[FaultProxy] = []

    def start(upstream: str, plan=None) -> FaultProxy:
        proxy = FaultProxy.start(upstream, plan or passthrough())
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        FAULTS.update(proxy.faults())
        proxy.stop()


def destination_option(address: str) -> str:
    registries = {
        "mirror": {"address": address, "default": True, "repository": "mirror/{target_repository}"}
    }
    return f"--docker-registries={registries!r}"


def publish(
    repo: PantsRepo, directory: str, destination: str, *options: str,
    env: Optional[Dict[str, str]] = None, daemon: bool = True,
) -> PantsResult:  # fmt: skip
    defaults = [
        option
        for option in ("--docker-mirror-registry-timeout=20", "--docker-mirror-copy-timeout=120",
                       "--docker-mirror-max-retry-wait=5")
        if not any(given.startswith(option.split("=")[0] + "=") for given in options)
    ]  # fmt: skip
    return repo.pants(
        destination_option(destination),
        *defaults,
        *options,
        "publish",
        f"{directory}::",
        daemon=daemon,
        timeout=RUN_TIMEOUT,
        env={**NO_DOCKER, **(env or {})},
    )


def seed(upstream: Registry, directory: str, names: List[str], *, layer_size: int = 0) -> Dict[str, str]:
    """Pushes `<directory>/<name>:1` for each name to the source; returns name -> digest."""
    digests = {}
    for name in names:
        layer = os.urandom(layer_size) if layer_size else None
        digests[name] = push_image(upstream.address, f"{directory}/{name}", "1", layer=layer)
    return digests


def write_spec(repo: PantsRepo, upstream: Registry, directory: str, names: List[str]) -> None:
    repo.write(
        {
            f"{directory}/BUILD": COPY_BUILD,
            f"{directory}/images.txt": "".join(
                f"{upstream.address}/{directory}/{name}:1 AS {name}\n" for name in names
            ),
        }
    )


def expected(directory: str, digests: Dict[str, str]) -> Dict[Tag, str]:
    return {(f"mirror/{directory}/{name}", "1"): digest for name, digest in digests.items()}


def assert_no_traceback(result: PantsResult) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result


# ---------------------------------------------------------------------------------------------
# Transient faults: retried, the run succeeds


@pytest.mark.parametrize(
    "kind, fault_rules",
    [
        # The first 3 requests to the destination answer 503 (the probe's reads, then its copy's).
        ("503", lambda: [Rule(respond(503), times=3)]),
        # Rate limited, once on a read and once on a push, with a short Retry-After.
        ("429", lambda: [
            Rule(respond(429, {"Retry-After": "1"}), methods=frozenset({"HEAD", "GET"}), times=1),
            Rule(respond(429, {"Retry-After": "1"}), methods=PUSH_METHODS, times=1),
        ]),
        # A connection reset once, before an answer, on the first blob upload request.
        ("reset", lambda: [Rule(Reset(0), methods=PUSH_METHODS, path=BLOB_UPLOAD, times=1)]),
        # A blob upload cut once in the middle of its body: the probe sends it again.
        ("reset", lambda: [Rule(Reset(8), methods=BLOB_BODY, path=BLOB_UPLOAD, times=1)]),
    ],
    ids=["503", "429", "reset", "reset-mid-blob"],
)
def test_transient_faults_are_retried_and_the_run_succeeds(
    kind: str, fault_rules, repo: PantsRepo, upstream: Registry,
    registries: Callable[..., Registry], proxies, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    directory = "transient" + request.node.callspec.id.replace("-", "")
    names = ["a", "b"]
    digests = seed(upstream, directory, names)
    write_spec(repo, upstream, directory, names)
    destination = registries()
    proxy = proxies(destination.address, rules(*fault_rules()))

    result = publish(repo, directory, proxy.address, "--docker-mirror-retries=3")

    assert proxy.faults()[kind] >= 1, proxy.requests()
    assert result.returncode == 0, result
    for name in names:
        assert f"✓ {proxy.address}/mirror/{directory}/{name}:1 published to @mirror" in result.stderr
    assert_destination_consistent(
        destination, expected(directory, digests), must_exist=tuple(expected(directory, digests))
    )
    RUNS["recovered"] += 1


# ---------------------------------------------------------------------------------------------
# Persistent faults: that image fails alone, naming image, registry and fault


def test_persistent_faults_fail_their_image_alone_naming_image_registry_and_fault(
    repo: PantsRepo, upstream: Registry, registries: Callable[..., Registry], proxies
) -> None:
    directory = "persistent"
    names = ["ok", "broken", "denied", "unauthorized"]
    digests = seed(upstream, directory, names)
    write_spec(repo, upstream, directory, names)
    destination = registries()
    # One image that is already at the destination, under another digest: left as it was.
    other = push_image(destination.address, f"mirror/{directory}/denied", "old", "pre-existing")
    before = destination_tags(destination)
    proxy = proxies(
        destination.address,
        rules(
            Rule(respond(500), path=f"/mirror/{directory}/broken/"),
            Rule(respond(403), methods=PUSH_METHODS, path=f"/mirror/{directory}/denied/"),
            Rule(respond(401, {"WWW-Authenticate": 'Basic realm="mirror"'}), methods=PUSH_METHODS,
                 path=f"/mirror/{directory}/unauthorized/"),
        ),
    )

    result = publish(repo, directory, proxy.address, "--docker-mirror-retries=1")

    assert result.returncode != 0, result
    assert_no_traceback(result)
    at = f"at registry {proxy.address}"
    assert f"✓ {proxy.address}/mirror/{directory}/ok:1 published to @mirror" in result.stderr
    failures = {
        line for line in result.stderr.splitlines() if line.lstrip().startswith("✕")
    }
    for name, fault in (("broken", "500"), ("denied", "denied"), ("unauthorized", "unauthorized")):
        line = next((l for l in failures if f"/mirror/{directory}/{name}:1" in l), None)
        assert line is not None, result
        assert at in line and f"{upstream.address}/{directory}/{name}" in line, line
        assert fault in line.lower() or {
            "500": "server error", "denied": "access denied", "unauthorized": "access denied",
        }[fault] in line, line
    assert len(failures) == 3, result
    now = assert_destination_consistent(
        destination, expected(directory, digests), before,
        must_exist=((f"mirror/{directory}/ok", "1"),),
    )  # fmt: skip
    assert now[(f"mirror/{directory}/denied", "old")] == other
    for name in ("broken", "denied", "unauthorized"):
        assert (f"mirror/{directory}/{name}", "1") not in now


# ---------------------------------------------------------------------------------------------
# Interrupted pushes: a reset in the middle of a blob, the registry killed during a copy


def test_a_connection_reset_in_the_middle_of_a_blob_upload_leaves_no_tag_and_the_rerun_completes(
    repo: PantsRepo, upstream: Registry, registries: Callable[..., Registry], proxies
) -> None:
    directory = "midblob"
    names = ["big", "small"]
    digests = seed(upstream, directory, names, layer_size=3 * 1024 * 1024)
    write_spec(repo, upstream, directory, names)
    destination = registries()
    # Every upload of `big`'s blobs is cut 1 MiB into its body: it can never succeed this run.
    proxy = proxies(
        destination.address,
        rules(Rule(Reset(1024 * 1024), methods=BLOB_BODY,
                   path=f"/mirror/{directory}/big/blobs/uploads/")),
    )  # fmt: skip

    first = publish(repo, directory, proxy.address, "--docker-mirror-retries=1")

    assert first.returncode != 0, first
    assert_no_traceback(first)
    cut = [r for r in proxy.requests() if r.fault == "reset"]
    assert cut and all(r.method in ("PATCH", "PUT") for r in cut), proxy.requests()
    line = next(l for l in first.stderr.splitlines() if f"✕ {proxy.address}/mirror/{directory}/big:1 failed" in l)
    # Named: the image, the registry, the fault (seen as a reset, not waited out as a timeout),
    # and the request it cut; never the upload session's URL (its signed `_state`).
    assert f"at registry {proxy.address}" in line and "the connection to the registry was lost" in line, line
    assert "connection reset" in line and "timed out" not in line, line
    assert "uploading blob sha256:" in line and f" to {proxy.address}/mirror/{directory}/big " in line, line
    assert "/blobs/uploads/" not in first.stderr + first.stdout and "_state" not in first.stderr + first.stdout
    now = assert_destination_consistent(destination, expected(directory, digests))
    assert (f"mirror/{directory}/big", "1") not in now  # no partial tag

    # The cause gone, the same command completes.
    proxy.plan = passthrough()
    second = publish(repo, directory, proxy.address)
    assert second.returncode == 0, second
    assert_destination_consistent(
        destination, expected(directory, digests), must_exist=tuple(expected(directory, digests))
    )
    RUNS["recovered"] += 1


def _kill(registry: Registry) -> None:
    """SIGKILL, as a crash would; then waits for it to be gone."""
    pid = int((registry.state_dir / "registry.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    registry.stop()  # waits until every thread has exited


def test_the_destination_registry_killed_during_a_copy_and_the_rerun_completes(
    repo: PantsRepo, upstream: Registry, registries: Callable[..., Registry], proxies
) -> None:
    directory = "killed"
    names = ["big"]
    digests = seed(upstream, directory, names, layer_size=2 * 1024 * 1024)
    write_spec(repo, upstream, directory, names)
    destination = registries()
    # The first blob upload stalls half-way: the registry is killed while the copy is under way.
    proxy = proxies(
        destination.address,
        rules(Rule(Stall(60, 1024 * 1024, then="continue"), methods=BLOB_BODY,
                   path=BLOB_UPLOAD, times=1)),
    )  # fmt: skip
    outcome: Dict[str, PantsResult] = {}
    run = threading.Thread(
        target=lambda: outcome.setdefault("first", publish(repo, directory, proxy.address,
                                                           "--docker-mirror-retries=0")),
    )  # fmt: skip
    run.start()
    try:
        wait_until(proxy.stalled.is_set, RUN_TIMEOUT, "a blob upload reached the proxy")
        _kill(destination)
        FAULTS["registry_killed"] += 1
        proxy.release()
    finally:
        run.join(RUN_TIMEOUT + 10)
    first = outcome["first"]
    assert first.returncode != 0, first
    assert_no_traceback(first)
    assert f"✕ {proxy.address}/mirror/{directory}/big:1 failed" in first.stderr, first

    destination.start()
    assert_destination_consistent(destination, expected(directory, digests))
    second = publish(repo, directory, proxy.address)
    assert second.returncode == 0, second
    assert_destination_consistent(
        destination, expected(directory, digests), must_exist=tuple(expected(directory, digests))
    )
    RUNS["recovered"] += 1


def test_a_stalled_upload_fails_its_image_within_copy_timeout(
    repo: PantsRepo, upstream: Registry, registries: Callable[..., Registry], proxies
) -> None:
    directory = "stalled"
    names = ["slow", "fine"]
    digests = seed(upstream, directory, names)
    write_spec(repo, upstream, directory, names)
    destination = registries()
    # `slow`'s blob upload hangs for far longer than the copy may take.
    proxy = proxies(
        destination.address,
        rules(Rule(Stall(RUN_TIMEOUT), methods=BLOB_BODY,
                   path=f"/mirror/{directory}/slow/blobs/uploads/")),
    )  # fmt: skip
    started = time.monotonic()
    result = publish(
        repo, directory, proxy.address, "--docker-mirror-retries=0",
        "--docker-mirror-copy-timeout=10",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    proxy.release()

    assert result.returncode != 0, result
    assert_no_traceback(result)
    line = next(l for l in result.stderr.splitlines() if f"/mirror/{directory}/slow:1 failed" in l)
    # The copy's deadline (`copy_timeout`) cut the blob upload the proxy held.
    assert "timed out" in line and f"at registry {proxy.address}" in line, line
    assert "`[docker-mirror].copy_timeout` bounds a copy" in line, line
    assert f"✓ {proxy.address}/mirror/{directory}/fine:1 published to @mirror" in result.stderr
    assert elapsed < RUN_TIMEOUT / 2, elapsed  # the stall (RUN_TIMEOUT) did not hold the run
    now = assert_destination_consistent(destination, expected(directory, digests))
    assert (f"mirror/{directory}/slow", "1") not in now


# ---------------------------------------------------------------------------------------------
# Someone else writes the tag between the check and the copy: reported, not overwritten


def test_a_tag_changed_between_check_and_copy_is_reported_and_not_overwritten(
    repo: PantsRepo, upstream: Registry, registries: Callable[..., Registry], proxies
) -> None:
    directory = "raced"
    names = ["app"]
    digests = seed(upstream, directory, names)
    write_spec(repo, upstream, directory, names)
    destination = registries()
    theirs: List[str] = []

    def someone_else_pushes() -> None:
        theirs.append(push_image(destination.address, f"mirror/{directory}/app", "1", "theirs"))

    # Once the plugin has checked the tag (the probe's read of its manifest), another writer
    # pushes a different image to it, straight to the registry.
    proxy = proxies(
        destination.address,
        rules(Rule(Then(None, someone_else_pushes), methods=frozenset({"HEAD", "GET"}),
                   path=f"/mirror/{directory}/app{MANIFEST}1$", times=1)),
    )  # fmt: skip

    result = publish(repo, directory, proxy.address)
    FAULTS["tag_changed_by_another_writer"] += len(theirs)

    assert theirs, proxy.requests()
    assert result.returncode != 0, result
    assert_no_traceback(result)
    assert "the destination changed since it was checked" in result.stderr, result
    assert "not overwriting it" in result.stderr, result
    now = assert_destination_consistent(
        destination, expected(directory, digests), {(f"mirror/{directory}/app", "1"): theirs[0]}
    )
    assert now[(f"mirror/{directory}/app", "1")] == theirs[0]  # theirs, untouched


# ---------------------------------------------------------------------------------------------
# Two runs at once, in two repositories (two pantsd), against one destination


def test_two_concurrent_runs_of_the_same_targets_both_succeed_or_report_the_change(
    repo: PantsRepo, upstream: Registry, registries: Callable[..., Registry],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    directory = "concurrent"
    names = ["a", "b", "c"]
    digests = seed(upstream, directory, names, layer_size=512 * 1024)
    destination = registries()
    other = PantsRepo(tmp_path_factory.mktemp("faults-repo-2"))
    try:
        for each in (repo, other):
            write_spec(each, upstream, directory, names)
        # Both daemons up first, so that the two publishes really overlap.
        assert other.pants("--version", daemon=True).returncode == 0
        results: Dict[str, PantsResult] = {}
        start = threading.Barrier(2)

        def run(name: str, where: PantsRepo) -> None:
            start.wait()
            results[name] = publish(where, directory, destination.address)

        threads = [threading.Thread(target=run, args=(n, r)) for n, r in (("one", repo), ("two", other))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(RUN_TIMEOUT + 10)
    finally:
        other.stop_daemon()
    for result in results.values():
        assert_no_traceback(result)
        if result.returncode != 0:
            # The only acceptable failure: the other run got there first.
            failed = [l for l in result.stderr.splitlines() if l.lstrip().startswith("✕")]
            assert failed and all("the destination changed since it was checked" in l for l in failed), result
    assert len(results) == 2
    assert_destination_consistent(
        destination, expected(directory, digests), must_exist=tuple(expected(directory, digests))
    )
    RUNS["concurrent_pairs"] += 1


# ---------------------------------------------------------------------------------------------
# Wrong credentials: `unauthorized`, naming the registry, and the secret nowhere


WRONG_PASSWORD = "wrong-Secret-4d1f0c"


def test_wrong_credentials_fail_unauthorized_naming_the_registry_and_never_show_the_secret(
    repo: PantsRepo, upstream: Registry, registries: Callable[..., Registry],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    outside = tmp_path_factory.mktemp("credentials-outside")
    htpasswd = outside / "htpasswd"
    htpasswd.write_text(htpasswd_entry("mirror-user", "the-right-one"))
    destination = registries(htpasswd)
    directory = "credentials"
    seed(upstream, directory, ["app"])
    write_spec(repo, upstream, directory, ["app"])
    auth = base64.b64encode(f"mirror-user:{WRONG_PASSWORD}".encode()).decode()
    docker_config = outside / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {destination.address: {"auth": auth}}})
    )
    # Sample every process's argv while the run goes on.
    seen_argv: List[bytes] = []
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    try:
                        seen_argv.append((proc / "cmdline").read_bytes())
                    except OSError:
                        pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = publish(
            repo, directory, destination.address, "-ldebug",
            env={"DOCKER_CONFIG": str(docker_config)},
        )  # fmt: skip
    finally:
        running.clear()
        sampler.join(10)

    assert result.returncode != 0, result
    assert_no_traceback(result)
    failed = [l for l in result.stderr.splitlines() if l.lstrip().startswith("✕")]
    assert len(failed) == 1 and f"{destination.address}/mirror/{directory}/app:1" in failed[0], result
    assert "unauthorized" in result.stderr.lower() and destination.address in failed[0], result
    assert any(b"probe-request.json" in argv for argv in seen_argv), "the sampler saw the run's processes"
    traces = {
        "stdout": result.stdout.encode(),
        "stderr": result.stderr.encode(),
        "argv": b"\n".join(seen_argv),
        **{
            str(path): path.read_bytes()
            for directory_name in (".pants.d", "dist")
            for path in (repo.root / directory_name).rglob("*")
            if path.is_file()
        },
    }
    for secret in (WRONG_PASSWORD, auth):
        assert not [where for where, text in traces.items() if secret.encode() in text]


def test_a_destination_that_wants_a_login_is_named_at_package_and_once_per_image_at_publish(
    repo: PantsRepo, upstream: Registry, registries: Callable[..., Registry],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """Nobody ran `docker login` for the destination: `package` says so (the probe's HEADs are
    refused), and `publish` fails each image once, on its summary line, with what to run; one
    image is signed, and what refers to it cannot be checked at the destination, which is the
    cause named, not `referrers=False`."""
    htpasswd = tmp_path_factory.mktemp("login-outside") / "htpasswd"
    htpasswd.write_text(htpasswd_entry("mirror-user", "the-right-one"))
    destination = registries(htpasswd)
    directory = "login"
    digests = seed(upstream, directory, ["plain", "signed"])
    cosign.sign(upstream, f"{directory}/signed", digests["signed"], cosign.generate_key())
    write_spec(repo, upstream, directory, ["plain", "signed"])
    login = f"log in with `docker login {destination.address}` (or `skopeo login {destination.address}`)"
    refused = f"at registry {destination.address}: access denied by registry {destination.address} ("

    packaged = repo.pants(
        destination_option(destination.address), "package", f"{directory}::",
        daemon=True, timeout=RUN_TIMEOUT, env=NO_DOCKER,
    )  # fmt: skip
    assert packaged.returncode == 0, packaged
    for name in ("plain", "signed"):
        reference = f"{destination.address}/mirror/{directory}/{name}:1"
        assert f"destination {reference} {refused}" in packaged.stderr, packaged
    assert packaged.stderr.count(login) == 2 and "[ERROR]" not in packaged.stderr, packaged

    published = publish(repo, directory, destination.address)
    assert published.returncode != 0, published
    assert_no_traceback(published)
    failed = [l for l in published.stderr.splitlines() if l.lstrip().startswith("✕")]
    assert len(failed) == 2, published
    plain = next(l for l in failed if f"/mirror/{directory}/plain:1 failed for " in l)
    signed = next(l for l in failed if f"/mirror/{directory}/signed:1 failed for " in l)
    assert refused in plain and login in plain, plain
    assert refused in signed and login in signed and "could not be checked there" in signed, signed
    # Once per image: on its summary line, not also logged, nor printed by the report.
    assert published.stderr.count(login) == 2, published
    for noise in ("docker-mirror:", "[ERROR]", "referrers=False", "trying to reuse blob",
                  "authentication required", "unauthorized by"):  # fmt: skip
        assert noise not in published.stderr, (noise, published)


# ---------------------------------------------------------------------------------------------
# TLS for real: a registry with a self-signed CA, at an address in a private range


class NetnsRegistry:
    """A `docker-registry` serving TLS at `<ip>:5000`, in a network namespace this test creates
    and joins to this machine by a veth pair (a private /30: traffic stays on this machine)."""

    def __init__(self, state: Path, cert: Path, key: Path) -> None:
        tag = f"{os.getpid() % 10000}"
        self.netns, self.veth = f"dmtls{tag}", f"dmtls{tag}"
        subnet = 16 + os.getpid() % 200
        self.host_ip, self.ip = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
        self.address = f"{self.ip}:5000"
        self.state = state
        self.process: Optional[subprocess.Popen] = None
        self._ip("netns", "add", self.netns)
        self._ip("link", "add", f"{self.veth}a", "type", "veth", "peer", "name", f"{self.veth}b")
        self._ip("link", "set", f"{self.veth}b", "netns", self.netns)
        self._ip("addr", "add", f"{self.host_ip}/30", "dev", f"{self.veth}a")
        self._ip("link", "set", f"{self.veth}a", "up")
        for args in (("addr", "add", f"{self.ip}/30", "dev", f"{self.veth}b"),
                     ("link", "set", f"{self.veth}b", "up"), ("link", "set", "lo", "up")):
            self._ip("netns", "exec", self.netns, "ip", *args)
        (state / "data").mkdir(parents=True, exist_ok=True)
        config = state / "config.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {state / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n  tls:\n    certificate: {cert}\n    key: {key}\n"
        )
        self.log = open(state / "registry.log", "wb")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "docker-registry", "serve", str(config)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(self._listening, 30, f"docker-registry on {self.address}")

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError((self.state / "registry.log").read_text())
        try:
            with socket.create_connection((self.ip, 5000), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
        subprocess.run(["ip", "link", "del", f"{self.veth}a"], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=30)


def require_root_for_netns() -> None:
    if os.geteuid() != 0 or not shutil.which("ip"):
        if os.environ.get("CI") == "true":
            pytest.fail("the TLS test needs root and `ip` (network namespaces) under CI", pytrace=False)
        pytest.skip("the TLS test needs root and `ip`, to create a network namespace")


def test_a_self_signed_registry_in_a_private_range_is_verified_and_trusted_through_certs_d(
    repo: PantsRepo, upstream: Registry, tmp_path: Path
) -> None:
    require_root_for_netns()
    directory = "tls"
    digests = seed(upstream, directory, ["app"])
    write_spec(repo, upstream, directory, ["app"])
    state = tmp_path / "tls-registry"
    state.mkdir()
    # The server's certificate is made for its address; only its own CA signed it.
    subnet = 16 + os.getpid() % 200
    ca, cert, key = make_certificates(state, f"10.213.{subnet}.2")
    registry = NetnsRegistry(state, cert, key)
    certs_d = Path("/etc/docker/certs.d") / registry.address
    assert not certs_d.exists(), f"{certs_d} exists already: not this test's to change"
    # The directories this test creates, innermost first: removed at its end.
    created = [d for d in (certs_d, certs_d.parent, certs_d.parent.parent) if not d.exists()]
    try:
        # Without the CA: refused, saying how to trust it.
        untrusted = publish(repo, directory, registry.address)
        assert untrusted.returncode != 0, untrusted
        assert_no_traceback(untrusted)
        assert f"/etc/docker/certs.d/{registry.address}/ca.crt" in untrusted.stderr, untrusted
        assert "x509" in untrusted.stderr or "certificate" in untrusted.stderr, untrusted
        assert "--tls-verify=false" not in untrusted.stderr and "--dest-tls-verify" not in untrusted.stderr
        FAULTS["untrusted_certificate"] += 1

        # With it, where Docker, skopeo and the probe all look: mirrored, over verified TLS.
        certs_d.mkdir(parents=True)
        shutil.copy(ca, certs_d / "ca.crt")
        trusted = publish(repo, directory, registry.address)
        assert trusted.returncode == 0, trusted
        assert f"✓ {registry.address}/mirror/{directory}/app:1 published to @mirror" in trusted.stderr
        context = ssl.create_default_context(cafile=str(ca))
        request = urllib.request.Request(
            f"https://{registry.address}/v2/mirror/{directory}/app/manifests/1",
            method="HEAD", headers={"Accept": MANIFEST_MEDIA_TYPES},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            assert response.headers["Docker-Content-Digest"] == digests["app"]
    finally:
        shutil.rmtree(certs_d, ignore_errors=True)
        for made in created[1:]:
            try:
                made.rmdir()
            except OSError:
                pass  # something else was put there meanwhile: not this test's
        registry.stop()
    assert not certs_d.exists() and not [d for d in created if d.exists()]
