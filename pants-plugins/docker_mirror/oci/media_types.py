"""Every media type the mirror reads or writes, and the digest pattern, defined once."""

from __future__ import annotations

import re

# Manifests.
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
INDEX_MEDIA_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
# What a manifest request accepts: every current manifest type, indexes first.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
# Referrer manifests are OCI manifests, and artifact manifests of older writers.
OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"
REFERRER_ACCEPT = f"{MANIFEST_ACCEPT}, {OCI_ARTIFACT_MANIFEST}"

# Signatures, attestations and SBOMs (cosign, Sigstore, in-toto, Notary, SPDX, CycloneDX, Syft).
COSIGN_SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_ATTESTATION_ARTIFACT = "application/vnd.dev.cosign.artifact.att.v1+json"
COSIGN_SBOM_ARTIFACT = "application/vnd.dev.cosign.artifact.sbom.v1+json"
SIGSTORE_BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"
NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"
IN_TOTO = "application/vnd.in-toto+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
SPDX_JSON = "text/spdx+json"
SPDX = "text/spdx"
SPDX_JSON_APPLICATION = "application/spdx+json"
SPDX_JSON_APPLICATION = "application/spdx+json"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
CYCLONEDX_XML = "application/vnd.cyclonedx+xml"
SYFT_JSON = "application/vnd.syft+json"
# A Sigstore bundle referrer names its in-toto predicate in this annotation; cosign v3's own
# signatures carry this predicate.
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

# The only digest algorithm the mirror accepts, as a pattern to `fullmatch`.
DIGEST_SOURCE = r"sha256:[0-9a-f]{64}"
DIGEST = re.compile(DIGEST_SOURCE, re.ASCII)
