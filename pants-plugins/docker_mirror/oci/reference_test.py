"""The image-reference grammar's one home: the host rule, Docker Hub, pins, platforms."""

from __future__ import annotations

from typing import Optional, Tuple

import pytest
from docker_mirror.oci.reference import (
    DOCKER_HUB,
    ImageReference,
    InvalidReference,
    normalized_platform,
    parse_reference,
    registry_host,
    split_platform,
)

DIGEST = "sha256:" + "ab" * 32


def test_registry_host_follows_the_reference_grammar() -> None:
    assert registry_host("python:3.12") == DOCKER_HUB
    assert registry_host("bitnami/redis:7") == DOCKER_HUB
    assert registry_host("localhost/x:1") == "localhost"
    assert registry_host("127.0.0.1:5000/team/app:1") == "127.0.0.1:5000"
    assert registry_host("ghcr.io/org/app@" + DIGEST) == "ghcr.io"


@pytest.mark.parametrize(
    "text",
    ["python:3.12", "bitnami/redis:7", "localhost/x:1", "127.0.0.1:5000/team/app:1", "[::1]:5000/a:b"],
)
def test_a_parsed_reference_names_the_same_registry(text: str) -> None:
    assert ImageReference.parse(text).registry_host == registry_host(text)


def test_what_a_registry_is_asked_for() -> None:
    assert ImageReference.parse("python").manifest_reference == "python:latest"
    assert ImageReference.parse("python:3.12").manifest_reference == "python:3.12"
    # A digest wins over the tag beside it: the tag is then only a label.
    assert ImageReference.parse(f"ghcr.io/org/app:1@{DIGEST}").manifest_reference == (
        f"ghcr.io/org/app@{DIGEST}"
    )
    assert ImageReference.parse("ghcr.io/org/app:1").pinned(DIGEST) == f"ghcr.io/org/app@{DIGEST}"


def test_platforms_compare_as_docker_compares_them() -> None:
    assert split_platform("linux/arm/v7") == ("linux", "arm", "v7")
    assert split_platform("linux/amd64") == ("linux", "amd64", None)
    assert normalized_platform("linux/arm64/v8") == normalized_platform("linux/arm64")
    assert normalized_platform("linux/arm") == normalized_platform("linux/arm/v7")
    assert normalized_platform("linux/amd64/v1") == normalized_platform("linux/amd64")
    assert normalized_platform("linux/arm/v6") != normalized_platform("linux/arm/v7")


# The grammar as distribution/reference has it (issue 18, defects 3 and 4), with the inputs of
# its own tests.
IMAGE_ID = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"


@pytest.mark.parametrize(
    "text, registry, repository",
    [("LOCALDOMAIN/debian", "LOCALDOMAIN", "debian"), ("Docker/docker", "Docker", "docker")],
)
def test_an_upper_case_first_component_is_a_registry_host(
    text: str, registry: str, repository: str
) -> None:
    reference = ImageReference.parse(text)
    assert (reference.registry, reference.repository, str(reference)) == (registry, repository, text)
    assert registry_host(text) == registry


def test_the_length_limit_is_on_the_path_without_the_domain() -> None:
    text = "example.com/" + "a" * 255 + ":tag"
    reference = ImageReference.parse(text)
    assert (reference.registry, len(reference.repository), str(reference)) == ("example.com", 255, text)
    with pytest.raises(ValueError, match="image path is 256 characters long"):
        ImageReference.parse("example.com/" + "a" * 256 + ":tag")
    # As Docker counts it: `library/` included for a Docker Hub name without a namespace.
    ImageReference.parse("a" * 247)
    with pytest.raises(ValueError, match='image path is 258 characters long .with the "library/"'):
        ImageReference.parse("a" * 250)


def test_a_bare_64_hex_name_is_refused_as_an_image_id() -> None:
    with pytest.raises(ValueError) as info:
        ImageReference.parse(IMAGE_ID)
    assert str(info.value).startswith(f'"{IMAGE_ID}" looks like an image ID (64 hex digits)')
    # Only alone: with a host, a namespace or a tag it is a name like any other.
    for text in (f"docker.io/{IMAGE_ID}", f"library/{IMAGE_ID}", f"{IMAGE_ID}:latest"):
        assert str(ImageReference.parse(text)) == text


