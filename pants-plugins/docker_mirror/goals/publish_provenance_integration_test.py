"""End to end: with `[docker-mirror].provenance_key`, the real `./pants publish` attests each image
it mirrors at the destination, as `cosign attest` would (a DSSE envelope of a SLSA provenance v1
statement appended to the `.att` tag), checked here by the test kit's own verifier
(`cryptography`, not the plugin's code); upstream signatures and attestations are kept; an image
mirrored before the key gets its attestation on the next run; a no-op writes nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from docker_mirror_testutil import cosign
from docker_mirror_testutil.images import push_oci_image
from docker_mirror_testutil.oci import digest_tag
from docker_mirror_testutil.pants_repo import NO_DOCKER, PantsRepo
from docker_mirror_testutil.registries import Registry, writes

SLSA_V1 = "https://slsa.dev/provenance/v1"
BUILD = "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy', require_signature=['//keys/cosign.pub'])\n"
KEY_OPTION = "--docker-mirror-provenance-key=keys/mirror.key"


def write_key(root: Path) -> bytes:
    """A fresh P-256 key as `openssl pkcs8 -nocrypt` writes it, readable by its owner only;
    its public key's PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = root / "keys" / "mirror.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip
    os.chmod(path, 0o600)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def provenance(mirror: Registry, repository: str, digest: str, public_pem: bytes) -> dict[str, Any]:
    """The one SLSA v1 statement about `digest` in its `.att` tag that verifies against the key."""
    statements = [s for s in cosign.verify_attestation(mirror, repository, digest, public_pem) if s["predicateType"] == SLSA_V1]
    assert len(statements) == 1, statements
    return statements[0]


def test_each_mirrored_image_is_attested_once_with_the_mirrors_key(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    upstream, mirror = registries(), registries()
    signer = cosign.generate_key()
    app = push_oci_image(f"{upstream.address}/team/app:1", "attested app", "linux/amd64", "linux/arm64")
    signature = cosign.sign(upstream, "team/app", app.index, signer)
    upstream_attestation = cosign.attest(upstream, "team/app", app.index, signer)
    old = push_oci_image(f"{upstream.address}/team/old:1", "mirrored before the key")
    cosign.sign(upstream, "team/old", old.index, signer)
    public_pem = write_key(pants_repo.root)
    pants_repo.write(
        {"keys/cosign.pub": cosign.public_key_pem(signer).decode(), "src/BUILD": BUILD,
         "src/images.txt": f"{upstream.address}/team/old:1\n"}  # fmt: skip
    )

    # Mirrored before there is a key: no attestation of the mirror's.
    before = pants_repo.pants("publish", "src::", registry=mirror, env=NO_DOCKER)
    assert before.returncode == 0, before
    assert mirror.manifest_digest("mirror/team/old", digest_tag(old.index, "att")) is None

    pants_repo.write({"src/images.txt": f"{upstream.address}/team/old:1\n{upstream.address}/team/app:1\n"})
    result = pants_repo.pants("publish", "src::", KEY_OPTION, registry=mirror, env=NO_DOCKER)
    assert result.returncode == 0, result
    assert "provenance attested" in result.stderr, result
    assert "BEGIN PRIVATE KEY" not in result.stderr + result.stdout

    statement = provenance(mirror, "mirror/team/app", app.index, public_pem)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": f"{mirror.address}/mirror/team/app", "digest": {"sha256": app.index[7:]}}]
    definition, run = statement["predicate"]["buildDefinition"], statement["predicate"]["runDetails"]
    assert definition["externalParameters"] == {
        "source": f"{upstream.address}/team/app:1", "destination": f"{mirror.address}/mirror/team/app"
    }
    assert definition["resolvedDependencies"] == [{"uri": f"{upstream.address}/team/app:1", "digest": {"sha256": app.index[7:]}}]
    assert definition["buildType"] and run["builder"]["id"]
    assert run["metadata"]["startedOn"] <= run["metadata"]["finishedOn"]
    assert run["byproducts"] == [{"name": "require_signature", "annotations": {"verifiedBy": "keys/cosign.pub"}}]
    # The upstream signature and attestation are kept: the `.att` tag holds upstream's layer and ours.
    assert mirror.manifest_digest("mirror/team/app", digest_tag(app.index, "sig")) == signature
    upstream_layers = [layer["digest"] for layer in cosign._layers(upstream, "team/app", digest_tag(app.index, "att"))]
    mirror_layers = [layer["digest"] for layer in cosign._layers(mirror, "mirror/team/app", digest_tag(app.index, "att"))]
    assert mirror_layers[: len(upstream_layers)] == upstream_layers and len(mirror_layers) == len(upstream_layers) + 1
    assert upstream_attestation  # what the source's `.att` tag served
    cosign.verify_attestation(mirror, "mirror/team/app", app.index, cosign.public_key_pem(signer))

    # The image mirrored before the key got its attestation on this run, the image itself untouched.
    assert provenance(mirror, "mirror/team/old", old.index, public_pem)["subject"][0]["digest"] == {"sha256": old.index[7:]}

    # A no-op writes nothing; a key file others may read is warned about.
    (pants_repo.root / "keys" / "mirror.key").chmod(0o644)
    start = len(mirror.settled_access_log())
    again = pants_repo.pants("publish", "src::", KEY_OPTION, registry=mirror, env=NO_DOCKER)
    assert again.returncode == 0, again
    assert writes(mirror.settled_access_log()[start:]) == []
    assert "may be read by others than its owner (mode 644)" in again.stderr, again
    assert again.stderr.count("skipped (up to date") == 2, again
