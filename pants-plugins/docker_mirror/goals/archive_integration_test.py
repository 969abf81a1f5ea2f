"""End to end, across an air gap: the real `./pants package` of a `docker_mirror_archive` writes
the images of a copy-mode generator, with their signatures and referrers, to one uncompressed
tar of an OCI image layout, named by their source references (as `skopeo inspect
oci-archive:<tar>:<reference>` reads them), byte for byte the same when made again; then
`./pants publish --docker-mirror-from-archive=<tar>`, with the source registry stopped, puts
every digest at the destination as a copy from the registry would, and a second run writes
nothing.

Failures: a truncated archive is refused, named, before anything is written; an image the
archive lacks fails alone, naming the archive and the reference, while the source registry that
does serve it is asked nothing (its access log says so)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Callable

import pytest

from docker_mirror_testutil import cosign
from docker_mirror_testutil.images import push_oci_image
from docker_mirror_testutil.machine import require_skopeo
from docker_mirror_testutil.oci import digest_tag
from docker_mirror_testutil.pants_repo import COPY_BUILD, NO_DOCKER, PantsRepo, PantsResult
from docker_mirror_testutil.pushes import push_image
from docker_mirror_testutil.referrers import attach_spdx_sbom, listed_referrers
from docker_mirror_testutil.registries import Registry, writes

BUILD = COPY_BUILD + "docker_mirror_archive(name='offline', images=[':mirror'], output_path='offline.tar')\n"
REF_NAME = "org.opencontainers.image.ref.name"


def pants(repo: PantsRepo, mirror: Registry, *args: str) -> PantsResult:
    """The real `./pants` under the repository's pantsd, `mirror` the only default registry, and
    no Docker engine (copy mode needs none, and an air-gapped side may have none)."""
    return repo.pants(*args, registry=mirror, daemon=True, env=NO_DOCKER)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def archive_entries(archive: Path) -> dict[str, str]:
    """What the archive's `index.json` names: each entry's `org.opencontainers.image.ref.name`,
    and its digest. Read with `tarfile` as an uncompressed tar of an OCI image layout (image-spec
    1.1), each entry's blob checked present under `blobs/sha256/` with its digest and size: the
    tests' oracle, independent of the plugin's code."""
    with tarfile.open(archive, "r:") as tar:  # "r:": uncompressed, or `ReadError`
        files = {member.name.removeprefix("./"): member for member in tar.getmembers() if member.isfile()}

        def read(name: str) -> bytes:
            assert name in files, f"{archive} has no {name}: {sorted(files)}"
            extracted = tar.extractfile(files[name])
            assert extracted is not None
            return extracted.read()

        assert json.loads(read("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        named: dict[str, str] = {}
        for entry in json.loads(read("index.json"))["manifests"]:
            name = entry["annotations"][REF_NAME]
            assert name not in named, f"{name} is named twice in {archive}'s index.json"
            algorithm, _, encoded = entry["digest"].partition(":")
            assert algorithm == "sha256", entry
            blob = read(f"blobs/sha256/{encoded}")
            assert (hashlib.sha256(blob).hexdigest(), len(blob)) == (encoded, entry["size"]), entry
            named[name] = entry["digest"]
    return named


def skopeo_digest(archive: Path, ref_name: str) -> str:
    """The digest of the manifest that `skopeo inspect --raw oci-archive:<archive>:<ref_name>`
    prints: another client's reading of the archive."""
    inspected = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{archive}:{ref_name}"],
        capture_output=True,
        check=False,
    )
    assert inspected.returncode == 0, (ref_name, inspected.stderr.decode())
    return f"sha256:{hashlib.sha256(inspected.stdout).hexdigest()}"


def failed_lines(result: PantsResult) -> list[str]:
    return [line.lstrip() for line in result.stderr.splitlines() if line.lstrip().startswith("✕")]


