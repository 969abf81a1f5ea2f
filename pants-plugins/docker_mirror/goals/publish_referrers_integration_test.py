"""End to end: the real `./pants publish` with `method="copy"` carries what refers to an image
(cosign's `.sig`, `.att` and `.sbom`, OCI 1.1 referrers) between real registries, under the same
digests; a re-mirror reads no manifest at the source (the registries' access logs say so); what
is added upstream later arrives alone; and `require_signature` keeps unsigned images out.

The artifacts are made offline by `testutil.cosign` and `testutil.referrers` in cosign's and the
distribution spec's layouts; `docker-registry` 2.8 has no referrers API, so referrers are listed
by the fallback tag, and `testutil.referrers_proxy` gives a registry the API for the other path.
"""

from __future__ import annotations

from typing import Callable

from docker_mirror_testutil import cosign
from docker_mirror_testutil.fault_proxy import passthrough
from docker_mirror_testutil.images import push_oci_image
from docker_mirror_testutil.machine import require_skopeo
from docker_mirror_testutil.oci import digest_tag
from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.referrers import attach_artifact, attach_spdx_sbom, listed_referrers
from docker_mirror_testutil.referrers_proxy import ReferrersProxy
from docker_mirror_testutil.registries import Registry

BUILD = "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy'{extra})\n"
NOTATION = "application/vnd.cncf.notary.signature"


def manifest_gets(log: list[str]) -> list[str]:
    return [line for line in log if '"GET /v2/' in line and "/manifests/" in line]


def assert_a_re_mirror_reads_no_source_manifest_and_writes_nothing(
    upstream: Registry, mirror: Registry, pants_repo: PantsRepo
) -> None:
    """`mirror/team/app:1` is up to date: a publish skips it, reads no manifest at the source
    (`HEAD`s only) and writes nothing."""
    before_upstream, before_mirror = len(upstream.settled_access_log()), len(mirror.settled_access_log())
    again = pants_repo.pants("publish", "src::", registry=mirror, daemon=True)
    assert again.returncode == 0, again
    assert f"- {mirror.address}/mirror/team/app:1 skipped (up to date" in again.stderr, again
    assert manifest_gets(upstream.settled_access_log()[before_upstream:]) == []
    assert not [l for l in mirror.settled_access_log()[before_mirror:] if '"PUT ' in l or '"POST ' in l]


