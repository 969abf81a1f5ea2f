"""OCI documents as the Go clients that push signatures and referrers write them (cosign through
go-containerregistry, oras), for the test artifacts of `cosign.py` and `referrers.py`.

Plain stdlib, so that `benchmarks/` can use it without pytest.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from docker_mirror.oci.manifests import digest_of

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
# The image spec's empty descriptor (v1.1): the config of an artifact that has none, `{}`.
OCI_EMPTY = "application/vnd.oci.empty.v1+json"


def go_json(value: Any) -> bytes:
    """`value` as Go's `json.Marshal` writes it: compact, UTF-8, with `<`, `>`, `&`, U+2028 and
    U+2029 escaped. Go writes a struct's fields in their declared order and a map's keys sorted:
    build dicts in field order, and sort the ones that stand for maps (annotations)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode()


def descriptor(
    media_type: str, content: bytes, annotations: Optional[Mapping[str, str]] = None
) -> dict[str, Any]:
    """A descriptor of `content`, fields in go-containerregistry's order (`annotations` only
    when there are some, sorted as Go writes a map)."""
    fields: dict[str, Any] = {
        "mediaType": media_type,
        "size": len(content),
        "digest": digest_of(content),
    }
    if annotations:
        fields["annotations"] = dict(sorted(annotations.items()))
    return fields


def digest_tag(digest: str, suffix: str = "") -> str:
    """The tag that names what is attached to `digest` in a tag scheme: `sha256-<hex>` (the OCI
    1.1 referrers fallback tag) or `sha256-<hex>.<suffix>` (cosign's `.sig`, `.att`, `.sbom`)."""
    algorithm, _, encoded = digest.partition(":")
    if not algorithm or not encoded:
        raise ValueError(f"not a digest: {digest!r}")
    return f"{algorithm}-{encoded}" + (f".{suffix}" if suffix else "")


def parse_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object, or a ValueError naming `what` it should have been."""
    document = json.loads(raw)
    if not isinstance(document, dict):
        raise ValueError(f"{what} is not a JSON object")
    return document

