"""The probe's reference grammar is `docker_mirror.image_reference`'s."""

from __future__ import annotations

from typing import Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docker_mirror.image_reference import ImageReference
from docker_mirror.probe.reference import InvalidReference, Reference
from docker_mirror.testutil.spec_strategies import GeneratedReference, references


def _plugin_reads(text: str) -> Optional[Tuple[str, str, Optional[str], Optional[str]]]:
    try:
        parsed = ImageReference.parse(text)
    except ValueError:
        return None
    return parsed.registry_host, parsed.repository, parsed.tag, parsed.digest


def _probe_reads(text: str) -> Optional[Tuple[str, str, Optional[str], Optional[str]]]:
    try:
        parsed = Reference.parse(text)
    except InvalidReference:
        return None
    return parsed.registry, parsed.repository, parsed.tag, parsed.digest


@settings(max_examples=150, deadline=None)
@given(references())
def test_valid_references_are_read_alike(reference: GeneratedReference) -> None:
    assert _probe_reads(reference.text) == _plugin_reads(reference.text) is not None


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="aA0._-:/@[]sha256bcdef:x ", max_size=40))
def test_any_text_is_accepted_or_refused_alike(text: str) -> None:
    assert _probe_reads(text) == _plugin_reads(text)


@pytest.mark.parametrize(
    "text",
    ["a_b.c/d", "[zz]:5000/x", "x" * 256, "-x", "UPPER", "a/b:", "a@sha256:abc", "a b", "a:b\n"],
)
def test_refused(text: str) -> None:
    assert _probe_reads(text) is None and _plugin_reads(text) is None


@pytest.mark.parametrize(
    "text, endpoint, path",
    [
        ("python", "registry-1.docker.io", "/v2/library/python/manifests/latest"),
        ("python:3.12", "registry-1.docker.io", "/v2/library/python/manifests/3.12"),
        ("docker.io/bitnami/redis:7", "registry-1.docker.io", "/v2/bitnami/redis/manifests/7"),
        ("index.docker.io/python:3", "registry-1.docker.io", "/v2/library/python/manifests/3"),
        ("ghcr.io/team/app:1", "ghcr.io", "/v2/team/app/manifests/1"),
        ("localhost:5000/app", "localhost:5000", "/v2/app/manifests/latest"),
        (f"ghcr.io/app:1@sha256:{'a' * 64}", "ghcr.io", f"/v2/app/manifests/sha256:{'a' * 64}"),
    ],
)
def test_where_a_reference_is_asked_for(text: str, endpoint: str, path: str) -> None:
    reference = Reference.parse(text)
    assert (reference.endpoint, reference.manifest_path) == (endpoint, path)


def test_docker_hub_is_named_docker_io() -> None:
    assert Reference.parse("python").registry == "docker.io"
    assert Reference.parse("python").shown == "python:latest"
