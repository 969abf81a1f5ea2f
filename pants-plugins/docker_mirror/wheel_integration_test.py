"""End to end: the plugin installed the way Pants plugins are installed. The real `./pants package`
builds the wheel in a copy of this repository; a fresh repository, with no plugin sources and no
`pythonpath`, installs it through `[GLOBAL].plugins` from a local find-links directory, and
mirrors a multi-platform image with `method="copy"` between two loopback registries."""

from __future__ import annotations

import shutil
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Callable

from docker_mirror.testutil.images import push_oci_image
from docker_mirror.testutil.machine import REPO_ROOT, require_skopeo
from docker_mirror.testutil.pants_repo import PantsRepo
from docker_mirror.testutil.registries import Registry

DIST = "pants-plugins/docker_mirror:dist"
PACKAGE_DIR = Path("pants-plugins/docker_mirror")
# What the build reads (`//:repo-config` and `//:dist-inputs` in the root BUILD file).
BUILD_INPUTS = ("pants", "pants.toml", "BUILD", "mypy.ini", "3rdparty/python", "pants-plugins")
# A data file that no BUILD file names: the package's resources must reach the wheel unlisted.
RESOURCE = "subsystems/wheel-test-resource.lock"
# The plugin's lines of this repository's pants.toml, for an in-repo copy.
IN_REPO_PLUGIN = 'pythonpath = ["%(buildroot)s/pants-plugins"]\n'
# Copy mode must never need a Docker engine: make any use of one fail.
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def copy_of_this_repository(root: Path) -> PantsRepo:
    repo = PantsRepo(root, copy_plugin=False)
    for relpath in BUILD_INPUTS:
        source, target = REPO_ROOT / relpath, root / relpath
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
            shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    return repo


def shipped_files(package_root: Path) -> set[str]:
    """The files of the package that the wheel must hold: all but BUILD files and tests."""
    shipped = set()
    for path in package_root.rglob("*"):
        relpath = path.relative_to(package_root)
        if path.is_dir() or relpath.parts[0] == "testutil" or "__pycache__" in relpath.parts:
            continue
        if path.name in ("BUILD", "conftest.py") or path.name.endswith("_test.py"):
            continue
        shipped.add(f"docker_mirror/{relpath.as_posix()}")
    return shipped


def plugin_config(pants_toml: str, requirement: str, find_links: Path) -> str:
    """This repository's pants.toml with its in-repo plugin replaced by the wheel: `plugins`
    instead of `pythonpath`, and a find-links directory as the only package repository."""
    assert pants_toml.count(IN_REPO_PLUGIN) == 1, "pants.toml no longer enables the plugin so"
    return pants_toml.replace(IN_REPO_PLUGIN, f'plugins = ["{requirement}"]\n') + (
        f'\n[python-repos]\nfind_links = ["file://{find_links}"]\nindexes = []\n'
    )


def test_the_wheel_installs_through_global_plugins_and_mirrors(
    registries: Callable[..., Registry], tmp_path: Path
) -> None:
    require_skopeo()

    # Build the wheel with the real `./pants package`, in a copy of this repository that has one
    # more data file in the package.
    builder = copy_of_this_repository(tmp_path / "build")
    package_root = builder.root / PACKAGE_DIR
    resource = package_root / RESOURCE
    resource.write_text("// a resource of the package, named by no BUILD file\n")
    built = builder.pants("package", DIST, timeout=600)
    assert built.returncode == 0, built
    [wheel] = (builder.root / "dist").glob("*.whl")

    # The wheel holds the package's modules and data files, and no tests, conftest or testutil.
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata_name] = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        dist_info = metadata_name.split("/")[0]
        assert {name for name in names if not name.startswith(f"{dist_info}/")} == (
            shipped_files(package_root)
        )
        assert archive.read(f"docker_mirror/{RESOURCE}") == resource.read_bytes()

    # Its metadata: a name and version to pin in `plugins`, any Python that Pants 2.17 to 2.33
    # runs on, and no requirement on Pants unless asked for with the `pants` extra.
    name, version = metadata["Name"], metadata["Version"]
    assert (name, wheel.name) == (
        "pants-backend-docker-mirror",
        f"pants_backend_docker_mirror-{version}-py3-none-any.whl",
    )
    assert metadata["Requires-Python"] == ">=3.9"
    requires = metadata.get_all("Requires-Dist") or []
    assert [r.replace(" ", "").replace('"', "'") for r in requires] == [
        "pantsbuild.pants(<2.34,>=2.17);extra=='pants'"
    ], requires

    # A fresh repository: no plugin sources, no `pythonpath`, the wheel in a find-links
    # directory, and a process cache and named caches of its own, so that Pants cannot reuse a
    # plugin resolve of an earlier run (it keys one by requirement, not by the wheel's bytes).
    find_links = tmp_path / "find-links"
    find_links.mkdir()
    shutil.copy2(wheel, find_links / wheel.name)
    user = PantsRepo(tmp_path / "user", copy_plugin=False)
    user.write(
        {
            "pants.toml": plugin_config(
                (REPO_ROOT / "pants.toml").read_text(), f"{name}=={version}", find_links
            ),
            "src/BUILD": "docker_mirror_images(name='mirror', method='copy')\n",
        }
    )
    assert not (user.root / "pants-plugins").exists()
    named_caches = tmp_path / "named-caches"

    upstream, mirror = registries(), registries()
    image = push_oci_image(f"{upstream.address}/team/app:1.0", "wheel", "linux/amd64", "linux/arm64")
    user.write({"src/images.txt": f"{upstream.address}/team/app:1.0\n"})
    published = user.pants(
        f"--named-caches-dir={named_caches}",
        f"--local-store-dir={tmp_path / 'local-store'}",
        "publish",
        "src::",
        registry=mirror,
        env=NO_DOCKER,
        timeout=600,
    )

    assert published.returncode == 0, published
    assert (
        f"✓ {mirror.address}/mirror/team/app:1.0 published to @mirror (copied from "
        f"{upstream.address}/team/app:1.0"
    ) in published.stderr, published
    assert mirror.manifest_digest("mirror/team/app", "1.0") == image.index
    for digest in image.manifests.values():
        assert mirror.manifest_digest("mirror/team/app", digest) == digest

    # The plugin Pants ran is the wheel, installed by the plugin resolve into its named caches.
    [register] = named_caches.glob("pex_root/venvs/**/site-packages/docker_mirror/register.py")
    site_packages = register.parent.parent
    assert (site_packages / f"pants_backend_docker_mirror-{version}.dist-info").is_dir()
    assert register.read_bytes() == (package_root / "register.py").read_bytes()
    assert (site_packages / "docker_mirror" / RESOURCE).read_bytes() == resource.read_bytes()
