"""The three faults a security review found in the referrer code (issue 24), each against a hostile
source registry (`testutil/hostile_registry.py`, real HTTP on loopback) and a real destination
(`docker-registry`, with the OCI 1.1 referrers API in front of it where it matters:
`testutil/referrers_proxy.py`):

- a referrer, `.sig` manifest or fallback listing whose `subject` is another image the
  destination has is refused before anything of it is written, and that image gets no referrer;
- 16 referrers-API pages of ~4 MiB, for 4 images in one probe process: the probe's peak memory
  stays under `PEAK_RSS_BOUND` and each image fails clearly;
- 1,000 referrers, each an index of 20 manifests: the copy stops at its bound of manifests, well
  before its deadline, saying what it wrote; 32 Sigstore bundles of 8,500 non-verifying
  signatures each: the gate refuses the image within its CPU bound and its deadline; and it stops
  reading signatures at the deadline.

The probe runs as Pants runs it (its own process, `testutil/probe_process.py`), except for the
subject checks, which call `find` and `copy` in the test's process as `referrers_integration_test`
does.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Iterator, Tuple

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from docker_mirror.oci.media_types import (
    BUNDLE_PREDICATE_ANNOTATION,
    COSIGN_SIGN_PREDICATE,
    OCI_MANIFEST,
)
from docker_mirror.oci.probe_protocol import CopyItem, Listing, Plan
from docker_mirror.probe.mirror_referrers import copy, find
from docker_mirror.probe.referrers import MAX_COPY_MANIFESTS, MAX_LISTING_BYTES, ReferrersError, digest_tag
from docker_mirror.probe.signatures import MAX_SIGNATURE_DOCUMENT
from docker_mirror_testutil.cosign import stranger_bundle
from docker_mirror_testutil.fault_proxy import passthrough
from docker_mirror_testutil.hostile_registry import HostileServer, Reply, Request
from docker_mirror_testutil.hostile_source import (
    EMPTY,
    SPDX,
    Source,
    artifact,
    descriptor,
    hostile_page,
    index_body,
)
from docker_mirror_testutil.probe_locations import location
from docker_mirror_testutil.probe_process import run_probe
from docker_mirror_testutil.referrers_proxy import ReferrersProxy
from docker_mirror_testutil.registries import Registry, start_registry
from docker_mirror.oci.manifests import digest_of

SUBJECT = "sha256:" + "ab" * 32  # the image being mirrored (only its digest is needed)
MEBIBYTE = 1024 * 1024
# The probe's peak resident memory with 4 images' hostile referrers-API pages: the interpreter
# with aiohttp and cryptography (~45 MiB), 4 MiB per image read, and one page parsed at a time.
# (Before the bound: 1.8 GB for one image, 4.9 GB for four.)
PEAK_RSS_BOUND = 160 * MEBIBYTE


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[Registry]:
    registry = start_registry(tmp_path / "destination")
    try:
        yield registry
    finally:
        registry.stop()


# ---------------------------------------------------------------------------------------------
# (a) A forged subject: a referrer of another image the destination has


def push_trusted_image(registry: Registry) -> str:
    """An image mirrored earlier from a trusted registry, in the destination repository."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    registry.put_blob("mirror/team/app", config)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": descriptor("application/vnd.oci.image.config.v1+json", config),
                       "layers": []}).encode()  # fmt: skip
    registry.put_manifest("mirror/team/app", "trusted", body, OCI_MANIFEST)
    return digest_of(body)


def forged_sbom(source: Source, trusted: str) -> Tuple[str, bytes]:
    """An SBOM whose subject is the trusted image: what the attacker wants listed for it."""
    source.blob(EMPTY)
    layer = b'{"spdxVersion":"SPDX-2.3","name":"backdoor-free, honest"}'
    source.blob(layer)
    body = artifact(layer, trusted)
    return source.manifest(body), body


