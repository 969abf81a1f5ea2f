"""Shows that a Pants release's rule parser accepts the plugin's rules, without running that Pants.

Usage: python scripts/check_pants_compat.py PANTS_SOURCE_DIR  (see scripts/check-pants-compat)

Pants' `@rule` decorator is Python: at import it parses each rule's body, follows the helpers it
calls (`docker_mirror.compat`) and records what the rule awaits. This imports the plugin's rules
with the Pants sources in PANTS_SOURCE_DIR, whose native engine (Rust, built only for that
release) is replaced by small stand-ins below, written from its `native_engine.pyi`. Then, for
every rule of the plugin, it prints what the decorator recorded and checks it against the rules
the same import registered:

- every rule the plugin's rules call by name exists, and takes at least the arguments passed;
- every engine helper of `docker_mirror.compat`, and every `rule_call` helper, is followed by
  the parser to at least one rule: a helper the parser does not follow would leave its rule
  unable to make that call.

It cannot solve the rule graph (that is the native engine's work): a rule that has no way to get
one of its parameters still shows up only when that Pants runs.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from abc import ABCMeta
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# -------------------------------------------------------------------------------------------
# Stand-ins for the native engine's Python-visible classes (see its `native_engine.pyi`).

class _PlaceholderType(ABCMeta):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder()


class _Placeholder(metaclass=_PlaceholderType):
    """Any other native class or value: accepts whatever it is given, at import time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder()

    def __class_getitem__(cls, item: Any) -> Any:
        return cls


class FrozenDict(Mapping):
    def __new__(cls, *args: Any, **kwargs: Any) -> FrozenDict:
        instance = super().__new__(cls)
        instance._data = dict(*args, **kwargs)
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __class_getitem__(cls, item: Any) -> Any:
        return cls

    @classmethod
    def deep_freeze(cls, data: Mapping) -> FrozenDict:
        return cls(data)


class FrozenOrderedSet:
    def __new__(cls, iterable: Iterable[Any] | None = None) -> FrozenOrderedSet:
        instance = super().__new__(cls)
        instance._items = dict.fromkeys(iterable or ())
        return instance

    def __init__(self, iterable: Iterable[Any] | None = None) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: Any) -> bool:
        return item in self._items

    def __hash__(self) -> int:
        return hash(tuple(self._items))

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, FrozenOrderedSet) and list(self) == list(other)

    def __class_getitem__(cls, item: Any) -> Any:
        return cls


class LockedMap:
    """The cache behind `@memoized`."""

    def __init__(self) -> None:
        self._data: dict[Any, Any] = {}

    def get_or_insert(self, key: Any, compute: Any) -> Any:
        if key not in self._data:
            self._data[key] = compute()
        return self._data[key]

    def put(self, key: Any, value: Any) -> None:
        self._data[key] = value

    def forget(self, key: Any) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __class_getitem__(cls, item: Any) -> Any:
        return cls


class UnionRule:
    def __init__(self, union_base: type, union_member: type) -> None:
        self.union_base, self.union_member = union_base, union_member


class UnionMembership:
    def __init__(self, members: Mapping[type, Iterable[type]]) -> None:
        self._members = {base: tuple(found) for base, found in members.items()}

    @staticmethod
    def from_rules(rules: Iterable[UnionRule]) -> UnionMembership:
        members: dict[type, list[type]] = {}
        for union_rule in rules:
            members.setdefault(union_rule.union_base, []).append(union_rule.union_member)
        return UnionMembership(members)

    @staticmethod
    def empty() -> UnionMembership:
        return UnionMembership({})

    def __contains__(self, union_type: type) -> bool:
        return union_type in self._members

    def __getitem__(self, union_type: type) -> tuple[type, ...]:
        return self._members[union_type]

    def get(self, union_type: type) -> tuple[type, ...]:
        return self._members.get(union_type, ())

    def is_member(self, union_type: type, putative_member: type) -> bool:
        return putative_member in self.get(union_type)

    def has_members(self, union_type: type) -> bool:
        return bool(self.get(union_type))


class Call:
    def __init__(self, rule_id: str, output_type: type, args: tuple, *rest: Any) -> None:
        self.rule_id, self.output_type, self.args = rule_id, output_type, args

    def __class_getitem__(cls, item: Any) -> Any:
        return cls


class _Concurrently:
    def __init__(self, calls: tuple) -> None:
        self.calls = calls

    def __class_getitem__(cls, item: Any) -> Any:
        return cls


class RuleCallTrampoline:
    """What `@rule` returns: the rule function, its id, output type and `TaskRule`."""

    def __init__(self, rule_id: str, output_type: type, wrapped: Any, rule: Any) -> None:
        self.rule_id, self.output_type, self.__wrapped__, self.rule = (
            rule_id,
            output_type,
            wrapped,
            rule,
        )
        for name in ("__name__", "__qualname__", "__module__", "__doc__", "__annotations__"):
            setattr(self, name, getattr(wrapped, name, None))

    def __call__(self, *args: Any, **kwargs: Any) -> Call:
        return Call(self.rule_id, self.output_type, args)

    def __class_getitem__(cls, item: Any) -> Any:
        return cls


