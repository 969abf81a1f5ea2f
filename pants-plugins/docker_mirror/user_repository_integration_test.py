"""End to end, from a user's side: the wheel, built by the real `./pants package`, installed
through `[GLOBAL].plugins` into a fresh git repository that keeps Pants' defaults (no `[changed]`
section, its own interpreter constraints), run by Pants with none of this repository's launcher
variables, under its own live pantsd as a developer would run it. Copy mode, loopback
registries; digests come from the registries' own API."""

from __future__ import annotations

import json
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Callable, Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from docker_mirror_testutil import cosign
from docker_mirror_testutil.images import OciImage, push_oci_image
from docker_mirror_testutil.machine import REPO_ROOT
from docker_mirror_testutil.oci import digest_tag
from docker_mirror_testutil.pants_repo import NO_DOCKER
from docker_mirror_testutil.registries import Registry
from docker_mirror_testutil.user_repo import PluginInstall, UserRepo, build_wheel

PACKAGE_ROOT = REPO_ROOT / "pants-plugins" / "docker_mirror"
# A data file that no BUILD file names, added to the copy the wheel is built from: the
# package's resources must reach the wheel unlisted.
RESOURCE = "subsystems/wheel-test-resource.lock"
RESOURCE_TEXT = "// a resource of the package, named by no BUILD file\n"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(
        tmp_path_factory.mktemp("wheel-build"),
        {f"pants-plugins/docker_mirror/{RESOURCE}": RESOURCE_TEXT},
    )


def shipped_files(package_root: Path) -> set[str]:
    """The files of the package that the wheel must hold: all but BUILD files and tests."""
    shipped = {f"docker_mirror/{RESOURCE}"}
    for path in package_root.rglob("*"):
        relpath = path.relative_to(package_root)
        if path.is_dir() or "__pycache__" in relpath.parts:
            continue
        if path.name in ("BUILD", "conftest.py") or path.name.endswith("_test.py"):
            continue
        shipped.add(f"docker_mirror/{relpath.as_posix()}")
    return shipped