@pytest.mark.parametrize("where", ["referrers API", ".sig tag", "fallback tag"])
def test_a_referrer_naming_another_image_of_the_destination_is_refused(
    where: str, destination: Registry, tmp_path: Path
) -> None:
    """Before: the forged SBOM was copied by digest, and the destination's referrers API listed
    it as a referrer of the trusted image (with `require_signature` on too: the mirrored image
    itself may be validly signed)."""
    source = Source()
    with ReferrersProxy.start(destination.address, passthrough()) as api:
        trusted = push_trusted_image(api.as_registry(destination))
        before = len(destination.settled_access_log())
        forged, body = forged_sbom(source, trusted)
        if where == "referrers API":
            source.pages = [index_body([descriptor(OCI_MANIFEST, body, artifactType=SPDX)])]
        elif where == ".sig tag":
            source.manifest(body, tag=digest_tag(SUBJECT, "sig"))
        else:  # a fake fallback-tag digest: the "listing" is the forged manifest itself
            source.manifest(body, tag=digest_tag(SUBJECT))

        async def mirror() -> None:
            with HostileServer.start(source) as server:
                src = location(server.address, "team/app", tmp_path)
                dst = location(api.address, "mirror/team/app", tmp_path)
                if where == "fallback tag":
                    with pytest.raises(ReferrersError, match=f"the referrers index {forged} at {server.address}/team/app "
                                                             f"\\(the fallback tag {digest_tag(SUBJECT)}\\) names {trusted} "
                                                             f"as its subject, not the image being mirrored"):  # fmt: skip
                        await find(src, SUBJECT, [dst])
                    # A plan carrying it (had a read been fooled) is refused as well.
                    plan = Plan((), Listing.of(body))
                else:
                    (plan,) = (await find(src, SUBJECT, [dst])).plans
                    assert [item.digest for item in plan.items] == [forged]
                with pytest.raises(ReferrersError) as refused:
                    await copy(src, dst, SUBJECT, plan)
                message = str(refused.value)
                assert f"{forged} " in message and f"{server.address}/team/app" in message
                assert message.endswith(f" names {trusted} as its subject, not the image being mirrored ({SUBJECT[:19]}): refused")

        asyncio.run(mirror())
        assert api.referrers("mirror/team/app", trusted) == []
    written = [line for line in destination.settled_access_log()[before:] if '"PUT ' in line or '"POST ' in line]
    assert written == []


# ---------------------------------------------------------------------------------------------
# (b) Referrers-API pages of ~4 MiB: memory


def test_referrers_api_pages_of_4_mib_keep_the_probe_within_its_memory_bound(tmp_path: Path) -> None:
    """16 pages of ~4 MiB for each of 4 images read in one probe process: each image fails at
    its first page, and the process's peak RSS stays under `PEAK_RSS_BOUND`."""
    source = Source()
    source.pages = [hostile_page(MAX_LISTING_BYTES - 4096)] * 16
    subjects = ["sha256:%064x" % n for n in range(4)]
    with HostileServer.start(source) as server, HostileServer.start(lambda r: Reply(404)) as elsewhere:
        run = run_probe(tmp_path, [], referrers=[
            {"reference": f"{server.address}/team/app@{subject}", "destinations": [f"{elsewhere.address}/mirror/app"]}
            for subject in subjects
        ])  # fmt: skip
        pages_read = [r for r in server.seen() if "/referrers/" in r.path]
    print(f"peak RSS {run.peak_rss_kib} KiB, CPU {run.cpu_seconds:.2f} s, {run.elapsed:.2f} s, "
          f"{len(pages_read)} pages read")  # fmt: skip
    assert (run.code, run.stderr) == (0, "")
    errors = [entry["error"] for entry in run.document["referrers"]]
    for subject, error in zip(subjects, errors):
        assert error is not None and f"the referrers of {subject} in team/app at {server.address} (page 1)" \
            f" lists more than 1000 manifests" in error, error  # fmt: skip
    assert len(pages_read) == 4  # the first page of each image, and no other
    assert run.peak_rss_kib * 1024 < PEAK_RSS_BOUND, f"peak RSS {run.peak_rss_kib} KiB"


# ---------------------------------------------------------------------------------------------
# (c) Unbounded copies and signature checks: time


