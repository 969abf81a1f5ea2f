"""What differs between the Pants versions the plugin supports (2.17 to 2.33), decided once at import:
rules call the engine only through these helpers, so one rule body serves every version."""

from docker_mirror.compat.pants_version import CALL_BY_NAME

# Both modules define the same names (`__all__`; compat_test checks it).
if CALL_BY_NAME:
    from docker_mirror.compat.call_by_name import *  # noqa: F401,F403
    from docker_mirror.compat.call_by_name import __all__ as _names
else:
    from docker_mirror.compat.get_syntax import *  # noqa: F401,F403
    from docker_mirror.compat.get_syntax import __all__ as _names

# The helpers that make engine requests (the others are types and `concurrently`).
HELPERS = (
    "addresses_of",
    "address_families",
    "address_family",
    "created_digest",
    "digest_contents",
    "digest_subset",
    "environment_vars",
    "generator_requests",
    "path_globs_contents",
    "process_result",
    "targets",
    "unexpanded_targets",
    "venv_pex",
    "venv_pex_process",
)

__all__ = ("HELPERS", *_names)
