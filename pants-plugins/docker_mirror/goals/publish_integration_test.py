"""The `method="copy"` package and publish rules through Pants' engine (RuleRunner), running the
real registry probe against real registries on loopback. No Docker engine is involved."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Callable

import pytest
from docker_mirror import register
from docker_mirror.goals.package import DockerMirrorCopyPackageFieldSet
from docker_mirror.goals.publish import (
    DockerMirrorCopyPublishFieldSet,
    PublishDockerMirrorImageRequest,
)
from docker_mirror.util_rules.registry_reads import GeneratorReadsRequest, RegistryReads
from docker_mirror.oci.probe_protocol import CopyResult, Plan, TagCopy, TagOutcome
from docker_mirror.util_rules.copies import CopyImageRequest
from docker_mirror_testutil.images import OciImage, push_oci_image
from docker_mirror_testutil.registries import Registry, htpasswd_entry, more_than_heads, requests_for
from docker_mirror_testutil.rule_runner_options import pex_building_options
from pants.backend.docker.target_types import DockerImageTarget
from pants.core.goals.package import BuiltPackage
from pants.core.goals.publish import PublishPackages, PublishProcesses
from pants.core.target_types import TargetGeneratorSourcesHelperTarget
from pants.core.util_rules import system_binaries
from pants.engine.addresses import Address
from pants.engine.fs import Digest, DigestContents
from pants.engine.process import InteractiveProcess
from pants.testutil.rule_runner import QueryRule, RuleRunner, mock_console

PASSWORD = "s3cret-mirror-pw"


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(
        rules=[
            *register.rules(),
            *system_binaries.rules(),
            QueryRule(BuiltPackage, [DockerMirrorCopyPackageFieldSet]),
            QueryRule(PublishProcesses, [PublishDockerMirrorImageRequest]),
            QueryRule(RegistryReads, [GeneratorReadsRequest]),
            QueryRule(DigestContents, [Digest]),
            QueryRule(CopyResult, [CopyImageRequest]),
        ],
        target_types=[
            *register.target_types(),
            DockerImageTarget,
            TargetGeneratorSourcesHelperTarget,
        ],
    )


def configure(
    rule_runner: RuleRunner, mirror: Registry, *extra: str, env: dict[str, str] | None = None
) -> None:
    registries = {
        "mirror": {
            "address": mirror.address,
            "default": True,
            "repository": "mirror/{target_repository}",
        },
        "archive": {"address": "archive.invalid", "skip_push": True},
    }
    pex_options, pex_env = pex_building_options()
    rule_runner.set_options(
        [f"--docker-registries={registries!r}", *pex_options, *extra],
        env={"HOME": str(rule_runner.build_root), **pex_env, **(env or {})},
        env_inherit={"PATH", "PYENV_ROOT"},
    )


def mirror_spec(rule_runner: RuleRunner, lines: str, **fields: str) -> None:
    extra = "".join(f", {k}={v}" for k, v in fields.items())
    rule_runner.write_files(
        {
            "src/BUILD": f"docker_mirror_images(name='m', sources=['images.txt'], method='copy'{extra})",
            "src/images.txt": lines,
        }
    )


def package(rule_runner: RuleRunner, name: str) -> tuple[BuiltPackage, dict]:
    """What `pants package` builds for a generated image, and its JSON record."""
    target = rule_runner.get_target(Address("src", target_name="m", generated_name=name))
    built = rule_runner.request(BuiltPackage, [DockerMirrorCopyPackageFieldSet.create(target)])
    (record_file,) = rule_runner.request(DigestContents, [built.digest])
    return built, json.loads(record_file.content)


def package_and_publish(
    rule_runner: RuleRunner, name: str
) -> tuple[dict, tuple[PublishPackages, ...]]:
    """As `pants publish` does: package, then ask the publish rule for its `PublishPackages`."""
    built, record = package(rule_runner, name)
    target = rule_runner.get_target(Address("src", target_name="m", generated_name=name))
    request = PublishDockerMirrorImageRequest(
        DockerMirrorCopyPublishFieldSet.create(target), (built,)
    )
    return record, tuple(rule_runner.request(PublishProcesses, [request]))


def outcome(rule_runner: RuleRunner, job: PublishPackages) -> str:
    """How `pants publish` renders `job`: skipped, published or failed (by running its process)."""
    if job.process is None:
        return "skipped"
    assert isinstance(job.process, InteractiveProcess)
    with mock_console(rule_runner.options_bootstrapper):
        exit_code = rule_runner.run_interactive_process(job.process).exit_code
    return "published" if exit_code == 0 else "failed"


def test_package_resolves_the_source_without_reading_blobs(
    rule_runner: RuleRunner, registries: Callable[..., Registry]
) -> None:
    upstream, mirror = registries(), registries()
    image = push_oci_image(f"{upstream.address}/team/multi:1.0", "package")
    configure(rule_runner, mirror)
    mirror_spec(
        rule_runner, f"{upstream.address}/team/multi:1.0\n", registries="['@mirror', '@archive']"
    )
    seen = len(upstream.access_log())

    _, record = package(rule_runner, f"{upstream.address.replace(':', '_')}/team/multi")

    assert record["source"]["digest"] == image.index
    assert record["source"]["media_type"] == "application/vnd.oci.image.index.v1+json"
    # Resolved by a HEAD: the image index's body, which lists its platforms, was not read.
    assert record["source"]["platforms"] is None
    assert record["source"]["pinned"] == f"{upstream.address}/team/multi@{image.index}"
    assert [(d["reference"], d["skip_push"]) for d in record["destinations"]] == [
        (f"{mirror.address}/mirror/team/multi:1.0", False),
        ("archive.invalid/team/multi:1.0", True),
    ]
    assert record["error"] is None
    # The one read `package` must make is there, a HEAD; once the log has settled, no manifest
    # GET and no blob read.
    new_requests = upstream.settled_access_log()[seen:]
    assert requests_for(new_requests, "HEAD", "/v2/team/multi/manifests/1.0"), new_requests
    assert not more_than_heads(new_requests), new_requests


def test_publish_copies_all_platforms_keeping_the_index_digest_then_skips(
    rule_runner: RuleRunner, registries: Callable[..., Registry]
) -> None:
    upstream, mirror = registries(), registries()
    image = push_oci_image(f"{upstream.address}/team/multi:1.0", "publish")
    configure(rule_runner, mirror)
    mirror_spec(
        rule_runner,
        f"{upstream.address}/team/multi:1.0 AS multi\n",
        registries="['@mirror', '@archive']",
        image_tags="['1.0', '1']",
    )

    _, jobs = package_and_publish(rule_runner, "multi")

    by_name = {name: job for job in jobs for name in job.names}
    assert {name: outcome(rule_runner, job) for name, job in by_name.items()} == {
        f"{mirror.address}/mirror/team/multi:1.0": "published",
        f"{mirror.address}/mirror/team/multi:1": "published",
        "archive.invalid/team/multi:1.0": "skipped",
        "archive.invalid/team/multi:1": "skipped",
    }
    assert (
        by_name["archive.invalid/team/multi:1"].description
        == "(by `skip_push` on registry @archive)"
    )
    assert (
        "2 platforms: linux/amd64, linux/arm64"
        in (by_name[f"{mirror.address}/mirror/team/multi:1"].description or "")
    )
    for tag in ("1.0", "1"):
        assert mirror.manifest_digest("mirror/team/multi", tag) == image.index
    for digest in image.manifests.values():
        assert mirror.manifest_digest("mirror/team/multi", digest) == digest

    # A new run (a new session, as `set_options` starts): both tags are up to date, found with
    # one manifest request each.
    configure(rule_runner, mirror)
    seen_upstream, seen_mirror = len(upstream.access_log()), len(mirror.access_log())
    _, jobs = package_and_publish(rule_runner, "multi")
    assert sorted(
        (job.names, outcome(rule_runner, job), job.description) for job in jobs if job.data
    ) == [
        (
            (f"{mirror.address}/mirror/team/multi:1",),
            "skipped",
            f"(up to date: @mirror already serves {image.index[:19]})",
        ),
        (
            (f"{mirror.address}/mirror/team/multi:1.0",),
            "skipped",
            f"(up to date: @mirror already serves {image.index[:19]})",
        ),
    ]
    # The reads this run must make (the source, and each destination tag) are there; once the
    # logs have settled, nothing else is.
    upstream_requests = upstream.settled_access_log()[seen_upstream:]
    mirror_requests = mirror.settled_access_log()[seen_mirror:]
    assert requests_for(upstream_requests, "HEAD", "/v2/team/multi/manifests/1.0"), upstream_requests
    for tag in ("1.0", "1"):
        assert requests_for(mirror_requests, "HEAD", f"/v2/mirror/team/multi/manifests/{tag}"), (
            mirror_requests
        )
    new_requests = upstream_requests + mirror_requests
    assert not more_than_heads(new_requests), "\n".join(new_requests)


def test_a_platform_line_copies_only_that_platform(
    rule_runner: RuleRunner, registries: Callable[..., Registry]
) -> None:
    upstream, mirror = registries(), registries()
    image = push_oci_image(
        f"{upstream.address}/team/multi:1.0", "platform", "linux/amd64", "linux/arm64/v8"
    )
    configure(rule_runner, mirror)
    mirror_spec(rule_runner, f"--platform=linux/arm64 {upstream.address}/team/multi:1.0 AS arm\n")

    record, jobs = package_and_publish(rule_runner, "arm")

    arm64 = image.manifests["linux/arm64/v8"]
    assert record["source"]["digest"] == arm64
    assert record["source"]["index_digest"] == image.index
    assert [outcome(rule_runner, job) for job in jobs] == ["published"]
    assert mirror.manifest_digest("mirror/team/multi", "1.0") == arm64
    assert mirror.manifest_digest("mirror/team/multi", image.manifests["linux/amd64"]) is None


def test_a_missing_source_fails_its_image_naming_image_and_registry(
    rule_runner: RuleRunner, registries: Callable[..., Registry]
) -> None:
    upstream, mirror = registries(), registries()
    configure(rule_runner, mirror)
    mirror_spec(rule_runner, f"{upstream.address}/team/missing:1 AS missing\n")

    record, jobs = package_and_publish(rule_runner, "missing")  # the package rule does not raise

    assert "not found" in record["error"] and record["source"]["digest"] is None
    (job,) = jobs
    assert job.names == (f"{mirror.address}/mirror/team/missing:1",)
    assert outcome(rule_runner, job) == "failed"
    assert job.description is not None
    assert job.description.startswith(
        f"source {upstream.address}/team/missing:1 at registry {upstream.address}: not found ("
    )
    assert mirror.repositories() == []


def test_credentials_come_from_the_docker_config_and_stay_out_of_argv_and_output(
    rule_runner: RuleRunner, registries: Callable[..., Registry], tmp_path: Path
) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(htpasswd_entry("mirror-user", PASSWORD))
    upstream, mirror = registries(), registries(htpasswd)
    image = push_oci_image(f"{upstream.address}/team/app:2", "auth")
    mirror_spec(rule_runner, f"{upstream.address}/team/app:2 AS app\n")

    # Without credentials: a failure that says so, naming the registry.
    configure(rule_runner, mirror)
    _, (denied,) = package_and_publish(rule_runner, "app")
    assert outcome(rule_runner, denied) == "failed"
    assert f"access denied by registry {mirror.address}" in (denied.description or "")

    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    auth = base64.b64encode(f"mirror-user:{PASSWORD}".encode()).decode()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {mirror.address: {"auth": auth}}})
    )
    configure(rule_runner, mirror, env={"DOCKER_CONFIG": str(docker_config)})
    _, (job,) = package_and_publish(rule_runner, "app")

    assert outcome(rule_runner, job) == "published", job.description
    assert PASSWORD not in repr(job) and auth not in repr(job)
    assert PASSWORD not in repr(denied) and auth not in repr(denied)
    assert mirror.manifest_digest("mirror/team/app", "2", authorization=f"Basic {auth}") == image.index


def test_oci_image_helper_is_reproducible(registries: Callable[..., Registry]) -> None:
    registry = registries()
    first: OciImage = push_oci_image(f"{registry.address}/x/a:1", "same")
    again = push_oci_image(f"{registry.address}/x/b:1", "same")
    other = push_oci_image(f"{registry.address}/x/c:1", "other")
    assert first == again and first.index != other.index
    assert registry.manifest_digest("x/a", "1") == first.index


def test_a_repeated_copy_neither_pushes_again_nor_overwrites_a_newer_image(
    rule_runner: RuleRunner, registries: Callable[..., Registry]
) -> None:
    """With pantsd, Pants may re-run a previous run's copy process while it checks whether that
    run's results can be reused: the copy must then be harmless."""
    upstream, mirror = registries(), registries()
    old = push_oci_image(f"{upstream.address}/team/app:1", "old")
    configure(rule_runner, mirror)
    runs = iter(range(1, 100))

    def copy(image: OciImage, seen: str | None) -> TagOutcome:
        """The copy rule's copy of `image` to the mirror's `mirror/team/app:1`, which served
        `seen` when it was checked; a process of its own each time (another run id)."""
        request = CopyImageRequest(
            f"{upstream.address}/team/app", image.index, f"{mirror.address}/mirror/team/app", Plan(),
            next(runs), tags=(TagCopy("1", seen),),
        )  # fmt: skip
        result = rule_runner.request(CopyResult, [request])
        assert result.ok, result
        (tag,) = result.tags
        return tag

    assert copy(old, None).outcome == "copied"
    assert mirror.manifest_digest("mirror/team/app", "1") == old.index

    # Run again: the destination already serves the digest, so nothing is written.
    seen = len(mirror.access_log())
    assert copy(old, None).outcome == "up_to_date"
    new_requests = mirror.settled_access_log()[seen:]
    assert new_requests, "the copy read the destination"
    assert not [line for line in new_requests if not line.split('"')[1].startswith(("GET ", "HEAD "))], new_requests

    # A newer copy lands; the old one, run again, refuses to overwrite it.
    new = push_oci_image(f"{upstream.address}/team/app:1", "new")
    assert copy(new, old.index).outcome == "copied"
    stale = copy(old, None)
    assert stale.outcome == "changed" and "changed since it was checked" in (stale.message or ""), stale
    assert mirror.manifest_digest("mirror/team/app", "1") == new.index


