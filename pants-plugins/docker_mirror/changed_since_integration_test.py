"""End to end: `./pants --changed-since=main publish` in a real git repository mirrors the images
of exactly the spec files changed on a branch, and publish failures are reported and recoverable.

Each test commits spec files on `main`, changes them on a `feature` branch, and runs the
README's commands with the real `./pants` (pants.toml as in this repository, with Pants' default
`[changed]` settings), a real Docker engine (or, with `method="copy"`, skopeo) and real
registries. What was mirrored is read back from the destination registry's API.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable

import pytest
from docker_mirror_testutil.consistency import BUILT, assert_destination_consistent
from docker_mirror_testutil.fault_proxy import FaultProxy, Reset, Rule, passthrough, respond, rules
from docker_mirror_testutil.images import make_image, push_oci_image
from docker_mirror_testutil.machine import require_skopeo
from docker_mirror_testutil.pants_repo import PantsRepo, PantsResult
from docker_mirror_testutil.registries import Registry

CHANGED = "--changed-since=main"

# Source images, pushed once per module to an upstream registry (`U` stands for its address).
UPSTREAM_IMAGES = [
    "library/python:3.12",
    "library/redis:7.2",
    "library/redis:7.4",
    "library/nginx:1.25",
    "library/memcached:1.6",
    "library/busybox:1.36",
    "library/alpine:3.19",
    "team/app:2.0",
    "team/web:1.0",
    "team/red:1",
    "team/blue:1",
    "infra/proxy:1",
    "infra/cache:1",
]

# Spec files in several directories; `base:mirror` has three sibling spec files.
LAYOUT = {
    ".gitignore": "/.pants.*\n/dist/\n",
    "base/BUILD": "docker_mirror_images(name='mirror', sources=['*.images.txt'])\n",
    "base/runtime.images.txt": (
        "# runtime images\n"
        "U/library/python:3.12\n"
        "U/library/redis:7.2 AS redis\n"
        "U/library/nginx:1.25\n"
        "U/library/memcached:1.6\n"
    ),
    "base/tools.images.txt": "U/library/busybox:1.36\n",
    "base/extra.images.txt": "U/library/alpine:3.19\n",
    "apps/BUILD": "docker_mirror_images(name='mirror')\n",
    "apps/images.txt": "U/team/app:2.0\nU/team/web:1.0\n",
    "teams/BUILD": "docker_mirror_images(name='mirror', sources=['*/images.txt'])\n",
    "teams/red/images.txt": "U/team/red:1\n",
    "teams/blue/images.txt": "U/team/blue:1\n",
    "infra/BUILD": (
        "docker_mirror_images(name='proxy', sources=['proxy.images.txt'])\n"
        "docker_mirror_images(name='cache', sources=['cache.images.txt'])\n"
    ),
    "infra/proxy.images.txt": "U/infra/proxy:1\n",
    "infra/cache.images.txt": "U/infra/cache:1\n",
}


@pytest.fixture(scope="module")
def upstream(docker_engine: None, registries: Callable[[], Registry]) -> Registry:
    registry = registries()
    for image in UPSTREAM_IMAGES:
        make_image(f"{registry.address}/{image}")
    return registry


def with_upstream(files: dict[str, str], upstream: Registry) -> dict[str, str]:
    return {path: text.replace("U/", f"{upstream.address}/") for path, text in files.items()}


def start_on_main(pants_repo: PantsRepo, files: dict[str, str], upstream: Registry) -> None:
    """Commits `files` (with `U` replaced by the upstream address) on `main`, then branches."""
    pants_repo.write(with_upstream(files, upstream))
    pants_repo.git("init", "-q", "-b", "main")
    pants_repo.git("add", "-A")
    pants_repo.git("commit", "-q", "-m", "specs")
    pants_repo.git("checkout", "-q", "-b", "feature")


def change(
    pants_repo: PantsRepo, upstream: Registry, edits: dict[str, str], deletes: tuple[str, ...] = ()
) -> None:
    """Commits `edits` and `deletes` on the `feature` branch."""
    pants_repo.write(with_upstream(edits, upstream))
    for path in deletes:
        pants_repo.git("rm", "-q", path)
    pants_repo.git("commit", "-q", "-a", "-m", "change")


def image(generator: str, upstream: Registry, reference: str) -> str:
    """The address of the image generated for `U/<reference>` (a line without `AS`)."""
    return f"{generator}#{upstream.address.replace(':', '_')}/{reference.split(':')[0]}"


def listed(result: PantsResult) -> set[str]:
    """The addresses `list` printed (in a `list publish` run, `docker push` writes to stdout too,
    in lines with spaces)."""
    return {line for line in result.stdout.splitlines() if line and " " not in line}


def published(result: PantsResult) -> list[str]:
    """The image tags `publish` reports as pushed."""
    return re.findall(r"^\S+ (\S+) published\.$", result.stderr, re.MULTILINE)


def built(result: PantsResult) -> list[str]:
    return re.findall(r"Completed: Building docker image (\S+)", result.stderr)


def assert_mirrored(mirror: Registry, upstream: Registry, *images: str) -> None:
    """`mirror` holds exactly `images` (`<repository>:<tag>`, under `mirror/`), each with the
    digest upstream serves."""
    expected: dict[str, list[str]] = {}
    for i in images:
        repository, tag = i.split(":")
        expected.setdefault(f"mirror/{repository}", []).append(tag)
    assert mirror.repositories() == sorted(expected)
    for repository, tags in expected.items():
        assert mirror.tags(repository) == sorted(tags), repository
    for i in images:
        repository, tag = i.split(":")
        assert mirror.manifest_digest(f"mirror/{repository}", tag) == upstream.manifest_digest(
            repository, tag
        ), i


def test_one_changed_spec_file_publishes_its_images_and_no_sibling_or_other_file(
    upstream: Registry, registries: Callable[[], Registry], pants_repo: PantsRepo
) -> None:
    """The README's two commands, verbatim. One line of a 4-line file changes: all 4 images of
    that file are rebuilt and pushed (change detection works per file), and nothing from the
    sibling spec files of the same generator nor from other directories."""
    mirror = registries()
    start_on_main(pants_repo, LAYOUT, upstream)
    change(
        pants_repo,
        upstream,
        {"base/runtime.images.txt": LAYOUT["base/runtime.images.txt"].replace(":7.2", ":7.4")},
    )

    preview = pants_repo.pants(CHANGED, "list", registry=mirror)
    assert preview.returncode == 0, preview
    assert listed(preview) == {
        "base/runtime.images.txt:mirror",
        image("base:mirror", upstream, "library/python"),
        "base:mirror#redis",
        image("base:mirror", upstream, "library/nginx"),
        image("base:mirror", upstream, "library/memcached"),
    }, preview

    result = pants_repo.pants(CHANGED, "publish", registry=mirror)
    assert result.returncode == 0, result
    runtime = [
        "library/python:3.12",
        "library/redis:7.4",
        "library/nginx:1.25",
        "library/memcached:1.6",
    ]
    assert_mirrored(mirror, upstream, *runtime)
    # The measurement the README quotes: N = 4 lines, one changed -> 4 builds and 4 pushes.
    tags = sorted(f"{mirror.address}/mirror/{i}" for i in runtime)
    assert sorted(built(result)) == tags, result
    assert sorted(published(result)) == tags, result


def test_deleted_lines_and_files_publish_nothing_of_theirs_and_a_build_edit_its_whole_file(
    upstream: Registry, registries: Callable[[], Registry], pants_repo: PantsRepo
) -> None:
    """One branch, one run (`list publish`), changes in separate directories:

    - `apps/images.txt` loses a line: that image is not published; the file's remaining line is.
    - `teams/blue/images.txt` loses its only line: nothing (its sibling `teams/red` neither).
    - `base/extra.images.txt` is deleted: nothing, and in particular not the images of its
      sibling files (the generator does not stand in as the owner of the deleted file).
    - `infra/BUILD` gets a `description` on one of its two generators: Pants treats every
      target of an edited BUILD file as changed, so the images of both are published.
    """
    mirror = registries()
    start_on_main(pants_repo, LAYOUT, upstream)
    infra_build = LAYOUT["infra/BUILD"].replace("'proxy',", "'proxy', description='edge',")
    change(
        pants_repo,
        upstream,
        {
            "apps/images.txt": "U/team/app:2.0\n",
            "teams/blue/images.txt": "# retired\n",
            "infra/BUILD": infra_build,
        },
        deletes=("base/extra.images.txt",),
    )

    result = pants_repo.pants(CHANGED, "list", "publish", registry=mirror)

    assert result.returncode == 0, result
    assert listed(result) == {
        "apps/images.txt:mirror",
        image("apps:mirror", upstream, "team/app"),
        "teams/blue/images.txt:../mirror",
        "infra/proxy.images.txt:proxy",
        image("infra:proxy", upstream, "infra/proxy"),
        "infra/cache.images.txt:cache",
        image("infra:cache", upstream, "infra/cache"),
    }, result
    assert_mirrored(mirror, upstream, "team/app:2.0", "infra/proxy:1", "infra/cache:1")


# Pants' default `[changed]` settings, with either method ----------------------------------------

DEFAULTS_LAYOUT = {
    ".gitignore": "/.pants.*\n/dist/\n",
    "src/BUILD": "docker_mirror_images(name='mirror', sources=['*.images.txt'], method='METHOD')\n",
    "src/edited.images.txt": "U/team/app:2.0\nU/team/web:1.0\n",
    "src/untouched.images.txt": "U/team/red:1\n",
    "other/BUILD": "docker_mirror_images(name='mirror', method='METHOD')\n",
    "other/images.txt": "U/team/blue:1\n",
}


@pytest.fixture(scope="module")
def oci_upstream(registries: Callable[[], Registry]) -> Registry:
    """Source images for `method="copy"`, made and pushed without a Docker engine."""
    require_skopeo()
    registry = registries()
    for reference in ("team/app:2.0", "team/web:1.0", "team/red:1", "team/blue:1", "infra/proxy:1"):
        push_oci_image(f"{registry.address}/{reference}", reference)
    return registry


@pytest.mark.parametrize("method", ["build", "copy"])
def test_with_pants_default_changed_settings_a_changed_spec_file_publishes_its_images_only(
    method: str,
    request: pytest.FixtureRequest,
    registries: Callable[[], Registry],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A repository whose pants.toml has no `[changed]` section, as a user's has. A line is
    added to one of two spec files of a generator: `--changed-since=main list publish` selects
    and mirrors the three images of that file, and nothing of its sibling file or of another
    directory. (When a private helper target alone owned the spec file, this selected only the
    helper, mirrored nothing and exited 0.)"""
    upstream: Registry = request.getfixturevalue("upstream" if method == "build" else "oci_upstream")
    mirror = registries()
    repo = PantsRepo(tmp_path_factory.mktemp("defaults"), pants_defaults_for=("changed",))
    assert "[changed]" not in (repo.root / "pants.toml").read_text()
    layout = {path: text.replace("METHOD", method) for path, text in DEFAULTS_LAYOUT.items()}
    start_on_main(repo, layout, upstream)
    edited = DEFAULTS_LAYOUT["src/edited.images.txt"] + "U/infra/proxy:1\n"
    change(repo, upstream, {"src/edited.images.txt": edited})

    result = repo.pants(CHANGED, "list", "publish", registry=mirror)

    assert result.returncode == 0, result
    assert listed(result) == {
        "src/edited.images.txt:mirror",
        image("src:mirror", upstream, "team/app"),
        image("src:mirror", upstream, "team/web"),
        image("src:mirror", upstream, "infra/proxy"),
    }, result
    assert_mirrored(mirror, upstream, "team/app:2.0", "team/web:1.0", "infra/proxy:1")


