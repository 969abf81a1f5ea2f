"""The image extractor, `python -m docker_mirror.extractor REQUEST.json RESULT.json`: the
container images of Kubernetes YAML files, or one line saying why a file could not be read."""

from __future__ import annotations

import json
import sys
from typing import Any

from docker_mirror.extractor.kubernetes import images_in_document
from docker_mirror.extractor.yaml_documents import Scalar, YamlRefused, read_documents

VERSION = 1


def _json_value(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"image": value}
    if isinstance(value, Scalar):
        return {"image": None, "type": value.kind, "text": value.text[:80]}
    return {"image": None, "type": type(value).__name__.replace("dict", "mapping").replace("list", "sequence")}


def extract_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            content = file.read()
        images = [
            {
                "document": found.document,
                "kind": found.kind,
                "name": found.name,
                "field": found.field,
                "line": found.line,
                **_json_value(found.value),
            }
            for document in read_documents(content)
            for found in images_in_document(document)
        ]
    except YamlRefused as e:
        return {"path": path, "error": str(e), "images": []}
    except (OSError, MemoryError, RecursionError) as e:
        return {"path": path, "error": f"could not be read: {type(e).__name__}: {e}", "images": []}
    return {"path": path, "error": None, "images": images}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m docker_mirror.extractor REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    with open(argv[1], "rb") as file:
        request = json.load(file)
    results = [extract_file(path) for path in request["files"]]
    with open(argv[2], "w", encoding="utf-8") as file:
        json.dump({"version": VERSION, "files": results}, file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
