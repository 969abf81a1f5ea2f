"""The probe's export (the air gap's connected side) against a real registry, as a process: the
`require_signature` gate keeps an unsigned image out of the archive and says why; a signed one,
and a platform subset, go in under their source names; `tar` then writes what they reach, and a
second export into the same store reads no blob again."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Iterator

import pytest

from docker_mirror_testutil.cosign import generate_key, public_key_pem, sign
from docker_mirror_testutil.images import push_oci_image
from docker_mirror_testutil.probe_process import run_probe
from docker_mirror_testutil.registries import Registry, start_registry
from docker_mirror.oci.manifests import narrowed_index

REF_NAME = "org.opencontainers.image.ref.name"


@pytest.fixture
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_registry(tmp_path_factory.mktemp("source"))
    try:
        yield registry
    finally:
        registry.stop()


def test_the_gate_keeps_an_unsigned_image_out_and_a_subset_goes_in_filtered(source: Registry, tmp_path: Path) -> None:
    signed = push_oci_image(f"{source.address}/team/signed:1", "signed", "linux/amd64", "linux/arm64")
    push_oci_image(f"{source.address}/team/unsigned:1", "unsigned", "linux/amd64")
    subset = push_oci_image(f"{source.address}/team/subset:1", "subset", "linux/amd64", "linux/arm64", "linux/s390x")
    key = generate_key()
    signature = sign(source, "team/signed", signed.index, key)
    pem = public_key_pem(key).decode()
    gate = [{"name": "cosign.pub", "pem": pem}]
    store = tmp_path / "store"
    export = {"store": str(store), "images": [
        {"reference": f"{source.address}/team/signed:1", "require_signature": gate},
        {"reference": f"{source.address}/team/unsigned:1", "require_signature": gate},
        {"reference": f"{source.address}/team/subset:1", "platforms": ["linux/amd64", "linux/arm64"]},
    ]}  # fmt: skip

    run = run_probe(tmp_path, [], export=export)
    assert (run.code, run.stderr) == (0, ""), run.stderr
    images = {image["reference"].rsplit("/", 1)[1]: image for image in run.document["export"]["images"]}
    assert images["signed:1"]["result"]["verified_by"] == "cosign.pub"
    assert images["signed:1"]["name"] == f"{source.address}/team/signed:1"
    assert images["unsigned:1"]["name"] is None and images["unsigned:1"]["result"]["outcome"] == "unsigned"
    filtered = narrowed_index(source.manifest("team/subset", subset.index)[0], ("linux/amd64", "linux/arm64"))
    assert images["subset:1"]["digest"] == filtered.digest != subset.index
    index = json.loads(run.document["export"]["index"])
    named = {entry["annotations"][REF_NAME]: entry["digest"] for entry in index["manifests"]}
    assert named == {
        f"{source.address}/team/signed:1": signed.index,
        f"{source.address}/team/signed:sha256-{signed.index[7:]}.sig": signature,
        f"{source.address}/team/subset:1": filtered.digest,
    }
    assert not any("unsigned" in name for name in named)

    (tmp_path / "index.json").write_text(run.document["export"]["index"])
    tar = tmp_path / "out" / "archive.tar"
    written = subprocess.run(
        [sys.executable, "-m", "docker_mirror.probe", "tar", str(tmp_path / "index.json"), str(store), str(tar)],
        capture_output=True, text=True, env={"PYTHONPATH": ":".join(p for p in sys.path if p)}, check=False,
    )  # fmt: skip
    assert (written.returncode, written.stderr) == (0, ""), written.stderr
    with tarfile.open(tar) as t:
        blobs = {name.rsplit("/", 1)[1] for name in t.getnames() if name.startswith("blobs/sha256/")}
    s390x = subset.manifests["linux/s390x"]
    assert s390x[7:] not in blobs and subset.manifests["linux/arm64"][7:] in blobs
    assert json.loads(written.stdout)["blobs"] == len(blobs)

    # Again into the same store: the tags and what refers to them are asked again, no blob is.
    before = len(source.settled_access_log())
    again = run_probe(tmp_path, [], export=export)
    assert json.loads(again.document["export"]["index"]) == index
    log = source.settled_access_log()[before:]
    assert log and not [line for line in log if "/blobs/" in line], log
