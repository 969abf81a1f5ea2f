"""The registry session's one request path against a real `docker-registry`, plain and behind a
token server: a blob pushed by `POST` and a streamed `PUT` with a `Content-Length`, read back
streamed (larger than the 4 MiB a read-whole answer may be), `HEAD` of a blob, a manifest pushed
by `PUT` and probed, and a cross-repository mount with a token for both repositories."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterator, List, Optional, Tuple

import pytest

from docker_mirror.probe.access import Routes
from docker_mirror.probe.auth import Scope
from docker_mirror.probe.credentials import CredentialStore
from docker_mirror.oci.media_types import OCI_MANIFEST
from docker_mirror.probe.manifests import probe_manifest
from docker_mirror.oci.reference import parse_reference
from docker_mirror.probe.registry import RegistrySession
from docker_mirror.probe.retry import RetryPolicy
from docker_mirror.probe.secrets import Secrets
from docker_mirror.probe.transport import HttpClient
from docker_mirror_testutil.probe_process import basic, docker_config
from docker_mirror_testutil.registries import Registry, start_registry
from docker_mirror_testutil.token_server import TokenServer
from docker_mirror.oci.manifests import digest_of

PASSWORD = "correct-horse-battery-staple"
BLOB = os.urandom(5 * 1024 * 1024 + 123)
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()



@pytest.fixture(scope="module", params=["plain", "token"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tuple[Registry, Path, Optional[str]]]:
    """A registry, a home whose Docker config has its credentials (if it needs any), and an
    `Authorization` to read it with directly."""
    kind = getattr(request, "param")
    directory = tmp_path_factory.mktemp(f"{kind}-registry")
    home = directory / "home"
    server = None
    authorization = None
    if kind == "token":
        server = TokenServer.start(directory, users={"alice": PASSWORD})
        started = start_registry(directory / "state", env=server.registry_env())
        docker_config(home, {"auths": {started.address: {"auth": basic("alice", PASSWORD)}}})
        authorization = f"Bearer {server.issue('alice', ['repository:team/app:pull'])}"
    else:
        started = start_registry(directory / "state")
        docker_config(home, {})
    try:
        yield started, home, authorization
    finally:
        started.stop()
        if server is not None:
            server.stop()


def session_for(registry: Registry, home: Path) -> RegistrySession:
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(home), "PATH": "/usr/bin:/bin"}
    secrets = Secrets()
    return RegistrySession(
        registry.address, registry.address,
        http=HttpClient(Routes(env, secrets=secrets), timeout=30),
        credentials=CredentialStore(env, secrets=secrets), policy=RetryPolicy(attempts=2),
        max_concurrency=4, timeout=30, secrets=secrets,
    )


async def chunks_of(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def push_blob(session: RegistrySession, repository: str, data: bytes) -> str:
    """`POST` an upload session, then one streamed `PUT` of the blob to its `Location`."""
    digest = digest_of(data)
    scopes = [Scope(repository, "pull,push")]
    started = await session.request("POST", f"/v2/{repository}/blobs/uploads/", scopes=scopes,
                                    subject=f"an upload to {repository}", body=b"")
    assert started.status == 202 and started.location is not None
    done = await session.request(
        "PUT", started.location.extend_query(digest=digest), scopes=scopes, subject=f"blob {digest}",
        body=lambda: chunks_of(data), content_length=len(data),
        headers=[("Content-Type", "application/octet-stream")],
    )
    assert done.status == 201, done.body
    return digest


async def read_blob(session: RegistrySession, repository: str, digest: str) -> Tuple[str, int, List[int]]:
    """The blob streamed: its digest as hashed on the way, its size, its chunks' sizes."""
    hashed, sizes = hashlib.sha256(), []
    async with session.stream("GET", f"/v2/{repository}/blobs/{digest}", scopes=[Scope(repository)],
                              subject=f"blob {digest}") as response:
        assert response.status == 200
        async for chunk in response.iter_chunks():
            hashed.update(chunk)
            sizes.append(len(chunk))
    return f"sha256:{hashed.hexdigest()}", sum(sizes), sizes


@dataclass
class Seen:
    blob: str
    head: Tuple[int, Optional[str], Optional[str]]  # status, Content-Length, Docker-Content-Digest
    read: Tuple[str, int, int]  # digest as hashed on the way, size, largest chunk
    put: Tuple[int, Optional[str]]  # status, Docker-Content-Digest
    manifest: str
    probed: Tuple[str, Optional[str]]
    mounted: int


def test_push_a_blob_streamed_read_it_back_streamed_push_a_manifest_and_mount(
    registry: Tuple[Registry, Path, Optional[str]]
) -> None:
    served, home, authorization = registry

    async def main() -> Seen:
        session = session_for(served, home)
        try:
            blob = await push_blob(session, "team/app", BLOB)
            config = await push_blob(session, "team/app", CONFIG)
            head = await session.request("HEAD", f"/v2/team/app/blobs/{blob}", scopes=[Scope("team/app")],
                                         subject=f"blob {blob}")
            read_digest, read_size, sizes = await read_blob(session, "team/app", blob)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                           "size": len(CONFIG)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blob,
                            "size": len(BLOB)}],
            }).encode()
            put = await session.request(
                "PUT", "/v2/team/app/manifests/1", scopes=[Scope("team/app", "pull,push")],
                subject="team/app:1", body=manifest, headers=[("Content-Type", OCI_MANIFEST)],
            )
            probed = await probe_manifest(session, parse_reference(f"{served.address}/team/app:1"), False)
            mounted = await session.request(
                "POST", f"/v2/team/copy/blobs/uploads/?mount={blob}&from=team/app",
                scopes=[Scope("team/copy", "pull,push"), Scope("team/app")], subject=f"blob {blob}", body=b"",
            )
            return Seen(
                blob=blob,
                head=(head.status, head.headers.get("Content-Length"), head.headers.get("Docker-Content-Digest")),
                read=(read_digest, read_size, max(sizes)),
                put=(put.status, put.headers.get("Docker-Content-Digest")),
                manifest=digest_of(manifest),
                probed=(probed.outcome, probed.digest),
                mounted=mounted.status,
            )
        finally:
            await session._http.aclose()

    seen = asyncio.run(main())
    assert seen.head == (200, str(len(BLOB)), seen.blob)
    assert seen.read[:2] == (seen.blob, len(BLOB)) and seen.read[2] <= 64 * 1024
    assert seen.put == (201, seen.manifest)
    assert seen.probed == ("ok", seen.manifest)
    assert seen.mounted == 201  # mounted from team/app, not a new upload session (202)
    assert served.manifest_digest("team/app", "1", authorization=authorization) == seen.manifest