def test_signatures_attestations_and_sboms_travel_with_their_digests_and_a_re_mirror_reads_no_manifest(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    require_skopeo()
    upstream, mirror = registries(), registries()
    key = cosign.generate_key()
    image = push_oci_image(f"{upstream.address}/team/app:1", "signed app")
    subject = image.index
    signature = cosign.sign(upstream, "team/app", subject, key)
    attestation = cosign.attest(upstream, "team/app", subject, key)
    sbom = cosign.attach_sbom(upstream, "team/app", subject, b'{"spdxVersion": "SPDX-2.3"}')
    spdx = attach_spdx_sbom(upstream, "team/app", subject)
    # The mirror already serves the image, with a referrer of its own (someone signed it there
    # with notation): the merge keeps it.
    push_oci_image(f"{mirror.address}/mirror/team/app:1", "signed app")
    theirs = attach_artifact(mirror, "mirror/team/app", subject, NOTATION, b"sig", NOTATION)
    pants_repo.write({"src/BUILD": BUILD.format(extra=""), "src/images.txt": f"{upstream.address}/team/app:1\n"})

    first = pants_repo.pants("publish", "src::", registry=mirror, daemon=True)
    assert first.returncode == 0, first
    # The image was there already: its referrers were copied, and reported.
    assert (
        f"✓ {mirror.address}/mirror/team/app:1 published to @mirror (the image was up to date: "
        f"@mirror already serves {subject[:19]}; with 1 signature, 1 attestation, 2 SBOMs)"
    ) in first.stderr, first

    # Same digests at the destination, under the same tags; the referrer by its digest.
    for tag, digest in (
        (digest_tag(subject, "sig"), signature),
        (digest_tag(subject, "att"), attestation),
        (digest_tag(subject, "sbom"), sbom),
    ):
        assert mirror.manifest_digest("mirror/team/app", tag) == digest
    assert mirror.manifest_digest("mirror/team/app", spdx["digest"]) == spdx["digest"]
    # Listed by the destination's fallback tag, next to the entry it had.
    listed = [entry["digest"] for entry in listed_referrers(mirror, "mirror/team/app", subject)]
    assert listed == [theirs["digest"], spdx["digest"]]
    # The signature verifies at the destination, against the destination's own digest.
    assert mirror.manifest_digest("mirror/team/app", "1") == subject
    cosign.verify_signature(mirror, "mirror/team/app", subject, cosign.public_key_pem(key))
    cosign.verify_attestation(mirror, "mirror/team/app", subject, cosign.public_key_pem(key))

    # Nothing new: no manifest GET at the source (HEADs only), nothing written.
    assert_a_re_mirror_reads_no_source_manifest_and_writes_nothing(upstream, mirror, pants_repo)

    # A signature added upstream later is copied by the next run, and nothing else.
    other = cosign.generate_key()
    new_signature = cosign.sign(upstream, "team/app", subject, other)
    before_mirror = len(mirror.settled_access_log())
    later = pants_repo.pants("publish", "src::", registry=mirror, daemon=True)
    assert later.returncode == 0, later
    assert "with 1 signature)" in later.stderr, later
    assert mirror.manifest_digest("mirror/team/app", digest_tag(subject, "sig")) == new_signature
    cosign.verify_signature(mirror, "mirror/team/app", subject, cosign.public_key_pem(other))
    # Written: the new `.sig` manifest, and its config (cosign's lists one diff ID per
    # signature); its payload blob was there already (cosign's payload is the same bytes,
    # whoever signs); nothing of the image.
    written = [l.split('"')[1].split()[1] for l in mirror.settled_access_log()[before_mirror:] if '"PUT ' in l]
    assert [path for path in written if "/manifests/" in path] == [
        f"/v2/mirror/team/app/manifests/{digest_tag(subject, 'sig')}"
    ]
    assert len([path for path in written if "/blobs/uploads/" in path]) == 1


def test_each_platform_manifests_signature_and_sbom_travel_with_the_index(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    """`cosign sign --recursive` signs each platform's manifest, and SBOM tools attach to one:
    what refers to a platform manifest of the index is copied with it, under the same digests,
    and a re-mirror reads no manifest at the source."""
    require_skopeo()
    upstream, mirror = registries(), registries()
    key = cosign.generate_key()
    image = push_oci_image(f"{upstream.address}/team/app:1", "three platforms", "linux/amd64", "linux/arm64", "linux/s390x")
    amd64, arm64 = image.manifests["linux/amd64"], image.manifests["linux/arm64"]
    signature = cosign.sign(upstream, "team/app", arm64, key)
    spdx = attach_spdx_sbom(upstream, "team/app", amd64)
    pants_repo.write({"src/BUILD": BUILD.format(extra=""), "src/images.txt": f"{upstream.address}/team/app:1\n"})

    # Counted apart from the index's own (listings are counted where they are read).
    package = pants_repo.pants("package", "src::", registry=mirror, daemon=True)
    assert "referrers at the source: none; of its platform manifests: 1 signature, 1 SBOM" in package.stderr, package

    first = pants_repo.pants("publish", "src::", registry=mirror, daemon=True)
    assert first.returncode == 0, first
    assert f"✓ {mirror.address}/mirror/team/app:1 published to @mirror" in first.stderr, first
    assert "with 1 signature, 1 SBOM)" in first.stderr, first
    assert mirror.manifest_digest("mirror/team/app", "1") == image.index
    assert mirror.manifest_digest("mirror/team/app", digest_tag(arm64, "sig")) == signature
    cosign.verify_signature(mirror, "mirror/team/app", arm64, cosign.public_key_pem(key))
    assert [e["digest"] for e in listed_referrers(mirror, "mirror/team/app", amd64)] == [spdx["digest"]]
    assert mirror.manifest_digest("mirror/team/app", spdx["digest"]) == spdx["digest"]

    assert_a_re_mirror_reads_no_source_manifest_and_writes_nothing(upstream, mirror, pants_repo)


def test_require_signature_keeps_unsigned_images_out_and_copies_signed_ones(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    require_skopeo()
    upstream, mirror = registries(), registries()
    trusted, stranger = cosign.generate_key(), cosign.generate_key()
    unsigned = push_oci_image(f"{upstream.address}/team/unsigned:1", "unsigned")
    foreign = push_oci_image(f"{upstream.address}/team/foreign:1", "foreign")
    cosign.sign(upstream, "team/foreign", foreign.index, stranger)
    signed = push_oci_image(f"{upstream.address}/team/signed:1", "signed")
    cosign.sign(upstream, "team/signed", signed.index, trusted)
    pants_repo.write(
        {
            "keys/cosign.pub": cosign.public_key_pem(trusted).decode(),
            "src/BUILD": BUILD.format(extra=", require_signature=['keys/cosign.pub']"),
            "src/images.txt": "".join(
                f"{upstream.address}/team/{name}:1\n" for name in ("unsigned", "foreign", "signed")
            ),
        }
    )

    result = pants_repo.pants("publish", "src::", registry=mirror)
    assert result.returncode != 0, result
    for name, index, reason in (
        ("unsigned", unsigned.index, "it has no cosign signature"),
        ("foreign", foreign.index, "1 signature found, none verifies against keys/cosign.pub"),
    ):
        assert (
            f"✕ {mirror.address}/mirror/team/{name}:1 failed for `require_signature`: no cosign "
            f"signature of {index} at {upstream.address}/team/{name} verifies against "
            f"keys/cosign.pub: {reason}"
        ) in result.stderr, result
    # Nothing of a refused image was written.
    assert mirror.repositories() == ["mirror/team/signed"]
    assert (
        f"✓ {mirror.address}/mirror/team/signed:1 published to @mirror (copied from "
        f"{upstream.address}/team/signed:1, {signed.index[:19]}"
    ) in result.stderr, result
    assert "; signature verified by keys/cosign.pub; with 1 signature)" in result.stderr, result
    assert mirror.manifest_digest("mirror/team/signed", "1") == signed.index
    cosign.verify_signature(mirror, "mirror/team/signed", signed.index, cosign.public_key_pem(trusted))


def test_signature_identity_admits_only_a_signature_made_for_the_source_repository(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    """With `signature_identity="source_repository"`, a signature by the trusted key that was
    made for another repository (an image of `team/other` served under `team/moved`) is refused;
    one made for the source's own repository passes."""
    upstream, mirror = registries(), registries()
    trusted = cosign.generate_key()
    own = push_oci_image(f"{upstream.address}/team/own:1", "signed for its own repository")
    cosign.sign(upstream, "team/own", own.index, trusted)
    moved = push_oci_image(f"{upstream.address}/team/moved:1", "signed for another repository")
    cosign.sign(upstream, "team/moved", moved.index, trusted, docker_reference=f"{upstream.address}/team/other")
    extra = ", require_signature=['keys/cosign.pub'], signature_identity='source_repository'"
    pants_repo.write(
        {
            "keys/cosign.pub": cosign.public_key_pem(trusted).decode(),
            "src/BUILD": BUILD.format(extra=extra),
            "src/images.txt": f"{upstream.address}/team/own:1\n{upstream.address}/team/moved:1\n",
        }
    )

    result = pants_repo.pants("publish", "src::", registry=mirror)
    assert result.returncode != 0, result
    assert (
        f"✕ {mirror.address}/mirror/team/moved:1 failed for `require_signature`: no cosign signature of "
        f"{moved.index} at {upstream.address}/team/moved verifies against keys/cosign.pub: "
        f"sha256-{moved.index[7:]}.sig layer 1 verifies against keys/cosign.pub and names {moved.index}, but it "
        f"was signed for {upstream.address}/team/other, not {upstream.address}/team/moved (`signature_identity`)"
    ) in result.stderr, result
    assert f"✓ {mirror.address}/mirror/team/own:1 published to @mirror" in result.stderr, result
    assert mirror.repositories() == ["mirror/team/own"]


def test_through_the_referrers_api_with_cosign_v3_bundles_checked_by_the_gate(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    """Source and destination with the referrers API (docker-registry behind a proxy that
    implements it): referrers are found by the API, written by digest and listed by the
    destination itself, with no fallback tag; a cosign v3 signature (a Sigstore bundle referrer)
    passes `require_signature`, whose key is named beside the BUILD file, as `sources` are."""
    require_skopeo()
    upstream_registry, mirror_registry = registries(), registries()
    with ReferrersProxy.start(upstream_registry.address, passthrough()) as upstream_api, \
            ReferrersProxy.start(mirror_registry.address, passthrough()) as mirror_api:  # fmt: skip
        upstream = upstream_api.as_registry(upstream_registry)
        mirror = mirror_api.as_registry(mirror_registry)
        key = cosign.generate_key()
        image = push_oci_image(f"{upstream.address}/team/app:1", "bundle-signed app")
        subject = image.index
        bundle = cosign.sign_bundle(upstream, "team/app", subject, key)
        spdx = attach_spdx_sbom(upstream, "team/app", subject)
        assert digest_tag(subject) not in upstream_registry.tags("team/app")  # the API lists them
        pants_repo.write(
            {
                "src/cosign.pub": cosign.public_key_pem(key).decode(),
                "src/BUILD": BUILD.format(extra=", require_signature=['cosign.pub']"),
                "src/images.txt": f"{upstream.address}/team/app:1\n",
            }
        )

        first = pants_repo.pants("publish", "src::", registry=mirror, daemon=True)
        assert first.returncode == 0, first
        assert "; signature verified by src/cosign.pub; with 1 signature, 1 SBOM)" in first.stderr, first
        assert mirror.manifest_digest("mirror/team/app", "1") == subject
        listed = {entry["digest"] for entry in mirror_api.referrers("mirror/team/app", subject)}
        assert listed == {bundle["digest"], spdx["digest"]}
        # The destination lists them itself: no fallback tag was written.
        assert digest_tag(subject) not in mirror_registry.tags("mirror/team/app")

        before = len(upstream_registry.settled_access_log())
        again = pants_repo.pants("publish", "src::", registry=mirror, daemon=True)
        assert again.returncode == 0, again
        assert "skipped (up to date" in again.stderr, again
        assert manifest_gets(upstream_registry.settled_access_log()[before:]) == []
