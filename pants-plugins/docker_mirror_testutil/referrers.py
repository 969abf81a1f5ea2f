"""OCI 1.1 referrers, made offline and pushed through the registry API as a client that follows
the distribution spec (v1.1, "Pushing Manifests with Subject", "Referrers Tag Schema") does, as
`oras attach` does: an artifact manifest with a `subject` is pushed; if the registry does not
answer with `OCI-Subject` (it has no referrers API, as `docker-registry` 2.8), the artifact's
descriptor is added to the image index tagged `sha256-<hex>` (the fallback tag), merged with what
that index already lists. And `listed_referrers`, which reads a digest's referrers back as a
client does: the referrers API, or the fallback tag where the API answers 404.

Plain stdlib, so that `benchmarks/` can use it without pytest.
"""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping, Optional

from docker_mirror_testutil.oci import OCI_EMPTY, descriptor, digest_tag, go_json, parse_json_object
from docker_mirror_testutil.registries import Registry
from docker_mirror.oci.manifests import INDEX_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST

SPDX_JSON = "application/spdx+json"
CREATED_ANNOTATION = "org.opencontainers.image.created"
TITLE_ANNOTATION = "org.opencontainers.image.title"
EMPTY_CONFIG = b"{}"


class ReferrersIndexError(Exception):
    """The fallback tag serves something that is not an image index: it cannot be merged into."""


def referrer_descriptor(manifest: bytes, media_type: Optional[str] = None) -> dict[str, Any]:
    """How the referrers list (the API's answer, or the fallback index) describes the manifest
    `manifest`, as the distribution spec says: its media type, digest and size; `artifactType`
    its own, or for an image manifest without one its config's media type; its annotations."""
    document = parse_json_object(manifest, "the manifest")
    media_type = document.get("mediaType") or media_type or OCI_MANIFEST
    entry = {
        key: value
        for key, value in descriptor(media_type, manifest).items()
        if key != "annotations"
    }
    artifact_type = document.get("artifactType") or (
        None if media_type in INDEX_MEDIA_TYPES else (document.get("config") or {}).get("mediaType")
    )
    if artifact_type:
        entry["artifactType"] = artifact_type
    if document.get("annotations"):
        entry["annotations"] = dict(sorted(document["annotations"].items()))
    return entry


def subject_of(manifest: bytes) -> Optional[str]:
    """The digest `manifest`'s `subject` names, if it has one."""
    try:
        subject = json.loads(manifest).get("subject")
    except (ValueError, AttributeError):
        return None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    return digest if isinstance(digest, str) else None


def spdx_document(name: str) -> bytes:
    """A small SPDX 2.3 JSON document naming one package, `name`."""
    return go_json(
        {
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": name,
            "documentNamespace": f"https://spdx.example.invalid/{name}",
            "creationInfo": {"created": "2024-01-01T00:00:00Z", "creators": ["Tool: testutil"]},
            "packages": [
                {"SPDXID": "SPDXRef-Package", "name": name, "downloadLocation": "NOASSERTION"}
            ],
        }
    )


def attach_artifact(
    registry: Registry,
    repository: str,
    subject: str,
    artifact_type: Optional[str],
    content: bytes,
    content_media_type: str,
    *,
    annotations: Optional[Mapping[str, str]] = None,
) -> dict[str, Any]:
    """Pushes an OCI 1.1 artifact about `repository@subject`: an image manifest with
    `artifactType` (unless None), the empty config, one layer (`content`) and a `subject`, under
    its digest;
    then, unless the registry answered `OCI-Subject`, adds it to the fallback tag. `annotations`
    default to a creation time, as `oras attach` writes. Returns its referrer descriptor."""
    subject_manifest, subject_media_type = registry.manifest(repository, subject)
    registry.put_blob(repository, EMPTY_CONFIG)
    registry.put_blob(repository, content)
    if annotations is None:
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        annotations = {CREATED_ANNOTATION: now.isoformat().replace("+00:00", "Z")}
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        **({"artifactType": artifact_type} if artifact_type else {}),
        "config": {**descriptor(OCI_EMPTY, EMPTY_CONFIG), "data": "e30="},
        "layers": [descriptor(content_media_type, content)],
        "subject": {
            "mediaType": subject_media_type,
            "size": len(subject_manifest),
            "digest": subject,
        },
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    body = go_json(manifest)
    entry = referrer_descriptor(body)
    answer = registry.put_manifest(repository, entry["digest"], body, OCI_MANIFEST)
    if answer.get("OCI-Subject") != subject:
        add_to_fallback_index(registry, repository, subject, entry)
    return entry


