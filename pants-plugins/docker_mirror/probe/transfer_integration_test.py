"""The probe's image copy (`python -m docker_mirror.probe` with a copy request that has tags)
between real registries on loopback: a multi-platform index (OCI, with attestations, and Docker
schema 2) copied with every blob; a mount within one registry, seen in its access log; a front
end that refuses monolithic uploads, so blobs go in chunks; a copy killed midway that resumes
without sending a blob twice; a corrupted blob that leaves nothing under its digest; schema 1
refused. Every digest is read back through the registry's own API."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from docker_mirror_testutil.cosign import generate_key, public_key_pem, sign, signature_tag
from docker_mirror_testutil.fault_proxy import Corrupt, FaultProxy, Reset, Rule, Stall, rules
from docker_mirror_testutil.hostile_registry import HostileServer, Reply, Request
from docker_mirror_testutil.images import push_oci_image
from docker_mirror_testutil.probe_process import Run, run_probe
from docker_mirror_testutil.pushes import push_blob, push_manifest
from docker_mirror_testutil.referrers import attach_spdx_sbom
from docker_mirror_testutil.registries import Registry, start_registry
from docker_mirror_testutil.upload_proxy import ChunkedOnlyProxy
from docker_mirror.oci.manifests import digest_of

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_BLOB_DONE = re.compile(r'"PUT /v2/(\S+)/blobs/uploads/\S*digest=(sha256(?::|%3A)[0-9a-f]{64})\S* HTTP/1.1" 201')



@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_registry(tmp_path_factory.mktemp("source"))
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def destination(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A fresh destination per test, so that nothing of another test's copies is there."""
    registry = start_registry(tmp_path_factory.mktemp("destination"))
    try:
        yield registry
    finally:
        registry.stop()


def copy(
    tmp_path: Path, source: str, subject: str, destination: str, tags: Sequence[Tuple[str, Optional[str]]],
    plan: Optional[Dict[str, Any]] = None, keys: Sequence[Tuple[str, bytes]] = (), **options: Any,
) -> Run:
    """Runs the probe on one copy request (with `plan`, a referrers plan as a read returned it);
    its result file, read."""
    request = {"source": source, "subject": subject, "destination": destination,
               **(plan or {"items": [], "listing": None}),
               "require_signature": [{"name": name, "pem": pem.decode()} for name, pem in keys],
               "tags": [{"tag": tag, "seen": seen} for tag, seen in tags]}  # fmt: skip
    return run_probe(tmp_path, [], copy=request, **options)


def copy_result(run: Run) -> Dict[str, Any]:
    assert (run.code, run.stderr) == (0, ""), run.stderr
    result: Dict[str, Any] = run.document["copy"]
    return result


def graph(registry: Registry, repository: str, digest: str) -> Tuple[List[str], List[str]]:
    """(every manifest digest, every blob digest) under `digest`, read through the registry API."""
    body, _ = registry.manifest(repository, digest)
    assert digest_of(body) == digest
    document = json.loads(body)
    manifests, blobs = [digest], []
    for child in document.get("manifests") or []:
        more_manifests, more_blobs = graph(registry, repository, child["digest"])
        manifests += more_manifests
        blobs += more_blobs
    if "config" in document:
        blobs += [document["config"]["digest"]] + [layer["digest"] for layer in document.get("layers") or []]
    return manifests, blobs


def assert_copied(source: Registry, repository: str, destination: Registry, mirrored: str, digest: str) -> None:
    """Every manifest and blob of `digest`'s graph at the destination, the same bytes."""
    manifests, blobs = graph(source, repository, digest)
    for manifest in manifests:
        assert destination.manifest(mirrored, manifest)[0] == source.manifest(repository, manifest)[0]
    for blob in blobs:
        assert destination.blob(mirrored, blob) == source.blob(repository, blob)


