"""Images made offline (no Docker Hub) and pushed to loopback registries."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field

from docker_mirror_testutil.machine import SCRIPTS, require_skopeo


def make_image(reference: str, label: str | None = None) -> str:
    """Pushes a tiny image made offline to `reference`; returns its manifest digest."""
    result = subprocess.run(
        [SCRIPTS / "make-image", reference, label or reference],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@dataclass(frozen=True)
class OciImage:
    """A multi-platform image made by `scripts/make-oci-image`: its index and manifest digests,
    by platform; with attestations, the digests of their attestation manifests, by the platform
    each is about."""

    index: str
    manifests: dict[str, str]
    attestations: dict[str, str] = field(default_factory=dict)


def push_oci_image(
    reference: str, label: str, *platforms: str, attestations: bool = False
) -> OciImage:
    """Makes a multi-platform image offline (no Docker engine) and pushes it to `reference` on
    a loopback registry with every platform and digest kept. With `attestations`, its index also
    holds an attestation manifest per platform, as BuildKit stores its provenance and SBOM
    (`unknown/unknown` entries; see `scripts/make-oci-image`)."""
    require_skopeo()
    with tempfile.TemporaryDirectory() as layout:
        made = subprocess.run(
            [
                SCRIPTS / "make-oci-image",
                *(["--attestations"] if attestations else []),
                layout,
                label,
                *platforms,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        subprocess.run(
            ["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
             f"oci:{layout}", f"docker://{reference}"],
            capture_output=True,
            check=True,
        )
    image = json.loads(made.stdout)
    return OciImage(image["index"], image["manifests"], image["attestations"])