def test_a_thousand_referrers_of_many_manifests_stop_at_the_bound_saying_what_was_written(
    destination: Registry, tmp_path: Path
) -> None:
    """1,000 referrers, each an index of 20 manifests: the copy stops at `MAX_COPY_MANIFESTS`
    manifests, long before its deadline (before: one at a time until the 600 s deadline,
    4,832 manifests in 30 s), and its message says what it wrote."""
    source = Source()
    children = 20
    source.many_referrers(SUBJECT, 1000, children)
    with HostileServer.start(source) as server:
        read = run_probe(tmp_path, [], referrers=[{
            "reference": f"{server.address}/team/app@{SUBJECT}", "destinations": [f"{destination.address}/mirror/team/app"],
        }])  # fmt: skip
        (entry,) = read.document["referrers"]
        assert entry["error"] is None, entry
        plan = entry["destinations"][f"{destination.address}/mirror/team/app"]
        assert len(plan["items"]) == 1000
        run = run_probe(tmp_path, [], copy={
            "source": f"{server.address}/team/app", "subject": SUBJECT,
            "destination": f"{destination.address}/mirror/team/app", **plan,
        }, deadline_seconds=600)  # fmt: skip
    print(f"{run.elapsed:.1f} s, CPU {run.cpu_seconds:.1f} s: {run.document['copy']['message']}")
    result = run.document["copy"]
    whole = MAX_COPY_MANIFESTS // (children + 1)
    written = whole * (children + 1)
    assert result["outcome"] == "error"
    assert f"are more than the {MAX_COPY_MANIFESTS} manifests copied per image: stopped before" in result["message"]
    assert result["message"].endswith(
        f"; written at {destination.address}/mirror/team/app before it stopped: {written} manifests, 1 blobs "
        f"(2 bytes), {whole} of 1000 referrers whole"
    ), result["message"]
    puts = [line for line in destination.access_log() if '"PUT /v2/mirror/team/app/manifests/' in line]
    assert len(puts) == written
    assert run.elapsed < 120, run.elapsed


def test_32_bundles_of_non_verifying_signatures_are_refused_within_the_deadline(tmp_path: Path) -> None:
    """32 bundles of 8,500 signatures each (before: 272,000 ECDSA checks, about 20 s of CPU per
    key, in a loop the deadline did not interrupt): refused as unsigned, well within the
    deadline, with a few signatures per bundle checked."""
    source = Source()
    count = 8500
    bundle = stranger_bundle(SUBJECT, count)
    assert len(bundle) <= MAX_SIGNATURE_DOCUMENT
    raw = source.bundle_listing(SUBJECT, bundle, 32, {BUNDLE_PREDICATE_ANNOTATION: COSIGN_SIGN_PREDICATE})
    listing = json.loads(raw)["manifests"]
    source.pages = [raw]
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    deadline = 20
    with HostileServer.start(source) as server, HostileServer.start(lambda r: Reply(404)) as elsewhere:
        run = run_probe(tmp_path, [], copy={
            "source": f"{server.address}/team/app", "subject": SUBJECT, "destination": f"{elsewhere.address}/mirror/app",
            **Plan(tuple(CopyItem("signature", str(e["digest"]), OCI_MANIFEST) for e in listing), Listing.of(raw)).to_json(),
            "require_signature": [{"name": "keys/cosign.pub", "pem": key}],
        }, deadline_seconds=deadline)  # fmt: skip
        written = [r for r in elsewhere.seen() if r.method in ("PUT", "POST", "PATCH")]
    result = run.document["copy"]
    print(f"{run.elapsed:.1f} s, CPU {run.cpu_seconds:.2f} s: {result['message']}")
    assert result["outcome"] == "unsigned", result
    assert "128 signatures found, none verifies against keys/cosign.pub" in result["message"]
    assert written == []
    assert run.elapsed < deadline and run.cpu_seconds < 5, (run.elapsed, run.cpu_seconds)


def test_signature_reads_stop_at_the_deadline(tmp_path: Path) -> None:
    """A source that answers slowly (0.3 s a request) with 32 bundles: the gate stops reading
    them at the copy's deadline (`run.copy_deadline_seconds`: 5 s of the run's 10) and refuses
    the image, rather than running past it."""
    source = Source()
    raw = source.bundle_listing(SUBJECT, stranger_bundle(SUBJECT, 4), 32, {})

    def slow(request: Request) -> Reply:
        time.sleep(0.3)
        return source(request)

    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    deadline = 10
    with HostileServer.start(slow) as server:
        run = run_probe(tmp_path, [], copy={
            "source": f"{server.address}/team/app", "subject": SUBJECT, "destination": f"{server.address}/mirror/app",
            **Plan((), Listing.of(raw)).to_json(), "require_signature": [{"name": "keys/cosign.pub", "pem": key}],
        }, deadline_seconds=deadline)  # fmt: skip
    result = run.document["copy"]
    print(f"{run.elapsed:.1f} s: {result['message']}")
    assert result["outcome"] == "error", result
    assert f"the copy of the referrers of {SUBJECT[:19]} reached its deadline before its signatures were read" in result["message"]
    assert run.elapsed < deadline, run.elapsed
