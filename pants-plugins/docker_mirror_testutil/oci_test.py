"""Tests for docker_mirror_testutil.oci: JSON as Go writes it, descriptors, digest tags."""

from __future__ import annotations

import hashlib
import json

import pytest
from docker_mirror_testutil.oci import descriptor, digest_tag, go_json

HEX = "ab" * 32


def test_go_json_is_compact_utf8_with_go_s_html_escapes() -> None:
    value = {"b": "x<y>&z", "a": ["é", "\u2028"], "n": None, "i": 2}
    # Field order is kept (Go writes a struct's fields in their declared order).
    assert go_json(value) == (
        '{"b":"x\\u003cy\\u003e\\u0026z","a":["é","\\u2028"],"n":null,"i":2}'.encode()
    )
    assert json.loads(go_json(value)) == value


def test_a_descriptor_names_its_content_in_go_containerregistry_s_field_order() -> None:
    content = b'{"a":1}'
    digest = f"sha256:{hashlib.sha256(content).hexdigest()}"
    assert list(descriptor("application/x", content).items()) == [
        ("mediaType", "application/x"), ("size", 7), ("digest", digest)
    ]
    annotated = descriptor("application/x", content, {"z": "1", "a": "2"})
    assert list(annotated["annotations"]) == ["a", "z"]  # a Go map: sorted
    assert "annotations" not in descriptor("application/x", content, {})


def test_digest_tags_are_cosign_s_and_the_referrers_fallback_tag() -> None:
    assert digest_tag(f"sha256:{HEX}") == f"sha256-{HEX}"
    assert digest_tag(f"sha256:{HEX}", "sig") == f"sha256-{HEX}.sig"
    with pytest.raises(ValueError, match="not a digest"):
        digest_tag(HEX)
