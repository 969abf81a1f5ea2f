"""End to end under a live pantsd, Pants' default mode: the runs a developer makes one after the
other against one daemon, which keeps what earlier runs read and computed.

- `method="copy"` twice: the second run finds everything up to date and writes nothing (no
  blob upload, no manifest PUT, no copy process), although the daemon still holds the first
  run's copy processes (see `copy_to_repository` in goals/publish.py and `copy_image` in
  util_rules/copies.py).
- `method="build"`: a publish through the Docker engine.
- `--changed-since` after a spec file is deleted: the daemon had listed the file's directory in
  an earlier run, and must not serve that listing again (the cause of the old flaky RuleRunner
  test was such a stale listing).
"""

from __future__ import annotations

from typing import Callable

from docker_mirror_testutil.images import make_image, push_oci_image
from docker_mirror_testutil.pants_repo import NO_DOCKER, PantsRepo, PantsResult, PantsStats
from docker_mirror_testutil.registries import Registry, more_than_heads, requests_for


def daemon_run(
    pants_repo: PantsRepo,
    *args: str,
    registry: Registry | None = None,
    env: dict[str, str] | None = None,
) -> PantsResult:
    """A run against the repository's pantsd, checked to have one (started by the first run)."""
    result = pants_repo.pants(*args, registry=registry, env=env, daemon=True)
    assert pants_repo.daemon_pids(), f"no pantsd runs in {pants_repo.root}: {result!r}"
    return result


