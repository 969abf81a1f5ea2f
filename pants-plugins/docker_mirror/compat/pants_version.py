"""Which Pants is running, as constants that type checkers treat as such, so each version is
checked against the branch it runs."""

from pants.version import PANTS_SEMVER

# Call-by-name rule syntax, complete: `implicitly()`, the intrinsics (`execute_process`,
# `get_digest_contents`, ...) as rules, and `concurrently` accepting coroutines. Pants 2.32 removed
# `Get` and `MultiGet`.
CALL_BY_NAME = PANTS_SEMVER >= "2.23.0.dev0"

# Python tools' lockfiles: Pants 2.17 generates a plugin tool's own lockfile only with
# `lockfile_rules_type = LockfileRules.SIMPLE`; 2.18 removed `LockfileRules`.
PANTS_2_18 = PANTS_SEMVER >= "2.18.0.dev0"

# `UnmatchedBuildFileGlobs` moved to `pants.option.bootstrap_options`, and
# `environment_vars_subset` to `pants.core.util_rules.env_vars`.
PANTS_2_29 = PANTS_SEMVER >= "2.29.0.dev0"