def attach_spdx_sbom(
    registry: Registry, repository: str, subject: str, *, name: str = "testutil"
) -> dict[str, Any]:
    """An SPDX SBOM attached to `repository@subject` as an OCI 1.1 artifact (`artifactType`
    `application/spdx+json`), as `oras attach --artifact-type application/spdx+json` does."""
    return attach_artifact(
        registry, repository, subject, SPDX_JSON, spdx_document(name), SPDX_JSON,
        annotations={
            CREATED_ANNOTATION: "2024-01-01T00:00:00Z",
            TITLE_ANNOTATION: f"{name}.spdx.json",
        },
    )


def _fallback_index(registry: Registry, repository: str, subject: str) -> list[dict[str, Any]]:
    """The entries of the fallback index of `subject`; none if the tag does not exist."""
    tag = digest_tag(subject)
    try:
        body, media_type = registry.manifest(repository, tag)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return []
        raise
    if media_type != OCI_INDEX:
        raise ReferrersIndexError(
            f"{registry.address}/{repository}:{tag} serves {media_type}, not an image index"
        )
    manifests = parse_json_object(body, f"{repository}:{tag}").get("manifests")
    return list(manifests) if isinstance(manifests, list) else []


def add_to_fallback_index(
    registry: Registry, repository: str, subject: str, *entries: Mapping[str, Any]
) -> str:
    """Adds `entries` (referrer descriptors) to the fallback index of `subject` as the spec
    says: what it lists is kept, an entry it lists already is not added twice. Returns the
    index's new digest."""
    manifests = _fallback_index(registry, repository, subject)
    listed = {entry.get("digest") for entry in manifests}
    for entry in entries:
        if entry["digest"] not in listed:
            manifests.append(dict(entry))
            listed.add(entry["digest"])
    index = go_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    registry.put_manifest(repository, digest_tag(subject), index, OCI_INDEX)
    return descriptor(OCI_INDEX, index)["digest"]


def referrers_api(
    registry: Registry, repository: str, subject: str, artifact_type: Optional[str] = None
) -> Optional[tuple[list[dict[str, Any]], Optional[str]]]:
    """What `GET /v2/<repository>/referrers/<subject>` lists, and its `OCI-Filters-Applied`
    header; None if the registry answers 404 (it has no referrers API)."""
    query = f"?artifactType={urllib.parse.quote(artifact_type, safe='')}" if artifact_type else ""
    try:
        with urllib.request.urlopen(
            f"http://{registry.address}/v2/{repository}/referrers/{subject}{query}", timeout=10
        ) as response:
            if response.headers["Content-Type"] != OCI_INDEX:
                raise ValueError(f"the referrers API answered {response.headers['Content-Type']}")
            index = parse_json_object(response.read(), "the referrers API's answer")
            return list(index["manifests"]), response.headers["OCI-Filters-Applied"]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def listed_referrers(registry: Registry, repository: str, subject: str) -> list[dict[str, Any]]:
    """The referrers of `repository@subject` as a client finds them: from the referrers API, or,
    where it answers 404, from the fallback tag."""
    listed = referrers_api(registry, repository, subject)
    if listed is not None:
        return listed[0]
    return _fallback_index(registry, repository, subject)