def test_a_copy_publish_run_again_under_the_same_daemon_writes_nothing(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    upstream, mirror = registries(), registries()
    multi = push_oci_image(f"{upstream.address}/team/multi:1.0", "pantsd multi")
    tool = push_oci_image(f"{upstream.address}/library/tool:2", "pantsd tool", "linux/amd64")
    pants_repo.write(
        {
            "src/BUILD": (
                "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy')\n"
            ),
            "src/images.txt": (
                f"{upstream.address}/team/multi:1.0\n{upstream.address}/library/tool:2\n"
            ),
        }
    )
    # The same options in every run (changed bootstrap options would restart the daemon).
    publish = (
        "--stats-log",
        "publish",
        "src::",
    )
    destinations = (
        f"{mirror.address}/mirror/team/multi:1.0",
        f"{mirror.address}/mirror/library/tool:2",
    )

    first = daemon_run(pants_repo, *publish, registry=mirror, env=NO_DOCKER)

    assert first.returncode == 0, first
    for destination in destinations:
        assert f"✓ {destination} published to @mirror (copied from " in first.stderr, first
    assert mirror.manifest_digest("mirror/team/multi", "1.0") == multi.index
    assert mirror.manifest_digest("mirror/library/tool", "2") == tool.index
    daemon = pants_repo.daemon_pids()

    upstream_before = upstream.settled_access_log()
    mirror_before = mirror.settled_access_log()
    second = daemon_run(pants_repo, *publish, registry=mirror, env=NO_DOCKER)

    assert second.returncode == 0, second
    assert pants_repo.daemon_pids() == daemon, "one daemon served both runs"
    for destination in destinations:
        assert f"- {destination} skipped (up to date: @mirror already serves sha256:" in (
            second.stderr
        ), second
    # The reads the second run must make, asked afresh of both registries...
    upstream_requests = upstream.settled_access_log()[len(upstream_before) :]
    mirror_requests = mirror.settled_access_log()[len(mirror_before) :]
    for path in ("/v2/team/multi/manifests/1.0", "/v2/library/tool/manifests/2"):
        assert requests_for(upstream_requests, "HEAD", path), (path, upstream_requests)
        assert requests_for(mirror_requests, "HEAD", f"/v2/mirror/{path[4:]}"), (
            path,
            mirror_requests,
        )
    # ... and once the logs have settled, nothing else: no write, no manifest GET (Docker Hub's
    # pull), no blob read (the GETs are the referrers API's list, which this registry answers
    # 404, and each source repository's tag list).
    assert not more_than_heads(upstream_requests + mirror_requests), mirror_requests
    # One process, the registry probe: no earlier copy run again while pantsd checks what it
    # can reuse, no process per image.
    assert PantsStats.parse(second.stderr).processes == 1, second

    # The destination loses the image while the daemon lives: the next run copies it again
    # (a copy that ran in an earlier run is never taken for this run's).
    mirror.delete_manifest("mirror/team/multi", multi.index)
    assert mirror.manifest_digest("mirror/team/multi", "1.0") is None
    third = daemon_run(pants_repo, *publish, registry=mirror, env=NO_DOCKER)
    assert third.returncode == 0, third
    assert pants_repo.daemon_pids() == daemon, "one daemon served every run"
    assert f"✓ {destinations[0]} published to @mirror (copied from " in third.stderr, third
    assert f"- {destinations[1]} skipped (up to date: " in third.stderr, third
    assert mirror.manifest_digest("mirror/team/multi", "1.0") == multi.index


def test_a_build_publish_under_pantsd(
    docker_engine: None, registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    upstream, mirror = registries(), registries()
    busybox = make_image(f"{upstream.address}/library/busybox:1.36", "pantsd busybox")
    pants_repo.write(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'])\n",
            "src/images.txt": f"{upstream.address}/library/busybox:1.36\n",
        }
    )

    result = daemon_run(pants_repo, "publish", "src::", registry=mirror)

    assert result.returncode == 0, result
    assert f"{mirror.address}/mirror/library/busybox:1.36 published" in result.stderr, result
    assert mirror.manifest_digest("mirror/library/busybox", "1.36") == busybox
    assert mirror.repositories() == ["mirror/library/busybox"]


def listed(result: PantsResult) -> set[str]:
    return {line for line in result.stdout.splitlines() if line.strip()}


def test_changed_since_under_pantsd_selects_nothing_of_a_deleted_spec_file(
    pants_repo: PantsRepo,
) -> None:
    """The daemon lists `base/` in a first run; spec files are then deleted behind its back (by
    git, and by a plain unlink), and `--changed-since=HEAD~1 list` must not select them."""
    pants_repo.write(
        {
            ".gitignore": "/.pants.*\n/.pids/\n/dist/\n",
            "base/BUILD": "docker_mirror_images(name='mirror', sources=['*.images.txt'])\n",
            "base/runtime.images.txt": "registry.example.com/library/python:3.12\n",
            "base/tools.images.txt": "registry.example.com/library/busybox:1.36\n",
            "base/extra.images.txt": "registry.example.com/library/alpine:3.19\n",
        }
    )
    pants_repo.git("init", "-q", "-b", "main")
    pants_repo.git("add", "-A")
    pants_repo.git("commit", "-q", "-m", "specs")
    changed = ("--changed-since=HEAD~1", "list")

    everything = daemon_run(pants_repo, "list", "::")
    assert everything.returncode == 0, everything
    assert {"base/tools.images.txt:mirror", "base/extra.images.txt:mirror"} <= listed(
        everything
    ), everything
    daemon = pants_repo.daemon_pids()

    # Deleted and committed: nothing is selected.
    pants_repo.git("rm", "-q", "base/tools.images.txt")
    pants_repo.git("commit", "-q", "-m", "drop tools")
    after_git_rm = daemon_run(pants_repo, *changed)
    assert after_git_rm.returncode == 0, after_git_rm
    assert listed(after_git_rm) == set(), after_git_rm

    # Deleted in git but still on disk: the daemon sees the file, and selects its images (so
    # this run can select something).
    pants_repo.git("rm", "-q", "--cached", "base/extra.images.txt")
    pants_repo.git("commit", "-q", "-m", "drop extra")
    still_on_disk = daemon_run(pants_repo, *changed)
    assert still_on_disk.returncode == 0, still_on_disk
    assert listed(still_on_disk) == {
        "base/extra.images.txt:mirror",
        "base:mirror#registry.example.com/library/alpine",
    }, still_on_disk

    # Now unlinked, as the old RuleRunner test did, after the daemon has listed `base/` with the
    # file in it: the same command selects nothing.
    (pants_repo.root / "base" / "extra.images.txt").unlink()
    unlinked = daemon_run(pants_repo, *changed)
    assert unlinked.returncode == 0, unlinked
    assert listed(unlinked) == set(), unlinked
    assert pants_repo.daemon_pids() == daemon, "one daemon served every run"
