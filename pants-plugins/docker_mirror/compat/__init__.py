"""What differs between the Pants versions the plugin supports, decided once, here, at import.

Rules call the engine only through these helpers, so that one rule body serves Pants 2.17 to 2.33:
`await process_result(process)`, `await concurrently(digest_contents(d) for d in digests)`. On
Pants 2.23 and later they use call-by-name (`execute_process(process, **implicitly())`), the only
syntax Pants 2.32 and later accept; before, `Get` (`Get(FallibleProcessResult, Process, process)`).
`scripts/check-pants-compat` shows that both versions' rule parsers accept the rules, and
type-checks them against a Pants source tree.
"""

from docker_mirror.compat.pants_version import CALL_BY_NAME

# Both modules define the same names (`__all__`; compat_test checks it).
if CALL_BY_NAME:
    from docker_mirror.compat.call_by_name import *  # noqa: F403
    from docker_mirror.compat.call_by_name import __all__ as _names
else:
    from docker_mirror.compat.get_syntax import *  # noqa: F403
    from docker_mirror.compat.get_syntax import __all__ as _names

# The helpers that make engine requests (the others are types and `concurrently`).
HELPERS = (
    "address_families",
    "address_family",
    "binary_paths",
    "created_digest",
    "digest_contents",
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
