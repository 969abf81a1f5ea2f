"""Where Kubernetes objects keep container images: every mapping of a document is searched,
whatever its `kind`, since CRDs and policies hold pod specs anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional, Tuple

from docker_mirror.extractor.yaml_documents import Document

CONTAINER_LISTS = frozenset({"initContainers", "containers", "ephemeralContainers"})
# Kyverno: `spec.rules[].validate.pattern` (and `anyPattern`) match objects, they are none.
_PATTERN_KEYS = frozenset({"pattern", "anyPattern"})
_PATTERNS_PARENT = "validate"

# A field path, built only for the images found: (parent, step), a step a key or a list index.
_Path = Optional[Tuple[Any, Any]]
# (kind, name) of the object that holds a value, None above the first object.
_Owner = Optional[Tuple[Optional[str], Optional[str]]]


@dataclass(frozen=True)
class FoundImage:
    """An `image:` of a container: where it is, and its value as read (a `str` when valid).

    `kind` and `name` are those of its object, None where it has none."""

    document: int
    kind: str | None
    name: str | None
    field: str  # e.g. spec.template.spec.containers[0].image
    value: Any
    line: int | None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _name(obj: dict) -> str | None:
    metadata = obj.get("metadata")
    return _text(metadata.get("name")) if isinstance(metadata, dict) else None


def _is_list(obj: dict, kind: str) -> bool:
    """`kind: List` (`kubectl get -o yaml`), or an API list such as `PodList`."""
    return kind.endswith("List") and isinstance(obj.get("items"), list)


def _field(path: _Path) -> str:
    steps = []
    while path is not None:
        path, step = path
        steps.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    text = "".join(reversed(steps))
    return text[1:] if text.startswith(".") else text


def images_in_document(document: Document) -> Iterator[FoundImage]:
    """Every image of every container list of `document`, in document order.

    Searched without recursion, each node once per path to it: the reader bounds how many nodes
    there are, aliases included, and refuses cycles."""
    root = document.value
    document_owner = (None, _name(root) if isinstance(root, dict) else None)
    # (value, its path, the key it is under, its object)
    pending: list[tuple[Any, _Path, Any, _Owner]] = [(root, None, None, None)]
    while pending:
        value, path, key, owner = pending.pop()
        if isinstance(value, list):
            if key in CONTAINER_LISTS:
                yield from _images_in_containers(document, value, path, owner or document_owner)
            pending.extend(
                (child, (path, index), None, owner)
                for index, child in reversed(list(enumerate(value)))
            )
            continue
        if not isinstance(value, dict):
            continue
        if owner is None:
            kind = _text(value.get("kind"))
            if kind is not None and not _is_list(value, kind):
                owner = (kind, _name(value))
        children = []
        for child_key, child in value.items():
            if key == _PATTERNS_PARENT and child_key in _PATTERN_KEYS:
                continue
            children.append((child, (path, str(child_key)), child_key, owner))
        pending.extend(reversed(children))


def _images_in_containers(
    document: Document, containers: list, path: _Path, owner: tuple[str | None, str | None]
) -> Iterator[FoundImage]:
    for index, container in enumerate(containers):
        if isinstance(container, dict) and "image" in container:
            yield FoundImage(
                document.number,
                owner[0],
                owner[1],
                _field(((path, index), "image")),
                container["image"],
                document.image_lines.get(id(container)),
            )