def push_layers(registry: Registry, repository: str, tag: str, layers: Sequence[bytes], *,
                docker: bool = False) -> Tuple[str, bytes]:
    """A single-platform image with these layers; (its digest, its manifest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "n": tag}).encode()  # fmt: skip
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG, "size": len(config),
                   "digest": push_blob(registry.address, repository, config)},
        "layers": [{"mediaType": DOCKER_LAYER if docker else OCI_LAYER, "size": len(layer),
                    "digest": push_blob(registry.address, repository, layer)} for layer in layers],
    }).encode()  # fmt: skip
    return push_manifest(registry.address, repository, tag, body, DOCKER_MANIFEST if docker else OCI_MANIFEST), body


def push_docker_list(registry: Registry, repository: str, tag: str) -> str:
    """A Docker schema 2 manifest list of two platforms."""
    entries = []
    for arch in ("amd64", "arm64"):
        digest, body = push_layers(registry, repository, f"{tag}-{arch}", [f"{tag} {arch}".encode() * 100], docker=True)
        entries.append({"mediaType": DOCKER_MANIFEST, "size": len(body), "digest": digest,
                        "platform": {"architecture": arch, "os": "linux"}})  # fmt: skip
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries}).encode()
    return push_manifest(registry.address, repository, tag, body, DOCKER_LIST)


def uploads_by_digest(log: List[str], repository: str) -> Dict[str, int]:
    """Completed blob uploads (`PUT ...?digest=` answered 201) per digest, from an access log."""
    counts: Dict[str, int] = {}
    for line in log:
        match = _BLOB_DONE.search(line)
        if match and match.group(1) == repository:
            digest = match.group(2).replace("%3A", ":")
            counts[digest] = counts.get(digest, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_a_multi_platform_index_is_copied_with_every_blob(
    kind: str, source: Registry, destination: Registry, tmp_path: Path
) -> None:
    repository = f"index/{kind}"
    if kind == "oci":
        image = push_oci_image(f"{source.address}/{repository}:1", "copy me", "linux/amd64", "linux/arm64",
                               attestations=True)  # fmt: skip
        subject = image.index
    else:
        subject = push_docker_list(source, repository, "1")
    result = copy_result(copy(tmp_path, f"{source.address}/{repository}", subject,
                              f"{destination.address}/mirror/{repository}", [("1", None), ("latest", None)]))  # fmt: skip
    assert result["outcome"] == "ok"
    assert result["tags"] == [
        {"tag": tag, "outcome": "copied", "message": None, "error_kind": None,
         "platforms": ["linux/amd64", "linux/arm64"]}
        for tag in ("1", "latest")
    ]  # fmt: skip
    for tag in ("1", "latest"):
        assert destination.manifest_digest(f"mirror/{repository}", tag) == subject
    assert_copied(source, repository, destination, f"mirror/{repository}", subject)
    media_type = destination.manifest(f"mirror/{repository}", "1")[1]
    assert media_type == ("application/vnd.oci.image.index.v1+json" if kind == "oci" else DOCKER_LIST)
    # Again: the tags are up to date, and nothing is written.
    before = len(destination.settled_access_log())
    again = copy_result(copy(tmp_path, f"{source.address}/{repository}", subject,
                             f"{destination.address}/mirror/{repository}", [("1", subject)]))  # fmt: skip
    assert [t["outcome"] for t in again["tags"]] == ["up_to_date"]
    new = destination.settled_access_log()[before:]
    assert not [line for line in new if re.search(r'"(PUT|POST|PATCH) ', line)], new


def test_within_one_registry_blobs_are_mounted(source: Registry, tmp_path: Path) -> None:
    image = push_oci_image(f"{source.address}/mount/app:1", "mount me", "linux/amd64", "linux/arm64")
    before = len(source.settled_access_log())
    result = copy_result(copy(tmp_path, f"{source.address}/mount/app", image.index,
                              f"{source.address}/mirror/mount/app", [("1", None)]))  # fmt: skip
    assert [t["outcome"] for t in result["tags"]] == ["copied"]
    log = source.settled_access_log()[before:]
    _, blobs = graph(source, "mount/app", image.index)
    mounts = [line for line in log if re.search(
        r'"POST /v2/mirror/mount/app/blobs/uploads/\?mount=sha256(:|%3A)[0-9a-f]{64}&from=mount(/|%2F)app HTTP/1.1" 201', line)]
    assert len(mounts) == len(set(blobs)) == 4
    assert uploads_by_digest(log, "mirror/mount/app") == {}
    assert_copied(source, "mount/app", source, "mirror/mount/app", image.index)


@pytest.mark.parametrize("early", [False, True], ids=["after-the-body", "before-the-body"])
def test_a_registry_that_refuses_monolithic_uploads_gets_chunks(
    early: bool, source: Registry, destination: Registry, tmp_path: Path
) -> None:
    layers = [os.urandom(20 * 1024 * 1024 + 5), os.urandom(3000)]
    subject, _ = push_layers(source, "chunked/app", "1", layers)
    with ChunkedOnlyProxy.start(destination.address, early=early) as proxy:
        result = copy_result(copy(tmp_path, f"{source.address}/chunked/app", subject,
                                  f"{proxy.address}/mirror/chunked/app", [("1", None)]))  # fmt: skip
        seen = proxy.seen()
    assert [t["outcome"] for t in result["tags"]] == ["copied"], result
    # The first monolithic `PUT`s refused (those sent before the first refusal came back; where
    # the refusal closes the connection under the body, the probe may see a reset, not the 413,
    # and that blob goes in chunks all the same), then every blob in chunks of 8 MiB: 3 + 1 + 1
    # `PATCH`es, and a closing `PUT` each.
    assert 1 <= seen["refused"] <= 3
    assert seen["PATCH"] == 5 and seen["PUT"] == 3
    assert destination.manifest_digest("mirror/chunked/app", "1") == subject
    assert_copied(source, "chunked/app", destination, "mirror/chunked/app", subject)


def _probe_pid(request_file: Path, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"docker_mirror.probe" in cmdline and str(request_file).encode() in cmdline:
                return int(entry.name)
        time.sleep(0.05)
    raise AssertionError("the probe process did not start")


def test_a_copy_killed_midway_resumes_without_sending_a_blob_twice(
    source: Registry, destination: Registry, tmp_path: Path
) -> None:
    layers = [os.urandom(512 * 1024 + i) for i in range(10)]
    subject, _ = push_layers(source, "resume/app", "1", layers)
    # The 5th layer upload's body stalls halfway; the others go on; then the probe is killed.
    # Layers only (their digests are in the query): a config small enough to pass whole before
    # the stall would complete at the registry all the same (a CI flake: 11 of 11 uploaded).
    hexes = "|".join(digest_of(layer).split(":")[1] for layer in layers)
    stall = Rule(Stall(after_bytes=1000), methods=frozenset({"PUT"}), path=rf"/blobs/uploads/.*({hexes})",
                 skip=4, times=1)  # fmt: skip
    first_run: Dict[str, Run] = {}
    with FaultProxy.start(destination.address, rules(stall)) as proxy:
        target = f"{proxy.address}/mirror/resume/app"
        thread = threading.Thread(target=lambda: first_run.setdefault("run", copy(
            tmp_path, f"{source.address}/resume/app", subject, target, [("1", None)])))  # fmt: skip
        thread.start()
        pid = _probe_pid(tmp_path / "probe-request.json")
        assert proxy.stalled.wait(60)
        destination.settled_access_log(quiet=1.0)
        os.kill(pid, signal.SIGKILL)
        thread.join(60)
    assert first_run["run"].code == -signal.SIGKILL
    first = uploads_by_digest(destination.settled_access_log(), "mirror/resume/app")
    assert 0 < len(first) < len(layers) + 1  # some blobs there, not all, no tag
    assert destination.manifest_digest("mirror/resume/app", "1") is None

    result = copy_result(copy(tmp_path, f"{source.address}/resume/app", subject,
                              f"{destination.address}/mirror/resume/app", [("1", None)]))  # fmt: skip
    assert [t["outcome"] for t in result["tags"]] == ["copied"]
    both = uploads_by_digest(destination.settled_access_log(), "mirror/resume/app")
    assert set(both) == {digest_of(layer) for layer in layers} | set(graph(source, "resume/app", subject)[1])
    assert max(both.values()) == 1, both  # no blob sent twice
    assert_copied(source, "resume/app", destination, "mirror/resume/app", subject)


def test_a_corrupted_blob_leaves_nothing_under_its_digest(
    source: Registry, destination: Registry, tmp_path: Path
) -> None:
    layer = os.urandom(300 * 1024)
    subject, _ = push_layers(source, "corrupt/app", "1", [layer, b"a small layer"])
    bad = digest_of(layer)
    corrupt = Rule(Corrupt(at_byte=100 * 1024), methods=frozenset({"GET"}), path=f"/blobs/{bad}")
    with FaultProxy.start(source.address, rules(corrupt)) as proxy:
        result = copy_result(copy(tmp_path, f"{proxy.address}/corrupt/app", subject,
                                  f"{destination.address}/mirror/corrupt/app", [("1", None)]))  # fmt: skip
        assert proxy.faults()["corrupt"] >= 1
    assert result["outcome"] == "error"
    (tag,) = result["tags"]
    assert tag["outcome"] == "failed" and "with other bytes than its digest" in tag["message"], tag
    assert destination.settled_access_log()
    with pytest.raises(Exception, match="404"):
        destination.blob("mirror/corrupt/app", bad)
    assert destination.manifest_digest("mirror/corrupt/app", "1") is None
    assert destination.manifest_digest("mirror/corrupt/app", subject) is None
    # Served right, it is copied.
    again = copy_result(copy(tmp_path, f"{source.address}/corrupt/app", subject,
                             f"{destination.address}/mirror/corrupt/app", [("1", None)]))  # fmt: skip
    assert [t["outcome"] for t in again["tags"]] == ["copied"]
    assert destination.blob("mirror/corrupt/app", bad) == layer


def test_an_upload_cut_midway_is_sent_again_from_a_fresh_source_stream(
    source: Registry, destination: Registry, tmp_path: Path
) -> None:
    layer = os.urandom(2 * 1024 * 1024)
    subject, _ = push_layers(source, "retry/app", "1", [layer])
    # The layer's `PUT` (its digest is in the query), not whichever of the image's blobs, which
    # go at once, is sent first.
    cut = Rule(Reset(after_bytes=1024 * 1024), methods=frozenset({"PUT"}),
               path=rf"/blobs/uploads/.*{digest_of(layer).split(':')[1]}", times=1)  # fmt: skip
    # The source's requests are counted as they are sent (a proxy that injects nothing): its
    # access log has no line for a read the probe let go of midway.
    with FaultProxy.start(source.address, rules()) as upstream, \
            FaultProxy.start(destination.address, rules(cut)) as proxy:  # fmt: skip
        result = copy_result(copy(tmp_path, f"{upstream.address}/retry/app", subject,
                                  f"{proxy.address}/mirror/retry/app", [("1", None)]))  # fmt: skip
        assert proxy.faults()["reset"] == 1
        reads = [r for r in upstream.requests() if r.method == "GET" and r.path.endswith(f"/blobs/{digest_of(layer)}")]
    assert [t["outcome"] for t in result["tags"]] == ["copied"], result
    # The layer read from the source again for the retried `PUT`, not replayed from memory.
    assert len(reads) >= 2, reads
    assert destination.blob("mirror/retry/app", digest_of(layer)) == layer


def test_schema_1_is_refused_naming_the_image_and_registry(destination: Registry, tmp_path: Path) -> None:
    body = json.dumps({"schemaVersion": 1, "name": "old/app", "tag": "1", "architecture": "amd64",
                       "fsLayers": [], "history": []}).encode()  # fmt: skip
    digest = digest_of(body)

    def handler(request: Request) -> Reply:
        if request.path == f"/v2/old/app/manifests/{digest}":
            return Reply(200, [("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws"),
                               ("Docker-Content-Digest", digest)], body)  # fmt: skip
        return Reply(404, [("Content-Type", "application/json")], b'{"errors":[{"code":"NOT_FOUND"}]}')

    with HostileServer.start(handler) as server:
        result = copy_result(copy(tmp_path, f"{server.address}/old/app", digest,
                                  f"{destination.address}/mirror/old/app", [("1", None)]))  # fmt: skip
    (tag,) = result["tags"]
    assert tag["outcome"] == "failed"
    assert tag["message"].startswith(f"{server.address}/old/app@{digest} is a Docker schema 1 manifest")
    assert destination.tags("mirror/old/app") == []


def test_the_gate_and_the_referrers_go_before_the_index_under_its_tag(
    source: Registry, destination: Registry, tmp_path: Path
) -> None:
    image = push_oci_image(f"{source.address}/signed/app:1", "signed", "linux/amd64", "linux/arm64")
    key = generate_key()
    sign(source, "signed/app", image.index, key)
    sbom = attach_spdx_sbom(source, "signed/app", image.index)
    target = f"{destination.address}/mirror/signed/app"
    read = run_probe(tmp_path, [f"{source.address}/signed/app@{image.index}"],
                     referrers=[{"reference": f"{source.address}/signed/app@{image.index}", "platform": None,
                                 "destinations": [target]}])  # fmt: skip
    plan = read.document["referrers"][0]["destinations"][target]
    assert len(plan["items"]) == 2

    before = len(destination.settled_access_log())
    wrong = copy(tmp_path, f"{source.address}/signed/app", image.index, target, [("1", None)], plan,
                 keys=[("other.pub", public_key_pem(generate_key()))])  # fmt: skip
    refused = copy_result(wrong)
    assert refused["outcome"] == "unsigned" and [t["outcome"] for t in refused["tags"]] == ["not_attempted"]
    assert destination.settled_access_log()[before:] == []  # not even a HEAD: nothing of it written

    result = copy_result(copy(tmp_path, f"{source.address}/signed/app", image.index, target, [("1", None)], plan,
                              keys=[("cosign.pub", public_key_pem(key))]))  # fmt: skip
    assert (result["outcome"], result["verified_by"]) == ("ok", "cosign.pub")
    assert [t["outcome"] for t in result["tags"]] == ["copied"]
    log = destination.settled_access_log()[before:]
    puts = [re.search(r'"PUT /v2/mirror/signed/app/manifests/(\S+) HTTP', line) for line in log]
    written = [m.group(1).replace("%3A", ":") for m in puts if m]
    position = {reference: i for i, reference in enumerate(written)}
    platforms = [position[digest] for digest in image.manifests.values()]
    referrers = [position[signature_tag(image.index)], position[sbom["digest"]]]
    assert max(platforms) < min(referrers) and max(referrers) < position["1"]
    # The index is written once, by its tag's `PUT`, last.
    assert image.index not in position and written[-1] == "1"
    assert_copied(source, "signed/app", destination, "mirror/signed/app", image.index)
