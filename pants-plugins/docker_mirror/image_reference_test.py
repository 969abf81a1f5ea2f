"""The image-reference grammar's one home: the host rule, Docker Hub, pins, platforms."""

from __future__ import annotations

import pytest
from docker_mirror.image_reference import (
    DOCKER_HUB,
    ImageReference,
    normalized_platform,
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