def test_one_image_under_every_spelling_docker_reads_as_it() -> None:
    spellings = ["nginx", "nginx:latest", "library/nginx", "docker.io/library/nginx:latest",
                 "docker.io/nginx", "index.docker.io/library/nginx"]  # fmt: skip
    identities = {ImageReference.parse(text).identity for text in spellings}
    assert [str(identity) for identity in identities] == ["docker.io/library/nginx:latest"]
    assert [identity.familiar for identity in identities] == ["nginx:latest"]


@pytest.mark.parametrize(
    "first, second",
    [
        ("nginx:1.25", "nginx:1.26"),
        # A digest decides what is fetched, and a tag beside it what is pushed: two images.
        (f"nginx:1.25@{DIGEST}", f"nginx@{DIGEST}"),
        (f"nginx@{DIGEST}", "nginx"),
        ("nginx:1.25", f"nginx:1.25@{DIGEST}"),
        # Hosts as Docker compares them: only `docker.io` and `index.docker.io` are Docker Hub.
        ("nginx", "registry-1.docker.io/library/nginx"),
        ("ghcr.io/nginx", "nginx"),
        ("library/nginx", "library/library/nginx"),
    ],
)
def test_different_images(first: str, second: str) -> None:
    assert ImageReference.parse(first).identity != ImageReference.parse(second).identity


def test_what_a_pinned_line_follows() -> None:
    pinned = ImageReference.parse(f"docker.io/library/nginx:1.25@{DIGEST}").identity
    assert pinned.without_digest() == ImageReference.parse("nginx:1.25").identity
    assert pinned.without_digest().familiar == "nginx:1.25"
    assert ImageReference.parse(f"ghcr.io/org/app@{DIGEST}").identity.without_digest().familiar == (
        "ghcr.io/org/app"
    )


# Where the registry probe asks for a reference: its registry API endpoint and manifest path.


def _probe_reads(text: str) -> Optional[Tuple[str, str, Optional[str], Optional[str]]]:
    try:
        parsed = parse_reference(text)
    except InvalidReference:
        return None
    return parsed.registry_host, parsed.repository, parsed.tag, parsed.digest


@pytest.mark.parametrize(
    "text",
    [
        "a_b.c/d", "[zz]:5000/x", "x" * 248, "-x", "UPPER", "a/b:", "a@sha256:abc", "a b", "a:b\n",
        "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    ],  # fmt: skip
)
def test_the_probe_refuses(text: str) -> None:
    assert _probe_reads(text) is None


@pytest.mark.parametrize(
    "text, endpoint, path",
    [
        ("python", "registry-1.docker.io", "/v2/library/python/manifests/latest"),
        ("python:3.12", "registry-1.docker.io", "/v2/library/python/manifests/3.12"),
        ("docker.io/bitnami/redis:7", "registry-1.docker.io", "/v2/bitnami/redis/manifests/7"),
        ("index.docker.io/python:3", "registry-1.docker.io", "/v2/library/python/manifests/3"),
        ("ghcr.io/team/app:1", "ghcr.io", "/v2/team/app/manifests/1"),
        ("localhost:5000/app", "localhost:5000", "/v2/app/manifests/latest"),
        # An upper-case first component is a host, as Docker reads it.
        ("LOCALDOMAIN/debian", "LOCALDOMAIN", "/v2/debian/manifests/latest"),
        (f"ghcr.io/app:1@sha256:{'a' * 64}", "ghcr.io", f"/v2/app/manifests/sha256:{'a' * 64}"),
    ],
)
def test_where_a_reference_is_asked_for(text: str, endpoint: str, path: str) -> None:
    reference = parse_reference(text)
    assert (reference.endpoint, reference.manifest_path) == (endpoint, path)


def test_docker_hub_is_named_docker_io() -> None:
    assert parse_reference("python").registry_host == "docker.io"
    assert parse_reference("python").shown == "python:latest"
