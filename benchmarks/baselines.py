"""What the mirroring scenarios compare against (what a user would otherwise reach for), and
seeding their upstream registries."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Sequence

from docker_mirror_testutil.images import make_image
from docker_mirror_testutil.registries import Registry

from benchmarks.harness import run


def seed_images(references: Sequence[str]) -> None:
    """Pushes a tiny image of its own to each reference (one `docker import` and push each)."""
    for i, reference in enumerate(references):
        make_image(reference, f"bench image {i}")


def mirrored(reference: str, dest: Registry) -> str:
    """Where the docker loop pushes `reference`: under `mirror/` on `dest`, where Pants does with
    `PantsRepo.pants(registry=dest)`."""
    return f"{dest.address}/mirror/{reference.split('/', 1)[1]}"


def forget_local_images(references: Sequence[str]) -> None:
    """Removes images from the engine, so every method that uses it really pulls on a first mirror."""
    listed = run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).split()
    wanted = {ref.split("/", 1)[1] for ref in references}
    doomed = [ref for ref in listed if ref.split("/", 1)[-1] in wanted or "/mirror/bench/" in ref]
    if doomed:
        subprocess.run(["docker", "image", "rm", "-f", *doomed], capture_output=True, check=False)


def docker_loop(references: Sequence[str], dest: Registry) -> str:
    """A shell loop of `docker pull`, `docker tag` and `docker push`, one image after another."""
    script = "set -e\n" + "".join(
        f"docker pull -q {ref} >/dev/null\n"
        f"docker tag {ref} {mirrored(ref, dest)}\n"
        f"docker push -q {mirrored(ref, dest)} >/dev/null\n"
        for ref in references
    )
    return run(["bash", "-c", script])


def skopeo_sync(config: Path, references: Sequence[str], dest: Registry) -> str:
    """`skopeo sync --all` of `references` (all on one upstream registry) into `dest`'s `mirror/`,
    with its YAML source list written to `config`."""
    upstream = references[0].split("/", 1)[0]
    images: dict[str, list[str]] = {}
    for ref in references:
        repository, _, tag = ref.split("/", 1)[1].rpartition(":")
        images.setdefault(repository, []).append(tag)
    # JSON is YAML.
    config.write_text(json.dumps({upstream: {"images": images, "tls-verify": False}}))
    return run(
        [
            "skopeo", "sync", "--all", "--preserve-digests", "--src", "yaml", "--dest", "docker",
            "--dest-tls-verify=false", str(config), f"{dest.address}/mirror/bench",
        ]
    )