def test_one_image_reads_its_whole_generator_sources_and_destinations_in_one_go(
    rule_runner: RuleRunner, registries: Callable[..., Registry]
) -> None:
    """Packaging one image reads what every image of its generator needs, by HEAD, in one probe
    process, so packaging the others asks no registry again; `publish` decides from those reads."""
    upstream, mirror = registries(), registries()
    pushed = {
        name: push_oci_image(f"{upstream.address}/team/{name}:1", name) for name in ("a", "b", "c")
    }
    configure(rule_runner, mirror)
    mirror_spec(
        rule_runner,
        "".join(f"{upstream.address}/team/{name}:1 AS {name}\n" for name in pushed),
        registries="['@mirror', '@archive']",
    )
    seen = len(upstream.access_log()), len(mirror.access_log())
    reads = rule_runner.request(RegistryReads, [GeneratorReadsRequest(Address("src", target_name="m"))])

    # Every source and every destination to be written (not `skip_push` ones), read once.
    assert set(reads.by_reference) == {
        *(f"{upstream.address}/team/{name}:1" for name in pushed),
        *(f"{mirror.address}/mirror/team/{name}:1" for name in pushed),
    }
    for name, image in pushed.items():
        assert reads.served_digest(f"{upstream.address}/team/{name}:1") == image.index
        assert reads.served_digest(f"{mirror.address}/mirror/team/{name}:1") is None
    upstream_requests = [
        tuple(line.split('"')[1].split()[:2]) for line in upstream.settled_access_log()[seen[0]:]
    ]
    mirror_requests = [tuple(line.split('"')[1].split()[:2]) for line in mirror.settled_access_log()[seen[1]:]]
    # At the source: each tag, by HEAD; each repository's tag list, which names no cosign tag
    # or fallback tag (nothing refers to these images), so none gets a HEAD; the referrers API's
    # list is asked once, and this registry, which has no API, answers 404. At the mirror: each
    # tag, by HEAD.
    assert sorted(upstream_requests) == sorted(
        [
            *(("HEAD", f"/v2/team/{name}/manifests/1") for name in pushed),
            *(("GET", f"/v2/team/{name}/tags/list?n=1000") for name in pushed),
            *(
                ("GET", f"/v2/team/{name}/referrers/{image.index}")
                for name, image in pushed.items()
                if ("GET", f"/v2/team/{name}/referrers/{image.index}") in upstream_requests
            ),
        ]
    ), upstream_requests
    assert len([path for _, path in upstream_requests if "/referrers/" in path]) == 1, upstream_requests
    assert sorted(mirror_requests) == [("HEAD", f"/v2/mirror/team/{name}/manifests/1") for name in "abc"]

    # The package carries what the destination served; a first publish copies (and skips the
    # `skip_push` registry).
    _, jobs = package_and_publish(rule_runner, "b")
    assert [outcome(rule_runner, job) for job in jobs] == ["skipped", "published"]
    assert mirror.manifest_digest("mirror/team/b", "1") == pushed["b"].index
