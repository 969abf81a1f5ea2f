"""What a Python tool's subsystem declares differently across Pants versions."""

from docker_mirror.compat.pants_version import PANTS_2_18

if PANTS_2_18:

    class ToolLockfileRules:
        """Pants 2.18+ needs nothing declared to use a tool's default lockfile."""

else:
    from pants.backend.python.subsystems.python_tool_base import LockfileRules

    class ToolLockfileRules:
        """Lets `pants generate-lockfiles --resolve=<tool>` write the tool's lockfile on 2.17."""

        lockfile_rules_type = LockfileRules.SIMPLE
