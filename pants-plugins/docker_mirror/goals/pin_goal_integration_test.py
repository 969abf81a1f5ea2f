"""End to end: the real `./pants docker-mirror-pin` against real registries, through the registry
probe. Pin, move the tag upstream, publish (the pinned digest is mirrored, by both methods);
`--check` fails after the move; `--update` pins the new digest, and `--changed-since` then
publishes that file's images. What the mirror serves is read back from the registry's API."""

from __future__ import annotations

from typing import Callable

from docker_mirror_testutil.images import make_image, push_oci_image
from docker_mirror_testutil.machine import require_skopeo
from docker_mirror_testutil.pants_repo import NO_DOCKER, PantsRepo, PantsResult
from docker_mirror_testutil.registries import Registry


def short(digest: str) -> str:
    return f"{digest[: len('sha256:') + 12]}…"


def no_traceback(result: PantsResult) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result


def test_pin_move_check_publish_update_and_changed_since(
    docker_engine: None, registries: Callable[[], Registry], pants_repo: PantsRepo
) -> None:
    upstream, mirror = registries(), registries()
    u = upstream.address
    app_pinned = make_image(f"{u}/team/app:1.0", "app 1")
    tool = make_image(f"{u}/team/tool:2", "tool 2")
    other = make_image(f"{u}/team/other:1", "other 1")
    spec = f"\ufeff# base images\r\n\r\n  {u}/team/app:1.0   AS app  # the app\r\n{u}/team/tool:2\r\n"
    pants_repo.write(
        {
            ".gitignore": "/.pants.*\n/dist/\n",
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'])\n",
            "other/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'])\n",
            "other/images.txt": f"{u}/team/other:1@{other}\n",
        }
    )
    (pants_repo.root / "src/images.txt").write_bytes(spec.encode())

    pin = pants_repo.pants("docker-mirror-pin", "::")

    assert pin.returncode == 0, pin
    pinned_spec = (
        f"\ufeff# base images\r\n\r\n  {u}/team/app:1.0@{app_pinned}   AS app  # the app\r\n"
        f"{u}/team/tool:2@{tool}\r\n"
    )
    assert (pants_repo.root / "src/images.txt").read_bytes() == pinned_spec.encode()
    assert pin.stdout.splitlines() == [
        f"src/images.txt:3: {u}/team/app:1.0 (unpinned) -> {short(app_pinned)}",
        f"src/images.txt:4: {u}/team/tool:2 (unpinned) -> {short(tool)}",
    ], pin
    # The pinned file was not touched (its line needed no request).
    assert (pants_repo.root / "other/images.txt").read_text() == f"{u}/team/other:1@{other}\n"
    assert pants_repo.pants("docker-mirror-pin", "--check", "::").returncode == 0

    pants_repo.git("init", "-q", "-b", "main")
    pants_repo.git("add", "-A")
    pants_repo.git("commit", "-q", "-m", "pinned")
    pants_repo.git("checkout", "-q", "-b", "feature")

    # The tag moves upstream.
    app_moved = make_image(f"{u}/team/app:1.0", "app 1, rebuilt")
    assert app_moved != app_pinned

    # A spec file given by name stands for itself.
    check = pants_repo.pants("docker-mirror-pin", "--check", "src/images.txt")

    assert check.returncode != 0, check
    assert (
        f"src/images.txt:3: stale: the tag now serves {short(app_moved)}: "
        f"  {u}/team/app:1.0@{app_pinned}   AS app  # the app"
    ) in check.stderr, check
    assert "1 line(s) unpinned, stale or unresolvable" in check.stderr, check
    assert (pants_repo.root / "src/images.txt").read_bytes() == pinned_spec.encode()

    publish = pants_repo.pants("publish", "src::", registry=mirror)

    assert publish.returncode == 0, publish
    assert mirror.manifest_digest("mirror/team/app", "1.0") == app_pinned

    update = pants_repo.pants("docker-mirror-pin", "--update", "::")

    assert update.returncode == 0, update
    assert update.stdout.splitlines() == [
        f"src/images.txt:3: {u}/team/app:1.0 {short(app_pinned)} -> {short(app_moved)}"
    ], update
    assert (pants_repo.root / "src/images.txt").read_bytes() == pinned_spec.replace(
        app_pinned, app_moved
    ).encode()
    pants_repo.git("commit", "-q", "-a", "-m", "update pins")

    # CI's gate on the branch: the changed spec files are pinned and current.
    gate = pants_repo.pants("--changed-since=main", "docker-mirror-pin", "--check")
    assert gate.returncode == 0 and "all 2 image line(s) in 1 spec file are pinned" in gate.stderr, gate

    changed = pants_repo.pants("--changed-since=main", "publish", registry=mirror)

    assert changed.returncode == 0, changed
    assert mirror.manifest_digest("mirror/team/app", "1.0") == app_moved
    assert mirror.manifest_digest("mirror/team/tool", "2") == tool
    # The other spec file did not change: nothing of it was published.
    assert "mirror/team/other" not in mirror.repositories()
    no_traceback(changed)


