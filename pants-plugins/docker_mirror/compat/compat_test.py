"""The rule parser of the running Pants (2.17 in this repository's CI) accepts every rule of the
plugin, and follows every engine helper to the requests it makes; `scripts/check-pants-compat`
shows the same for newer Pants from their sources."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest
import sys

from docker_mirror import compat, register
from docker_mirror.compat.pants_version import CALL_BY_NAME
from pants.engine.internals.rule_visitor import collect_awaitables

# `register` imports every module of the plugin that has rules.
RULE_MODULES = tuple(
    module
    for name, module in sorted(sys.modules.items())
    if name.startswith("docker_mirror.") and module is not None and any(
        hasattr(value, "rule") and getattr(value, "__module__", None) == name
        for value in vars(module).values()
    )
)
assert register.rules()


def plugin_rules(module: ModuleType) -> list:
    return [
        value
        for value in vars(module).values()
        if hasattr(value, "rule") and getattr(value, "__module__", None) == module.__name__
    ]


def awaitables_of(rule: object) -> tuple:
    task_rule = rule.rule  # type: ignore[attr-defined]
    return tuple(getattr(task_rule, "input_gets", None) or task_rule.awaitables)


def test_the_rule_modules_are_found() -> None:
    names = {module.__name__ for module in RULE_MODULES}
    assert {"docker_mirror.generator", "docker_mirror.goals.publish"} <= names, names


@pytest.mark.parametrize("module", RULE_MODULES, ids=lambda module: module.__name__)
def test_every_rule_awaits_what_its_helpers_request(module: ModuleType) -> None:
    rules = plugin_rules(module)
    for rule in rules:
        assert awaitables_of(rule), f"{rule.__name__}: the rule parser found no request"


def test_every_engine_helper_is_followed_by_the_rule_parser() -> None:
    helpers = [getattr(compat, name) for name in compat.HELPERS]
    helpers += [
        value
        for module in RULE_MODULES
        for value in vars(module).values()
        if inspect.isfunction(value)
        and value.__module__.startswith(compat.__name__)
        and value.__name__ == "call"
    ]
    assert len(helpers) > len(compat.HELPERS), "no rule_call helper found"
    for helper in helpers:
        assert collect_awaitables(helper), f"the rule parser does not follow {helper.__qualname__}"


def test_the_syntax_matches_the_running_pants() -> None:
    from pants.version import PANTS_SEMVER

    assert CALL_BY_NAME == (PANTS_SEMVER >= "2.23.0.dev0")


def test_both_syntaxes_define_the_same_names() -> None:
    """`call_by_name` cannot be imported on Pants before 2.23: read its `__all__`."""
    import ast
    from pathlib import Path

    from docker_mirror.compat import get_syntax

    tree = ast.parse((Path(get_syntax.__file__).parent / "call_by_name.py").read_text())
    (names,) = (
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
    )
    assert sorted(names) == sorted(get_syntax.__all__)
    assert set(compat.HELPERS) <= set(names)