def test_the_wheel_holds_the_package_and_states_what_it_needs(wheel: Path) -> None:
    """The package's modules and data files, no tests or conftest (the test kit is a package of its own); a name and version
    to pin in `plugins`, any Python that Pants 2.17 to 2.33 runs on, and no requirement on Pants
    unless asked for with the `pants` extra."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata_name] = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        dist_info = metadata_name.split("/")[0]
        assert {name for name in names if not name.startswith(f"{dist_info}/")} == (
            shipped_files(PACKAGE_ROOT)
        )
        assert archive.read(f"docker_mirror/{RESOURCE}").decode() == RESOURCE_TEXT
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


@pytest.fixture(scope="module")
def plugin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> PluginInstall:
    return PluginInstall.create(wheel, tmp_path_factory.mktemp("plugin"))


@pytest.fixture
def user(
    plugin: PluginInstall, registries: Callable[..., Registry], tmp_path: Path
) -> Iterator[tuple[UserRepo, Registry]]:
    mirror = registries()
    repo = UserRepo(tmp_path / "repo", plugin, mirror=mirror)
    yield repo, mirror
    repo.stop_daemon()


def overwrite(mirror: Registry, repository: str, tag: str) -> OciImage:
    """Pushes another image to `repository:tag` at the mirror, as a user's push by hand would
    (the same image every time)."""
    other = push_oci_image(f"{mirror.address}/{repository}:{tag}", "user-other", "linux/amd64")
    assert mirror.manifest_digest(repository, tag) == other.index
    return other


def test_every_repair_under_pantsd_copies_and_says_so(
    user: tuple[UserRepo, Registry], registries: Callable[..., Registry]
) -> None:
    """A run that finds the destination tag wrong copies it, in every round under one pantsd,
    even when a round sees exactly what an earlier round saw."""
    repo, mirror = user
    upstream = registries()
    image = push_oci_image(f"{upstream.address}/team/app:1.0", "user-app", "linux/amd64")
    repo.write(
        {
            "images/BUILD": "docker_mirror_images(name='mirror', method='copy')\n",
            "images/images.txt": f"{upstream.address}/team/app:1.0\n",
        }
    )
    destination = f"{mirror.address}/team/app:1.0"
    copied = f"✓ {destination} published to @mirror (copied from {upstream.address}/team/app:1.0"

    first = repo.pants("publish", "images::", daemon=True, env=NO_DOCKER)
    assert first.returncode == 0, first
    assert copied in first.stderr, first
    assert mirror.manifest_digest("team/app", "1.0") == image.index

    # The plugin Pants ran is the wheel, installed by the plugin resolve into the named caches.
    [register] = repo.named_caches.glob("pex_root/venvs/**/site-packages/docker_mirror/register.py")
    assert register.read_bytes() == (PACKAGE_ROOT / "register.py").read_bytes()
    assert (register.parent / RESOURCE).read_text() == RESOURCE_TEXT

    # Overwrite twice, delete twice: rounds 2 and 4 see what rounds 1 and 3 saw.
    for round, damage in enumerate(("overwrite", "overwrite", "delete", "delete"), start=1):
        if damage == "overwrite":
            overwrite(mirror, "team/app", "1.0")
        else:
            mirror.delete_manifest("team/app", image.index)
            assert mirror.manifest_digest("team/app", "1.0") is None
        repaired = repo.pants("publish", "images::", daemon=True, env=NO_DOCKER)
        assert repaired.returncode == 0, (round, damage, repaired)
        assert copied in repaired.stderr, (round, damage, repaired)
        assert mirror.manifest_digest("team/app", "1.0") == image.index, (round, damage, repaired)

    # And a run with nothing to repair says so, and writes nothing.
    before = len(mirror.access_log())
    untouched = repo.pants("publish", "images::", daemon=True, env=NO_DOCKER)
    assert untouched.returncode == 0, untouched
    assert f"{destination} skipped (up to date" in untouched.stderr, untouched
    assert not [line for line in mirror.settled_access_log()[before:] if '"PUT ' in line]
    assert len(repo.daemon_pids()) == 1


def test_two_generators_cannot_send_two_sources_to_one_tag(
    user: tuple[UserRepo, Registry], registries: Callable[..., Registry]
) -> None:
    """Two teams' generators map different sources to one destination tag (the destination
    drops the source host): refused before anything is written, naming both."""
    repo, mirror = user
    one, two = registries(), registries()
    push_oci_image(f"{one.address}/library/nginx:1.25", "user-nginx-one", "linux/amd64")
    push_oci_image(f"{two.address}/library/nginx:1.25", "user-nginx-two", "linux/amd64")
    repo.write(
        {
            "team_a/BUILD": "docker_mirror_images(name='mirror', method='copy')\n",
            "team_a/images.txt": f"{one.address}/library/nginx:1.25\n",
            "team_b/BUILD": "docker_mirror_images(name='mirror', method='copy')\n",
            "team_b/images.txt": f"{two.address}/library/nginx:1.25\n",
        }
    )

    for goal in ("package", "publish"):
        refused = repo.pants(goal, "::", daemon=True)
        assert refused.returncode != 0, (goal, refused)
        for named in ("team_a", "team_b", f"{one.address}/library/nginx:1.25", f"{two.address}/library/nginx:1.25"):
            assert named in refused.stderr, (goal, named, refused)
        assert "published" not in refused.stderr, (goal, refused)
    assert mirror.repositories() == []
    assert not [line for line in mirror.settled_access_log() if '"PUT ' in line or '"POST ' in line]


def test_changed_since_publishes_the_images_of_changed_spec_files(
    user: tuple[UserRepo, Registry], registries: Callable[..., Registry], docker_engine: None
) -> None:
    """With Pants' default `[changed]` settings, `--changed-since` selects the images of the spec
    files that changed, with both methods, and nothing else."""
    repo, mirror = user
    upstream = registries()
    for name in ("built:1", "built:2", "copied:1", "added:1", "untouched:1"):
        push_oci_image(f"{upstream.address}/team/{name}", f"user-{name}", "linux/amd64")
    repo.write(
        {
            # `method` left out: the default, build.
            "built/BUILD": "docker_mirror_images(name='mirror')\n",
            "built/images.txt": f"# base images\n{upstream.address}/team/built:1\n",
            "copied/BUILD": "docker_mirror_images(name='mirror', method='copy')\n",
            "copied/images.txt": f"{upstream.address}/team/copied:1\n",
            "untouched/BUILD": "docker_mirror_images(name='mirror', method='copy')\n",
            "untouched/images.txt": f"{upstream.address}/team/untouched:1\n",
        }
    )
    repo.commit("images")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write(
        {
            "built/images.txt": f"# base images\n{upstream.address}/team/built:2\n",
            "copied/images.txt": f"{upstream.address}/team/copied:1\n{upstream.address}/team/added:1\n",
        }
    )
    repo.commit("more images")

    listed = repo.pants("--changed-since=main", "list", daemon=True)
    assert listed.returncode == 0, listed
    addresses = set(listed.stdout.split())
    assert {
        f"built:mirror#{upstream.address.replace(':', '_')}/team/built",
        f"copied:mirror#{upstream.address.replace(':', '_')}/team/copied",
        f"copied:mirror#{upstream.address.replace(':', '_')}/team/added",
    } <= addresses, listed
    assert not [a for a in addresses if a.startswith("untouched")], listed

    published = repo.pants("--changed-since=main", "publish", daemon=True)
    assert published.returncode == 0, published
    assert mirror.manifest_digest("team/copied", "1") is not None, published
    assert mirror.manifest_digest("team/added", "1") is not None, published
    assert mirror.manifest_digest("team/built", "2") is not None, published
    assert mirror.manifest_digest("team/built", "1") is None, published
    assert mirror.manifest_digest("team/untouched", "1") is None, published


def test_extract_and_pin_in_a_users_repository(
    user: tuple[UserRepo, Registry], registries: Callable[..., Registry]
) -> None:
    repo, _ = user
    upstream = registries()
    image = push_oci_image(f"{upstream.address}/team/web:2", "user-web", "linux/amd64")
    repo.write(
        {
            "deploy/rendered.yaml": (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
                "  template:\n    spec:\n      containers:\n"
                f"      - name: web\n        image: {upstream.address}/team/web:2\n"
            ),
            "images/BUILD": "docker_mirror_images(name='mirror', method='copy')\n",
        }
    )
    extracted = repo.pants(
        "docker-mirror-extract", "--output=images/images.txt", "deploy/rendered.yaml", daemon=True
    )
    assert extracted.returncode == 0, extracted
    spec = repo.root / "images" / "images.txt"
    lines = spec.read_text().splitlines()
    assert lines[-2:] == ["# Deployment/web", f"{upstream.address}/team/web:2"], lines

    check = repo.pants("docker-mirror-pin", "--check", "images::", daemon=True)
    assert check.returncode != 0, check
    assert f"images/images.txt:{len(lines)}:" in check.stdout + check.stderr, check

    pinned = repo.pants("docker-mirror-pin", "images::", daemon=True)
    assert pinned.returncode == 0, pinned
    assert spec.read_text().splitlines() == [*lines[:-1], f"{upstream.address}/team/web:2@{image.index}"]
    assert repo.pants("docker-mirror-pin", "--check", "images::", daemon=True).returncode == 0


def test_a_subset_of_platforms_and_a_platforms_signature_from_the_wheel(
    user: tuple[UserRepo, Registry], registries: Callable[..., Registry]
) -> None:
    """`platforms` keeps two of three platforms, and the kept platform's own signature travels;
    a second run under the same pantsd writes nothing."""
    repo, mirror = user
    upstream = registries()
    image = push_oci_image(f"{upstream.address}/team/multi:1", "user-multi", "linux/amd64", "linux/arm64", "linux/s390x")
    arm64, s390x = image.manifests["linux/arm64"], image.manifests["linux/s390x"]
    signature = cosign.sign(upstream, "team/multi", arm64, cosign.generate_key())
    repo.write(
        {
            "platforms/BUILD": "docker_mirror_images(name='mirror', method='copy', platforms=['linux/amd64', 'linux/arm64'])\n",
            "platforms/images.txt": f"{upstream.address}/team/multi:1\n",
        }
    )
    first = repo.pants("publish", "platforms::", daemon=True, env=NO_DOCKER)
    assert first.returncode == 0, first
    assert "2 of 3 platforms: linux/amd64, linux/arm64 (filtered from the source's index" in first.stderr, first
    served = json.loads(mirror.manifest("team/multi", "1")[0])
    assert [entry["digest"] for entry in served["manifests"]] == [image.manifests["linux/amd64"], arm64]
    assert mirror.manifest_digest("team/multi", s390x) is None
    assert mirror.manifest_digest("team/multi", digest_tag(arm64, "sig")) == signature

    before = len(mirror.settled_access_log())
    again = repo.pants("publish", "platforms::", daemon=True, env=NO_DOCKER)
    assert again.returncode == 0, again
    assert "skipped (up to date" in again.stderr, again
    assert not [line for line in mirror.settled_access_log()[before:] if '"PUT ' in line or '"POST ' in line]


def test_an_air_gap_from_the_wheel(user: tuple[UserRepo, Registry], registries: Callable[..., Registry]) -> None:
    """`pants package` of a `docker_mirror_archive` at its default path, then, with the source
    registry stopped, `pants publish --docker-mirror-from-archive` under the same pantsd: the
    digest and its signature arrive."""
    repo, mirror = user
    upstream = registries()
    image = push_oci_image(f"{upstream.address}/team/gapped:1", "user-gapped", "linux/amd64", "linux/arm64")
    signature = cosign.sign(upstream, "team/gapped", image.index, cosign.generate_key())
    repo.write(
        {
            "airgap/BUILD": "docker_mirror_images(name='mirror', method='copy')\n"
            "docker_mirror_archive(name='offline', images=[':mirror'])\n",
            "airgap/images.txt": f"{upstream.address}/team/gapped:1\n",
        }
    )
    packaged = repo.pants("package", "airgap:offline", daemon=True, env=NO_DOCKER)
    assert packaged.returncode == 0, packaged
    archive = repo.root / "dist" / "airgap" / "offline.tar"
    assert archive.is_file(), packaged

    upstream.stop()
    published = repo.pants("publish", "airgap::", f"--docker-mirror-from-archive={archive}", daemon=True, env=NO_DOCKER)
    assert published.returncode == 0, published
    assert mirror.manifest_digest("team/gapped", "1") == image.index
    assert mirror.manifest_digest("team/gapped", digest_tag(image.index, "sig")) == signature


def test_the_mirrors_provenance_from_the_wheel_under_pantsd(
    user: tuple[UserRepo, Registry], registries: Callable[..., Registry]
) -> None:
    """With a provenance key, the image gets the mirror's attestation, which verifies against
    the public key; a second run under the same pantsd writes nothing."""
    repo, mirror = user
    upstream = registries()
    image = push_oci_image(f"{upstream.address}/team/attested:1", "user-attested", "linux/amd64")
    key = ec.generate_private_key(ec.SECP256R1())
    repo.write(
        {
            "provenance/BUILD": "docker_mirror_images(name='mirror', method='copy')\n",
            "provenance/images.txt": f"{upstream.address}/team/attested:1\n",
            "provenance/mirror.key": key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
        }
    )
    (repo.root / "provenance" / "mirror.key").chmod(0o600)
    option = "--docker-mirror-provenance-key=provenance/mirror.key"
    first = repo.pants("publish", "provenance::", option, daemon=True, env=NO_DOCKER)
    assert first.returncode == 0, first
    assert "provenance attested" in first.stderr, first
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    [statement] = cosign.verify_attestation(mirror, "team/attested", image.index, public)
    assert statement["predicate"]["buildDefinition"]["resolvedDependencies"][0]["uri"] == f"{upstream.address}/team/attested:1"

    before = len(mirror.settled_access_log())
    again = repo.pants("publish", "provenance::", option, daemon=True, env=NO_DOCKER)
    assert again.returncode == 0, again
    assert not [line for line in mirror.settled_access_log()[before:] if '"PUT ' in line or '"POST ' in line]
