"""The documents of a YAML stream as plain values, built from PyYAML's parser events under limits
that hostile input cannot get around (alias bombs, recursive aliases, depth, size)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 200
MAX_ALIAS_NODES = 1_000_000

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_NULL = "tag:yaml.org,2002:null"

# libyaml's parser when the PyYAML wheel has it (every manylinux wheel does): about 10 times
# faster than the pure-Python one, which is used otherwise.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlRefused(Exception):
    """The stream is not valid YAML, or is beyond a limit: a message for the user, with the line
    (1-based) where it was found when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return self.message if self.line is None else f"{self.message} (line {self.line})"


@dataclass(frozen=True)
class Scalar:
    """A scalar that is not a string: its resolved tag (`int`, `bool`, `null`, ...) and text."""

    tag: str
    text: str

    @property
    def kind(self) -> str:
        prefix = "tag:yaml.org,2002:"
        return self.tag[len(prefix) :] if self.tag.startswith(prefix) else self.tag


@dataclass
class _Open:
    """A mapping or sequence being read."""

    value: Any
    anchor: str | None
    size: int = 1
    key: Any = None
    has_key: bool = False
    merges: list = field(default_factory=list)
    explicit: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Document:
    number: int  # 1-based, in the stream
    value: Any
    # The line (1-based) of every scalar value of a key `image`, by the id() of its mapping.
    image_lines: dict


def _line(event: Any) -> int | None:
    mark = getattr(event, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def read_documents(content: bytes) -> Iterator[Document]:
    """The documents of `content`, one by one; raises `YamlRefused` at the first problem."""
    if len(content) > MAX_FILE_BYTES:
        raise YamlRefused(
            f"the file is {len(content)} bytes long, more than the {MAX_FILE_BYTES} bytes read"
        )
    resolver = Resolver()
    try:
        yield from _documents(yaml.parse(content, Loader=_Loader), resolver)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = " ".join(part for part in (e.context, e.problem) if part)
        raise YamlRefused(f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise YamlRefused(f"invalid YAML: {e}") from None


def _documents(events: Iterator[Any], resolver: Resolver) -> Iterator[Document]:
    number = 0
    stack: list[_Open] = []
    anchors: dict[str, tuple[Any, int]] = {}
    alias_nodes = 0
    root: Any = None
    image_lines: dict[int, int] = {}

    def add(value: Any, size: int, event: Any) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        parent = stack[-1]
        parent.size += size
        if isinstance(parent.value, list):
            parent.value.append(value)
        elif not parent.has_key:
            if isinstance(value, (dict, list)):
                raise YamlRefused("a mapping or sequence as a mapping key is not supported", _line(event))
            parent.key, parent.has_key = value, True
        else:
            key = parent.key
            parent.has_key = False
            if isinstance(key, Scalar) and key.tag == _MERGE:
                sources = value if isinstance(value, list) else [value]
                if not all(isinstance(source, dict) for source in sources):
                    raise YamlRefused("a merge key (<<) must name mappings", _line(event))
                parent.merges.extend(sources)
            else:
                parent.explicit[key] = value
                if key == "image" and event.__class__ is ScalarEvent:
                    image_lines[id(parent.value)] = _line(event) or 0

    for event in events:
        # Exact classes, most frequent first: this loop is most of the reader's time.
        cls = event.__class__
        if cls is ScalarEvent:
            tag = event.tag
            if tag is None or tag == "!":
                tag = resolver.resolve(ScalarNode, event.value, event.implicit)
            value: Any = event.value if tag == _STR else Scalar(tag, event.value)
            if event.anchor is not None:
                anchors[event.anchor] = (value, 1)
            add(value, 1, event)
        elif cls is MappingStartEvent or cls is SequenceStartEvent:
            if len(stack) >= MAX_DEPTH:
                raise YamlRefused(f"nested more than {MAX_DEPTH} levels deep", _line(event))
            stack.append(_Open({} if cls is MappingStartEvent else [], event.anchor))
        elif cls is MappingEndEvent or cls is SequenceEndEvent:
            done = stack.pop()
            value = done.value
            if isinstance(value, dict):
                if done.has_key:  # pragma: no cover - the parser pairs every key with a value
                    raise YamlRefused("a mapping key has no value", _line(event))
                # YAML 1.1 merge keys: explicit keys win, and earlier sources over later ones.
                for source in reversed(done.merges):
                    value.update(source)
                value.update(done.explicit)
            if done.anchor is not None:
                anchors[done.anchor] = (value, done.size)
            add(value, done.size, event)
        elif cls is AliasEvent:
            if event.anchor not in anchors:
                if any(open_.anchor == event.anchor for open_ in stack):
                    raise YamlRefused(f"alias *{event.anchor} refers to itself", _line(event))
                raise YamlRefused(f"alias *{event.anchor} names no anchor before it", _line(event))
            value, size = anchors[event.anchor]
            alias_nodes += size
            if alias_nodes > MAX_ALIAS_NODES:
                raise YamlRefused(
                    f"its aliases expand to more than {MAX_ALIAS_NODES} nodes (a YAML bomb?)",
                    _line(event),
                )
            add(value, size, event)
        elif cls is DocumentStartEvent:
            number += 1
            root, anchors, image_lines = None, {}, {}
        elif cls is DocumentEndEvent:
            yield Document(number, root, image_lines)