def install_native_engine_stub() -> None:
    module = types.ModuleType("pants.engine.internals.native_engine")
    known = {
        cls.__name__: cls
        for cls in (
            FrozenDict,
            FrozenOrderedSet,
            LockedMap,
            UnionRule,
            UnionMembership,
            Call,
            _Concurrently,
            RuleCallTrampoline,
        )
    }

    # Native functions whose result is used at import time.
    known["default_cache_path"] = lambda: str(Path.home() / ".cache" / "pants")

    def missing(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = known.get(name) or type(name, (_Placeholder,), {})
        setattr(module, name, value)
        return value

    module.__getattr__ = missing  # type: ignore[method-assign]
    sys.modules[module.__name__] = module


def install_annotationlib_stub() -> None:
    """Python 3.14's `annotationlib`, which Pants 2.32+ imports for its BUILD file parser only: on
    an older Python, enough of it for that import."""
    if sys.version_info >= (3, 14):
        return
    import enum
    import typing

    module = types.ModuleType("annotationlib")

    class Format(enum.IntEnum):
        VALUE = 1
        VALUE_WITH_FAKE_GLOBALS = 2
        FORWARDREF = 3
        STRING = 4

    module.Format = Format  # type: ignore[attr-defined]
    module.ForwardRef = typing.ForwardRef  # type: ignore[attr-defined]
    module.call_annotate_function = lambda annotate, format, **kwargs: annotate(format)  # type: ignore[attr-defined]
    sys.modules["annotationlib"] = module


# -------------------------------------------------------------------------------------------


def awaitable_summary(awaitable: Any) -> str:
    """`rule_id(N args, implicitly: T, ...) -> Output` for a by-name awaitable, or the `Get`."""
    rule_id = getattr(awaitable, "rule_id", None)
    if isinstance(rule_id, str):
        implicit = ", ".join(t.__name__ for t in awaitable.input_types)
        output = getattr(awaitable.output_type, "__name__", awaitable.output_type)
        return (
            f"{rule_id}({awaitable.explicit_args_arity} explicit"
            f"{', implicitly: ' + implicit if implicit else ''}) -> {output}"
        )
    return repr(awaitable)


def is_rule(value: Any) -> bool:
    """What `@rule` returns: a `RuleCallTrampoline` (Pants 2.32+), or a wrapping function with
    `rule_id` and `rule` (2.23 to 2.31)."""
    return isinstance(getattr(value, "rule_id", None), str) and hasattr(value, "rule")


def loaded_rules() -> dict[str, Any]:
    """Every rule the imported modules define, by rule id."""
    return {
        value.rule_id: value
        for module in list(sys.modules.values())
        for value in list(vars(module).values() if module else ())
        if is_rule(value)
    }


def positional_parameters(rule: Any) -> int:
    return len(inspect.signature(inspect.unwrap(rule)).parameters)


def main(pants_source: Path) -> int:
    sys.path[:0] = [str(pants_source / "src" / "python"), str(REPO / "pants-plugins")]
    install_native_engine_stub()
    install_annotationlib_stub()
    from pants.version import VERSION

    print(f"Pants {VERSION} from {pants_source}, with a stand-in native engine")
    # `register` imports every module with rules of the plugin.
    importlib.import_module("docker_mirror.register")
    modules = [
        module
        for name, module in sorted(sys.modules.items())
        if name.startswith("docker_mirror.") and module is not None
    ]
    problems: list[str] = []
    rules = loaded_rules()
    plugin_rules = [
        rule
        for module in modules
        for rule in vars(module).values()
        if is_rule(rule) and rule.rule_id.startswith(f"{module.__name__}.")
    ]
    for rule in sorted(plugin_rules, key=lambda r: r.rule_id):
        task_rule = rule.rule
        awaitables = list(task_rule.awaitables)
        print(f"\n{rule.rule_id} -> {task_rule.output_type.__name__}")
        if not awaitables:
            problems.append(f"{rule.rule_id} awaits nothing: a helper call was not followed")
        for awaitable in awaitables:
            print(f"    awaits {awaitable_summary(awaitable)}")
            callee = rules.get(awaitable.rule_id)
            if callee is None:
                problems.append(f"{rule.rule_id} calls {awaitable.rule_id}, which no rule is")
            elif positional_parameters(callee) < awaitable.explicit_args_arity:
                problems.append(
                    f"{rule.rule_id} passes {awaitable.explicit_args_arity} arguments to "
                    f"{awaitable.rule_id}, which takes {positional_parameters(callee)}"
                )
    from pants.engine.internals.rule_visitor import collect_awaitables

    import docker_mirror.compat as compat

    helpers = {f"docker_mirror.compat.{name}": getattr(compat, name) for name in compat.HELPERS}
    helpers.update(
        (f"{module.__name__}.{name}", value)
        for module in modules
        for name, value in vars(module).items()
        if inspect.isfunction(value) and value.__module__.startswith(compat.__name__)
        and value.__name__ == "call"
    )
    for name, helper in sorted(helpers.items()):
        if not collect_awaitables(helper):
            problems.append(f"the rule parser does not follow {name}")
    print(
        f"\n{len(plugin_rules)} rules of the plugin and {len(helpers)} engine helpers parsed by "
        f"Pants {VERSION}'s rule parser."
    )
    for problem in problems:
        print(f"error: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]).resolve()))
