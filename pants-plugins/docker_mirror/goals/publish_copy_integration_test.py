"""End to end: the real `./pants package` and `./pants publish` mirror multi-platform images with
`method="copy"` between two real registries, with the Docker engine unreachable throughout:
digests and platforms kept, a missing image failing alone, and a second run copying nothing;
with no skopeo to be found, since copy mode needs Pants and nothing else; and blobs mounted within
one registry, and sent in chunks to one that refuses monolithic uploads."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
from docker_mirror_testutil.images import make_image, push_oci_image
from docker_mirror_testutil.machine import require_skopeo
from docker_mirror_testutil.pants_repo import COPY_BUILD, NO_DOCKER, PantsRepo, PantsResult, mirror_registry_option
from docker_mirror_testutil.registries import Registry, htpasswd_entry, requests_for
from docker_mirror_testutil.upload_proxy import ChunkedOnlyProxy
from docker_mirror.oci.manifests import digest_of


def test_copy_keeps_digests_and_platforms_isolates_failures_and_skips_what_is_there(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    require_skopeo()
    upstream, mirror = registries(), registries()
    multi = push_oci_image(f"{upstream.address}/team/multi:1.0", "multi")
    tool = push_oci_image(
        f"{upstream.address}/library/tool:2", "tool", "linux/amd64", "linux/arm64", "linux/arm/v7"
    )
    arm64 = multi.manifests["linux/arm64"]
    present = (
        f"{upstream.address}/team/multi:1.0\n"
        f"--platform=linux/arm64 {upstream.address}/team/multi@{multi.index} AS multi-arm\n"
        f"{upstream.address}/library/tool:2\n"
    )
    pants_repo.write(
        {
            "src/BUILD": COPY_BUILD,
            "src/images.txt": present + f"{upstream.address}/team/missing:1\n",
        }
    )

    # First run: package (records under dist/) and publish, in one Pants run.
    first = pants_repo.pants("package", "publish", "src::", registry=mirror, env=NO_DOCKER)

    # The missing image fails, alone, naming image and registry; the run ends non-zero.
    assert first.returncode != 0, first
    summary = first.stderr
    assert (
        f"✕ {mirror.address}/mirror/team/missing:1 failed for source "
        f"{upstream.address}/team/missing:1 at registry {upstream.address}: not found"
    ) in summary, first
    assert "Traceback" not in first.stderr and "Traceback" not in first.stdout, first
    # Said by `package`'s own output and by the summary line, and nowhere else (not logged).
    assert first.stderr.count(f"{upstream.address}/team/missing:1 at registry") == 2, first
    assert "[ERROR]" not in first.stderr and "docker-mirror:" not in first.stderr, first
    for published in (
        f"{mirror.address}/mirror/team/multi:1.0",
        f"{mirror.address}/mirror/team/multi:digest-sha256-{multi.index.split(':')[1]}",
        f"{mirror.address}/mirror/library/tool:2",
    ):
        assert f"✓ {published} published to @mirror (copied from " in summary, first
    assert "3 platforms: linux/amd64, linux/arm64, linux/arm/v7" in summary, first

    # The destination serves the source's index digest, and every platform's manifest.
    assert mirror.manifest_digest("mirror/team/multi", "1.0") == multi.index
    for digest in multi.manifests.values():
        assert mirror.manifest_digest("mirror/team/multi", digest) == digest
    assert mirror.manifest_digest("mirror/library/tool", "2") == tool.index
    for digest in tool.manifests.values():
        assert mirror.manifest_digest("mirror/library/tool", digest) == digest
    # The --platform line: just that platform's manifest, under its upstream digest.
    assert (
        mirror.manifest_digest("mirror/team/multi", f"digest-sha256-{multi.index.split(':')[1]}") == arm64
    )
    assert "mirror/team/missing" not in mirror.repositories()

    # `pants package` wrote what it resolved.
    record = json.loads(
        (
            pants_repo.root
            / "dist"
            / "src"
            / upstream.address.replace(".", "_").replace(":", "_")
            / "team"
            / "multi.docker-mirror.json"
        ).read_text()
    )
    assert record["source"]["digest"] == multi.index
    assert record["source"]["media_type"] == "application/vnd.oci.image.index.v1+json"
    # Resolved by a HEAD, which does not read the index's platforms; the destination's digests
    # above show every platform was copied, and the summary named them from the destination.
    assert record["source"]["platforms"] is None
    assert [d["reference"] for d in record["destinations"]] == [
        f"{mirror.address}/mirror/team/multi:1.0"
    ]
    arm_record = json.loads(
        (pants_repo.root / "dist" / "src" / "multi-arm.docker-mirror.json").read_text()
    )
    assert (
        arm_record["source"]["digest"] == arm64
        and arm_record["source"]["index_digest"] == multi.index
    )

    # Second run, the missing line gone: everything is up to date and nothing is copied.
    pants_repo.write({"src/images.txt": present})
    seen_upstream, seen_mirror = len(upstream.access_log()), len(mirror.access_log())
    second = pants_repo.pants("publish", "src::", registry=mirror, env=NO_DOCKER)

    assert second.returncode == 0, second
    results = [line for line in second.stderr.splitlines() if line.startswith(("✓", "✕", "-"))]
    assert len(results) == 3, second
    assert all(
        " skipped (up to date: @mirror already serves sha256:" in line for line in results
    ), second
    # The reads this run must make are there: a HEAD for each source tag and destination tag,
    # and the one GET that cannot be a HEAD: the pinned index the --platform line picks from.
    upstream_requests = upstream.settled_access_log()[seen_upstream:]
    mirror_requests = mirror.settled_access_log()[seen_mirror:]
    pinned_tag = f"digest-sha256-{multi.index.split(':')[1]}"
    for path in ("/v2/team/multi/manifests/1.0", "/v2/library/tool/manifests/2"):
        assert requests_for(upstream_requests, "HEAD", path), (path, upstream_requests)
    pinned_index = f"/v2/team/multi/manifests/{multi.index}"
    assert requests_for(upstream_requests, "GET", pinned_index), upstream_requests
    for path in (
        "/v2/mirror/team/multi/manifests/1.0",
        f"/v2/mirror/team/multi/manifests/{pinned_tag}",
        "/v2/mirror/library/tool/manifests/2",
    ):
        assert requests_for(mirror_requests, "HEAD", path), (path, mirror_requests)
    gets = [line for line in upstream_requests + mirror_requests if '"GET ' in line]
    # Besides the pinned index, only the referrers API's list (no pull), once per registry:
    # this one answers 404 (it has no API), which the probe remembers for the run; and each
    # source repository's tag list (no pull), once.
    listings = [line for line in gets if "/referrers/" in line]
    assert len(listings) == 1, listings
    tag_lists = [line for line in gets if "/tags/list" in line]
    assert len(tag_lists) == len({line.split("/tags/list")[0] for line in tag_lists}), tag_lists
    assert [
        line for line in gets if pinned_index not in line and "/referrers/" not in line and "/tags/list" not in line
    ] == [], gets
    # Once the logs have settled: no blob, and nothing but reads.
    new_requests = upstream_requests + mirror_requests
    assert not [
        line
        for line in new_requests
        if "/blobs/" in line or not line.split('"')[1].startswith(("GET ", "HEAD "))
    ], new_requests


def test_blobs_are_mounted_within_a_registry_and_chunked_where_monolithic_uploads_are_refused(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    """One registry, behind a proxy that answers 413 to every monolithic blob `PUT`, is the
    destination of two lines: one whose source is that registry (its blobs are mounted: no upload
    at all), one from another registry (its blobs go in chunks once the first `PUT` is refused)."""
    upstream, mirror = registries(), registries()
    local = push_oci_image(f"{mirror.address}/team/app:1", "app", "linux/amd64", "linux/arm64")
    remote = push_oci_image(f"{upstream.address}/library/tool:2", "tool", "linux/amd64", "linux/arm64")
    with ChunkedOnlyProxy.start(mirror.address) as proxy:
        pants_repo.write(
            {
                "src/BUILD": COPY_BUILD,
                "src/images.txt": f"{proxy.address}/team/app:1\n{upstream.address}/library/tool:2\n",
            }
        )
        seen = len(mirror.access_log())
        result = pants_repo.pants(
            "publish", "src::", registry=dataclasses.replace(mirror, address=proxy.address), env=NO_DOCKER
        )
        through_proxy = proxy.seen()

    assert result.returncode == 0, result
    for published in (f"{proxy.address}/mirror/team/app:1", f"{proxy.address}/mirror/library/tool:2"):
        assert f"✓ {published} published to @mirror (copied from " in result.stderr, result
    assert mirror.manifest_digest("mirror/team/app", "1") == local.index
    assert mirror.manifest_digest("mirror/library/tool", "2") == remote.index
    # Every platform's blobs are there, each read back and checked against its digest.
    for repository, image in (("mirror/team/app", local), ("mirror/library/tool", remote)):
        for digest in image.manifests.values():
            manifest = json.loads(mirror.manifest(repository, digest)[0])
            for blob in [manifest["config"], *manifest["layers"]]:
                mirror.blob(repository, blob["digest"])
    log = mirror.settled_access_log()[seen:]
    # Within the registry: every blob mounted from the source repository, none uploaded.
    mounts = [line for line in log if '"POST /v2/mirror/team/app/blobs/uploads/?mount=' in line and '" 201 ' in line]
    assert mounts and all("from=team%2Fapp" in line or "from=team/app" in line for line in mounts), mounts
    assert not [line for line in log if '"PUT /v2/mirror/team/app/blobs/uploads/' in line], log
    assert not [line for line in log if '"PATCH /v2/mirror/team/app/blobs/uploads/' in line], log
    # From the other registry: monolithic `PUT`s refused, then chunks, each closed by a `PUT`.
    assert through_proxy["refused"] >= 1 and through_proxy["PATCH"] >= 1, through_proxy
    assert through_proxy["PUT"] == through_proxy["PATCH"], through_proxy  # one chunk per small blob
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result


PASSWORD = "e2e-mirror-s3cret"


def test_credentials_reach_the_copy_from_the_docker_config_and_no_output_record_or_log_holds_them(
    registries: Callable[..., Registry],
    pants_repo: PantsRepo,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The real `./pants package publish` (debug logging on) against a registry that requires
    basic auth: the copy succeeds with the credentials of the Docker config, and the secret is in
    none of Pants' output, nor its logs and records under `.pants.d/` and `dist/` (the registry
    probe's command line is its two file names, and nothing else)."""
    outside = tmp_path_factory.mktemp("outside-the-repository")
    htpasswd = outside / "htpasswd"
    htpasswd.write_text(htpasswd_entry("mirror-user", PASSWORD))
    upstream, mirror = registries(), registries(htpasswd)
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"http://{mirror.address}/v2/", timeout=10)
    assert anonymous.value.code == 401, "the mirror requires credentials"
    image = push_oci_image(f"{upstream.address}/team/app:2", "credentials")
    auth = base64.b64encode(f"mirror-user:{PASSWORD}".encode()).decode()
    docker_config = outside / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {mirror.address: {"auth": auth}}})
    )
    pants_repo.write(
        {"src/BUILD": COPY_BUILD, "src/images.txt": f"{upstream.address}/team/app:2 AS app\n"}
    )

    result = pants_repo.pants(
        "-ldebug",
        "package",
        "publish",
        "src::",
        registry=mirror,
        env={**NO_DOCKER, "DOCKER_CONFIG": str(docker_config)},
    )

    assert result.returncode == 0, result
    destination = f"{mirror.address}/mirror/team/app:2"
    assert f"✓ {destination} published to @mirror (copied from " in result.stderr, result
    served = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{destination}"],
        env={**os.environ, "DOCKER_CONFIG": str(docker_config)},
        capture_output=True,
        check=True,
    ).stdout
    assert digest_of(served) == image.index

    # What holds the run's traces, each checked to be there and to hold what it should.
    record = pants_repo.root / "dist" / "src" / "app.docker-mirror.json"
    assert json.loads(record.read_text())["destinations"][0]["reference"] == destination
    # Pants logs to stderr (at debug level here: every process it starts) and to pants.log.
    assert f"Copying {upstream.address}/team/app@{image.index[:19]} to {destination}" in (
        result.stderr
    ), result
    assert (pants_repo.root / ".pants.d" / "pants.log").stat().st_size > 0
    traces = {
        "./pants stdout": result.stdout.encode(),
        "./pants stderr": result.stderr.encode(),
        **{
            str(path.relative_to(pants_repo.root)): path.read_bytes()
            for directory in (".pants.d", "dist")
            for path in (pants_repo.root / directory).rglob("*")
            if path.is_file()
        },
    }
    for secret in (PASSWORD, auth):
        assert not [where for where, text in traces.items() if secret.encode() in text]


