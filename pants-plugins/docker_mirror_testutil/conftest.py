from docker_mirror_testutil.fixtures import (  # noqa: F401 (fixtures, found by name)
    docker_engine,
    never_served_from_cache,
    pants_repo,
    registries,
)
