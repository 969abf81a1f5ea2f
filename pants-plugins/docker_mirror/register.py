"""Mirror container images between registries: the `docker_mirror_images` target generator.

Enable with `backend_packages.add = ["pants.backend.docker", "docker_mirror"]`.
"""

from docker_mirror import copy_rules
from docker_mirror import rules as mirror_rules
from docker_mirror.copy_target_types import DockerMirrorImageTarget
from docker_mirror.target_types import DockerMirrorImagesTargetGenerator


def rules():
    return [*mirror_rules.rules(), *copy_rules.rules()]


def target_types():
    return [DockerMirrorImagesTargetGenerator, DockerMirrorImageTarget]