# Publish failures ------------------------------------------------------------------------------

FAILURE_LAYOUT = {
    ".gitignore": "/.pants.*\n/dist/\n",
    "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'])\n",
    "src/images.txt": "U/library/busybox:1.36\n",
}


def test_publish_failures_name_image_and_registry_an_interrupted_push_leaves_no_tag_and_a_rerun_completes(
    docker_engine: None, registries: Callable[[], Registry], pants_repo: PantsRepo
) -> None:
    """Two faults in turn, each fixed before the same command runs again; build method, the
    Docker engine pushing through the fault proxy.

    1. A source image that does not exist. Pants builds every image before it pushes any, so the
       run fails naming the source reference and the destination tag, and nothing is pushed.
    2. Pushes interrupted for real: `team/app`'s first blob upload is cut in the middle of its
       body (the engine retries it), then its manifest push is refused (403). Every other push
       goes on; the run fails naming that tag, and no tag of it appears at the destination.

    Once the fault is gone, the same command mirrors everything.
    """
    upstream, mirror = registries(), registries()
    make_image(f"{upstream.address}/library/busybox:1.36")
    make_image(f"{upstream.address}/team/app:2.0")
    start_on_main(pants_repo, FAILURE_LAYOUT, upstream)
    change(
        pants_repo,
        upstream,
        {"src/images.txt": "U/library/busybox:1.36\nU/team/app:2.0\nU/team/missing:1.0\n"},
    )
    tags = ("library/busybox:1.36", "team/app:2.0", "team/missing:1.0")
    proxy = FaultProxy.start(
        mirror.address,
        rules(
            Rule(Reset(16), methods=frozenset({"PATCH", "PUT"}),
                 path="/mirror/team/app/blobs/uploads/", times=1),
            Rule(respond(403), methods=frozenset({"PUT"}), path="/mirror/team/app/manifests/"),
        ),
    )  # fmt: skip
    # The engine pushes to the proxy's address: the images are tagged with it.
    through = dataclasses.replace(mirror, address=proxy.address)
    try:
        missing_source = pants_repo.pants(CHANGED, "publish", registry=through)

        assert missing_source.returncode != 0, missing_source
        destination = f"{proxy.address}/mirror/team/missing:1.0"
        assert f"Building docker image {destination}" in missing_source.stderr, missing_source
        source_error = f"manifest for {upstream.address}/team/missing:1.0 not found"
        assert source_error in missing_source.stderr, missing_source
        assert "Traceback (most recent call last)" not in missing_source.stderr, missing_source
        assert mirror.repositories() == []

        make_image(f"{upstream.address}/team/missing:1.0")
        interrupted = pants_repo.pants(CHANGED, "publish", registry=through)

        assert interrupted.returncode != 0, interrupted
        cut = [r for r in proxy.requests() if r.fault == "reset"]
        assert [r.method for r in cut] == ["PATCH"] or [r.method for r in cut] == ["PUT"], cut
        assert [r.status for r in proxy.requests() if r.fault == "403"], proxy.requests()
        assert re.search(
            rf"^\S+ {re.escape(proxy.address)}/mirror/team/app:2.0 failed\.$",
            interrupted.stderr,
            re.MULTILINE,
        ), interrupted
        assert "denied" in interrupted.stderr, interrupted
        assert "Traceback (most recent call last)" not in interrupted.stderr, interrupted
        sources = {("mirror/" + t.split(":")[0], t.split(":")[1]): BUILT for t in tags}
        now = assert_destination_consistent(
            mirror, sources, must_exist=(("mirror/library/busybox", "1.36"),
                                         ("mirror/team/missing", "1.0")),
        )  # fmt: skip
        assert ("mirror/team/app", "2.0") not in now  # no partial tag

        proxy.plan = passthrough()
        rerun = pants_repo.pants(CHANGED, "publish", registry=through)

        assert rerun.returncode == 0, rerun
        assert_destination_consistent(mirror, sources, now, must_exist=tuple(sources))
    finally:
        proxy.stop()
    assert_mirrored(mirror, upstream, *tags)