def test_an_unresolvable_line_is_reported_and_the_others_are_still_pinned(
    registries: Callable[[], Registry], pants_repo: PantsRepo
) -> None:
    upstream = registries()
    u = upstream.address
    app = make_image(f"{u}/team/app:1.0", "app")
    pants_repo.write(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'])\n",
            "src/images.txt": f"{u}/team/gone:1\n{u}/team/app:1.0\n",
        }
    )

    result = pants_repo.pants("docker-mirror-pin", "src:mirror")

    assert result.returncode != 0, result
    assert f"src/images.txt:1: cannot resolve {u}/team/gone:1 at registry {u}: not found" in result.stderr
    assert result.stderr.rstrip().endswith("1 digest(s) changed in 1 of 1 spec file; 1 problem(s)."), result
    assert (pants_repo.root / "src/images.txt").read_text() == f"{u}/team/gone:1\n{u}/team/app:1.0@{app}\n"
    no_traceback(result)


def test_copy_method_publishes_the_pinned_index_and_platform_after_the_tag_moved(
    registries: Callable[[], Registry], pants_repo: PantsRepo
) -> None:
    require_skopeo()
    upstream, mirror = registries(), registries()
    u = upstream.address
    before = push_oci_image(f"{u}/team/multi:1.0", "multi 1")
    pants_repo.write(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy')\n",
            # The same reference twice is refused: the --platform line has a tag of its own.
            "src/images.txt": f"{u}/team/multi:1.0\n--platform=linux/arm64 {u}/team/multi:1 AS arm\n",
        }
    )
    upstream.put_tag("team/multi", "1.0", "1")

    pin = pants_repo.pants("docker-mirror-pin", "src::", env=NO_DOCKER)

    assert pin.returncode == 0, pin
    # A --platform line is pinned to the index the platform is picked from.
    assert (pants_repo.root / "src/images.txt").read_text() == (
        f"{u}/team/multi:1.0@{before.index}\n--platform=linux/arm64 {u}/team/multi:1@{before.index} AS arm\n"
    )

    after = push_oci_image(f"{u}/team/multi:1.0", "multi 1, rebuilt")
    upstream.put_tag("team/multi", "1.0", "1")
    assert after.index != before.index
    seen = len(upstream.settled_access_log())

    publish = pants_repo.pants("publish", "src::", registry=mirror, env=NO_DOCKER)

    assert publish.returncode == 0, publish
    assert mirror.manifest_digest("mirror/team/multi", "1.0") == before.index
    assert mirror.manifest_digest("mirror/team/multi", "1") == before.manifests["linux/arm64"]
    # Nothing asked the source for its tags: the pins say what to copy.
    tag_reads = [line for line in upstream.access_log()[seen:] if "/manifests/1" in line.split('"')[1]]
    assert tag_reads == [], tag_reads
    no_traceback(publish)
