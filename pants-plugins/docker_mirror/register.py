"""Mirror container images between registries: the `docker_mirror_images` target generator.

Enable with `backend_packages.add = ["pants.backend.docker", "docker_mirror"]`.
"""

from docker_mirror import generator
from docker_mirror.goals import archive, extract, package, pin, publish
from docker_mirror.subsystems import extractor, registry_probe
from docker_mirror.target_types import (
    DockerMirrorArchiveTarget,
    DockerMirrorImagesTargetGenerator,
    DockerMirrorImageTarget,
)
from docker_mirror.util_rules import copies, registry_client, registry_reads
from pants.backend.python.util_rules import pex


def rules():
    return [
        *generator.rules(),
        *registry_reads.rules(),
        *copies.rules(),
        *registry_client.rules(),
        *registry_probe.rules(),
        *extractor.rules(),
        *extract.rules(),
        *package.rules(),
        *archive.rules(),
        *pin.rules(),
        *publish.rules(),
        *pex.rules(),
    ]


def target_types():
    return [DockerMirrorImagesTargetGenerator, DockerMirrorImageTarget, DockerMirrorArchiveTarget]
