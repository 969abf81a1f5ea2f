"""Where the probe asks for a reference: its registry API endpoint and manifest path."""

from __future__ import annotations

from typing import Optional, Tuple

import pytest
from docker_mirror.probe.reference import InvalidReference, Reference


def _probe_reads(text: str) -> Optional[Tuple[str, str, Optional[str], Optional[str]]]:
    try:
        parsed = Reference.parse(text)
    except InvalidReference:
        return None
    return parsed.registry, parsed.repository, parsed.tag, parsed.digest


@pytest.mark.parametrize(
    "text",
    [
        "a_b.c/d", "[zz]:5000/x", "x" * 248, "-x", "UPPER", "a/b:", "a@sha256:abc", "a b", "a:b\n",
        "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    ],  # fmt: skip
)
def test_refused(text: str) -> None:
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
    reference = Reference.parse(text)
    assert (reference.endpoint, reference.manifest_path) == (endpoint, path)


def test_docker_hub_is_named_docker_io() -> None:
    assert Reference.parse("python").registry == "docker.io"
    assert Reference.parse("python").shown == "python:latest"
