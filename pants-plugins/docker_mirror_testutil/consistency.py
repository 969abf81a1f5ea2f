"""What a destination registry serves after a fault, checked through the registry API itself:
every tag either serves the source's digest with every blob it needs present, or does not
exist; a tag that was there before the run is unchanged unless it now serves the source's
digest. Counts what it checked (`FIGURES`), for the fault tests' note."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections import Counter
from typing import Dict, Mapping, Optional, Tuple

from docker_mirror_testutil.registries import MANIFEST_MEDIA_TYPES, Registry

# Tags checked, blobs fetched, blobs missing (or not matching their digest), tags overwritten
# wrongly, over every call in the session.
FIGURES: Counter = Counter()

Tag = Tuple[str, str]  # (repository, tag)
# In `sources`: any digest is the source's (build mode pushes a new image, under a new digest).
BUILT = "built"


def _get(address: str, path: str, accept: Optional[str] = None) -> Tuple[int, bytes, str]:
    request = urllib.request.Request(
        f"http://{address}/v2/{path}", headers={"Accept": accept} if accept else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, b"", ""


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _check_manifest(address: str, repository: str, digest: str, problems: list) -> None:
    """The manifest `digest` and, recursively, everything it references, fetched in full."""
    status, body, _ = _get(address, f"{repository}/manifests/{digest}", MANIFEST_MEDIA_TYPES)
    if status != 200 or _sha256(body) != digest:
        problems.append(f"{repository}@{digest}: manifest missing or corrupt (HTTP {status})")
        FIGURES["blobs_missing"] += 1
        return
    manifest = json.loads(body)
    for child in manifest.get("manifests") or []:
        _check_manifest(address, repository, child["digest"], problems)
    blobs = ([manifest["config"]] if "config" in manifest else []) + (manifest.get("layers") or [])
    for blob in blobs:
        FIGURES["blobs_fetched"] += 1
        status, data, _ = _get(address, f"{repository}/blobs/{blob['digest']}")
        if status != 200 or _sha256(data) != blob["digest"] or len(data) != blob["size"]:
            FIGURES["blobs_missing"] += 1
            problems.append(f"{repository}: blob {blob['digest']} missing or corrupt (HTTP {status})")


def destination_tags(registry: Registry) -> Dict[Tag, str]:
    """Every tag of every repository the registry has, and the digest it serves."""
    served = {}
    for repository in registry.repositories():
        for tag in registry.tags(repository):
            digest = registry.manifest_digest(repository, tag)
            if digest is not None:
                served[(repository, tag)] = digest
    return served


def assert_destination_consistent(
    registry: Registry,
    sources: Mapping[Tag, str],
    before: Mapping[Tag, str] = {},
    *,
    must_exist: Tuple[Tag, ...] = (),
) -> Dict[Tag, str]:
    """Checks every tag the destination serves now:

    - a tag the run mirrors (in `sources`: tag -> the source's digest) serves that digest, or
      still serves what it served before the run (`before`), or does not exist (`BUILT`: a
      digest the run made, for a tag that was not there before);
    - any other tag serves exactly what it served before;
    - every manifest and blob the tag needs is there, byte for byte (each blob is fetched).

    `must_exist` are tags that must serve their source digest. Returns the tags served."""
    problems: list = []
    now = destination_tags(registry)
    for tag in set(before) - set(now):
        problems.append(f"{tag[0]}:{tag[1]}: was there before the run, now gone")
    for tag, digest in sorted(now.items()):
        FIGURES["tags_checked"] += 1
        allowed = {sources.get(tag), before.get(tag)} - {None}
        if digest not in allowed and not (sources.get(tag) == BUILT and tag not in before):
            FIGURES["tags_overwritten_wrongly"] += 1
            problems.append(
                f"{tag[0]}:{tag[1]} serves {digest}, neither the source's ({sources.get(tag)}) "
                f"nor what it served before ({before.get(tag)})"
            )
        _check_manifest(registry.address, tag[0], digest, problems)
    for tag in must_exist:
        if now.get(tag) is None or (sources[tag] != BUILT and now[tag] != sources[tag]):
            problems.append(f"{tag[0]}:{tag[1]} serves {now.get(tag)}, not {sources[tag]}")
    assert not problems, "destination inconsistent:\n" + "\n".join(problems)
    return now