def test_an_archive_is_reproducible_and_mirrors_every_digest_with_the_source_registry_stopped(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    require_skopeo()
    upstream, mirror = registries(), registries()
    key = cosign.generate_key()
    app = push_oci_image(f"{upstream.address}/team/app:1", "air-gapped app", "linux/amd64", "linux/arm64")
    signature = cosign.sign(upstream, "team/app", app.index, key)
    # docker-registry 2.8 has no referrers API: the SBOM is listed by the fallback tag.
    sbom = attach_spdx_sbom(upstream, "team/app", app.index)
    listing = upstream.manifest_digest("team/app", digest_tag(app.index))
    assert listing is not None
    tool = push_image(upstream.address, "team/tool", "2", "air-gapped tool")
    pants_repo.write(
        {"src/BUILD": BUILD, "src/images.txt": f"{upstream.address}/team/app:1\n{upstream.address}/team/tool:2\n"}
    )

    packaged = pants(pants_repo, mirror, "package", "src:offline")
    assert packaged.returncode == 0, packaged
    archive = pants_repo.root / "dist" / "offline.tar"
    # One entry per image, cosign tag and fallback tag, named by its source reference as the
    # spec line writes it, under the source's digest; each read back by skopeo.
    expected = {
        f"{upstream.address}/team/app:1": app.index,
        f"{upstream.address}/team/app:{digest_tag(app.index, 'sig')}": signature,
        f"{upstream.address}/team/app:{digest_tag(app.index)}": listing,
        f"{upstream.address}/team/tool:2": tool,
    }
    assert archive_entries(archive) == expected
    for ref_name, digest in expected.items():
        assert skopeo_digest(archive, ref_name) == digest, ref_name

    # Made again from the same registry, from scratch (no dist/, a fresh process, no local cache
    # of process results, so nothing of the first run is reused): the same bytes.
    first = sha256_file(archive)
    shutil.rmtree(pants_repo.root / "dist")
    before = len(upstream.settled_access_log())
    again = pants_repo.pants("--no-local-cache", "package", "src:offline", registry=mirror, env=NO_DOCKER)
    assert again.returncode == 0, again
    assert [line for line in upstream.settled_access_log()[before:] if "/v2/team/app/" in line], (
        "the second package did not read the source again"
    )
    assert sha256_file(archive) == first

    # Across the gap: the source registry is gone.
    upstream.stop()
    published = pants(pants_repo, mirror, "publish", "src::", "--docker-mirror-from-archive=dist/offline.tar")
    assert published.returncode == 0, published
    assert "Traceback" not in published.stderr and "Traceback" not in published.stdout, published
    for destination in ("mirror/team/app:1", "mirror/team/tool:2"):
        assert f"✓ {mirror.address}/{destination} published to @mirror" in published.stderr, (destination, published)
    # The summary says where the image came from.
    assert (
        f"✓ {mirror.address}/mirror/team/app:1 published to @mirror (copied from "
        f"{upstream.address}/team/app:1 in the archive dist/offline.tar, {app.index[:19]}, 2 platforms"
    ) in published.stderr, published
    assert mirror.manifest_digest("mirror/team/app", "1") == app.index
    for platform_manifest in app.manifests.values():
        assert mirror.manifest_digest("mirror/team/app", platform_manifest) == platform_manifest
    assert mirror.manifest_digest("mirror/team/tool", "2") == tool
    # What refers to the image came with it, under the same digests.
    assert mirror.manifest_digest("mirror/team/app", digest_tag(app.index, "sig")) == signature
    assert mirror.manifest_digest("mirror/team/app", digest_tag(app.index)) == listing
    assert [entry["digest"] for entry in listed_referrers(mirror, "mirror/team/app", app.index)] == [sbom["digest"]]
    assert mirror.manifest_digest("mirror/team/app", sbom["digest"]) == sbom["digest"]
    cosign.verify_signature(mirror, "mirror/team/app", app.index, cosign.public_key_pem(key))

    # From the archive again: up to date, nothing written.
    before_mirror = len(mirror.settled_access_log())
    repeated = pants(pants_repo, mirror, "publish", "src::", "--docker-mirror-from-archive=dist/offline.tar")
    assert repeated.returncode == 0, repeated
    for destination in ("mirror/team/app:1", "mirror/team/tool:2"):
        assert f"- {mirror.address}/{destination} skipped (up to date" in repeated.stderr, (destination, repeated)
    assert writes(mirror.settled_access_log()[before_mirror:]) == []


def test_a_truncated_archive_writes_nothing_and_an_image_the_archive_lacks_fails_alone(
    registries: Callable[..., Registry], pants_repo: PantsRepo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    require_skopeo()
    upstream, mirror = registries(), registries()
    app = push_image(upstream.address, "team/app", "1", "archived app")
    tool = push_image(upstream.address, "team/tool", "2", "archived tool")
    lines = f"{upstream.address}/team/app:1\n{upstream.address}/team/tool@{tool}\n"
    pants_repo.write({"src/BUILD": BUILD, "src/images.txt": lines})

    packaged = pants(pants_repo, mirror, "package", "src:offline")
    assert packaged.returncode == 0, packaged
    archive = pants_repo.root / "dist" / "offline.tar"
    # A line pinned by digest only is named by its digest.
    assert archive_entries(archive) == {
        f"{upstream.address}/team/app:1": app,
        f"{upstream.address}/team/tool@{tool}": tool,
    }
    assert skopeo_digest(archive, f"{upstream.address}/team/tool@{tool}") == tool

    # The source registry keeps running, and serves an image that the archive lacks: the runs
    # from an archive must ask it nothing.
    push_image(upstream.address, "team/absent", "1", "not archived")
    before_upstream = len(upstream.settled_access_log())

    # Half of the archive, outside the build root (an absolute path): refused, named, nothing written.
    truncated = tmp_path_factory.mktemp("transfer") / "offline.tar"
    whole = archive.read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    broken = pants(pants_repo, mirror, "publish", "src::", f"--docker-mirror-from-archive={truncated}")
    assert broken.returncode != 0, broken
    assert str(truncated) in broken.stderr, broken
    assert "Traceback" not in broken.stderr and "Traceback" not in broken.stdout, broken
    assert not [line for line in broken.stderr.splitlines() if line.lstrip().startswith("✓")], broken
    assert writes(mirror.settled_access_log()) == []
    assert mirror.repositories() == []

    # A third line the archive lacks: it fails alone, naming the archive and the reference; the
    # other two are copied from the archive.
    pants_repo.write({"src/images.txt": lines + f"{upstream.address}/team/absent:1\n"})
    partial = pants(pants_repo, mirror, "publish", "src::", "--docker-mirror-from-archive=dist/offline.tar")
    assert partial.returncode != 0, partial
    assert "Traceback" not in partial.stderr and "Traceback" not in partial.stdout, partial
    [failed] = failed_lines(partial)
    assert failed.startswith(f"✕ {mirror.address}/mirror/team/absent:1 failed"), partial
    assert "dist/offline.tar" in failed and f"{upstream.address}/team/absent:1" in failed, partial
    pinned_tag = f"digest-{digest_tag(tool)}"
    for destination in ("mirror/team/app:1", f"mirror/team/tool:{pinned_tag}"):
        assert f"✓ {mirror.address}/{destination} published to @mirror" in partial.stderr, (destination, partial)
    assert mirror.manifest_digest("mirror/team/app", "1") == app
    assert mirror.manifest_digest("mirror/team/tool", pinned_tag) == tool
    assert mirror.manifest_digest("mirror/team/absent", "1") is None

    assert upstream.settled_access_log()[before_upstream:] == []
