"""Where Kubernetes objects keep container images, and finding them in a document.

A pod spec's images are those of its `initContainers`, `containers` and `ephemeralContainers`.
The workload kinds keep their pod spec at a known place; any other kind (a `PodTemplate`, an
Argo `Rollout`, a Knative `Service`, a KEDA `ScaledJob`, ...) is searched for pod templates: a
`template` whose `spec` has `containers`. A `List` (`kubectl get -o yaml`) is read item by item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from docker_mirror.extractor.yaml_documents import Document

POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class FoundImage:
    """An `image:` of a container: where it is, and its value as read (a `str` when valid)."""

    document: int
    kind: str
    name: str
    field: str  # e.g. spec.template.spec.containers[0].image
    value: Any
    line: int | None


def _text(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value else default


def images_in_document(document: Document) -> Iterator[FoundImage]:
    yield from _images_in_object(document, document.value, "")


def _images_in_object(document: Document, obj: Any, prefix: str) -> Iterator[FoundImage]:
    if not isinstance(obj, dict):
        return
    kind = _text(obj.get("kind"), "?")
    if kind == "List" and isinstance(obj.get("items"), list):
        for index, item in enumerate(obj["items"]):
            yield from _images_in_object(document, item, f"{prefix}items[{index}].")
        return
    metadata = obj.get("metadata")
    name = _text(metadata.get("name") if isinstance(metadata, dict) else None, "?")
    path = POD_SPEC_PATHS.get(kind)
    if path is not None:
        pod_spec: Any = obj
        for key in path:
            pod_spec = pod_spec.get(key) if isinstance(pod_spec, dict) else None
        pod_specs = [(prefix + ".".join(path), pod_spec)]
    else:
        pod_specs = [(prefix + field, spec) for field, spec in _pod_templates(obj)]
    for field, spec in pod_specs:
        for container_list in CONTAINER_LISTS:
            containers = spec.get(container_list) if isinstance(spec, dict) else None
            if not isinstance(containers, list):
                continue
            for index, container in enumerate(containers):
                if isinstance(container, dict) and "image" in container:
                    yield FoundImage(
                        document.number,
                        kind,
                        name,
                        f"{field}.{container_list}[{index}].image",
                        container["image"],
                        document.image_lines.get(id(container)),
                    )


def _pod_templates(obj: dict) -> Iterator[tuple[str, dict]]:
    """(field path, pod spec) of every pod template in `obj`, searched without recursion (the
    reader bounds how many nodes there are, aliases included)."""
    pending: list[tuple[str, Any]] = [("", obj)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            items = [(str(key), child) for key, child in value.items()]
            for key, child in items:
                spec = child.get("spec") if key == "template" and isinstance(child, dict) else None
                if isinstance(spec, dict) and isinstance(spec.get("containers"), list):
                    yield f"{path}{key}.spec", spec
                    continue
                pending.append((f"{path}{key}.", child))
        elif isinstance(value, list):
            pending.extend((f"{path[:-1]}[{i}].", child) for i, child in enumerate(value))