def path_without(program: str, directory: Path) -> str:
    """A `PATH` of one directory, `directory`, holding a link to every program this `PATH` finds
    (the first of each name, as a shell would) but `program`."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in os.environ["PATH"].split(os.pathsep):
        if not entry or not os.path.isdir(entry):
            continue
        for found in sorted(Path(entry).iterdir()):
            link = directory / found.name
            if found.name == program or os.path.lexists(link):
                continue
            if found.is_file() and os.access(found, os.X_OK):
                link.symlink_to(found)
    return str(directory)


def pants_without(program: str, repo: PantsRepo, path: str, *args: str) -> PantsResult:
    """`./pants --no-pantsd <args>` with `path` as its `PATH`; as root, in a mount namespace of its
    own in which every `program` of this machine's `PATH` is an empty file that cannot run, so
    that no absolute path reaches it either."""
    found = sorted(
        {
            os.path.realpath(candidate)
            for directory in os.environ["PATH"].split(os.pathsep)
            if directory
            for candidate in [os.path.join(directory, program)]
            if os.path.isfile(candidate)
        }
    )
    argv = [str(repo.root / "pants"), "--no-pantsd", *args]
    if found and os.geteuid() == 0 and shutil.which("unshare"):
        empty = repo.root.parent / f"no-{program}"
        empty.write_bytes(b"")
        empty.chmod(0o644)
        hide = " && ".join(f"mount --bind {empty} {target}" for target in found)
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{hide} && exec "$@"', "sh", *argv]
    env = {**os.environ, **NO_DOCKER, "PATH": path}
    result = subprocess.run(argv, cwd=repo.root, capture_output=True, text=True, timeout=900, env=env)
    return PantsResult(result.returncode, result.stdout, result.stderr)


def test_copy_mode_needs_no_skopeo(
    registries: Callable[..., Registry], pants_repo: PantsRepo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`./pants publish` of a copy-mode generator with skopeo nowhere to be found: not on `PATH`,
    nor, as root, at its own path. Every digest at the destination, read from the registry's
    API, is the source's: an index and each platform's manifest, a `--platform` line's
    manifest, and a single-platform image's."""
    upstream, mirror = registries(), registries()
    multi = push_oci_image(f"{upstream.address}/team/multi:1.0", "no skopeo")
    single = make_image(f"{upstream.address}/team/single:3", "no skopeo")
    arm64 = multi.manifests["linux/arm64"]
    pinned_tag = f"digest-sha256-{multi.index.split(':')[1]}"
    pants_repo.write(
        {
            "src/BUILD": COPY_BUILD,
            "src/images.txt": (
                f"{upstream.address}/team/multi:1.0\n"
                f"--platform=linux/arm64 {upstream.address}/team/multi@{multi.index} AS multi-arm\n"
                f"{upstream.address}/team/single:3\n"
            ),
        }
    )
    path = path_without("skopeo", tmp_path_factory.mktemp("no-skopeo") / "bin")
    assert shutil.which("skopeo", path=path) is None

    result = pants_without("skopeo", pants_repo, path, mirror_registry_option(mirror), "publish", "src::")

    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr and "skopeo" not in result.stderr.lower(), result
    assert result.stderr.count("published to @mirror (copied from ") == 3, result
    assert mirror.manifest_digest("mirror/team/multi", "1.0") == multi.index
    for digest in multi.manifests.values():
        assert mirror.manifest_digest("mirror/team/multi", digest) == digest
    assert mirror.manifest_digest("mirror/team/multi", pinned_tag) == arm64
    assert mirror.manifest_digest("mirror/team/single", "3") == single
