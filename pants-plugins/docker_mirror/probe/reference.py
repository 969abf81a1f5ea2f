"""Image references as the registry API names them: which host serves a reference, under which
repository name and manifest path.

The grammar is `docker_mirror.oci.reference`'s (a module of the standard library only, shipped
in the probe's PEX with it). What it accepts is safe to put in a URL path as is: path components
are `[a-z0-9._-]`, tags `[A-Za-z0-9_.-]` and digests `sha256:<hex>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from docker_mirror.oci.reference import DOCKER_HUB_NAMES, ImageReference

# Docker Hub's registry API lives on another host than its name, and its official images sit
# under `library/`.
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
DOCKER_HUB_ALIASES = DOCKER_HUB_NAMES


class InvalidReference(ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    """A parsed reference: `registry` is the host as written (`docker.io` when none is)."""

    text: str
    registry: str
    repository: str
    tag: Optional[str]
    digest: Optional[str]

    @classmethod
    def parse(cls, text: str) -> Reference:
        try:
            parsed = ImageReference.parse(text)
        except ValueError as e:
            raise InvalidReference(f"invalid image reference: {e}") from None
        return cls(text, parsed.registry_host, parsed.repository, parsed.tag, parsed.digest)

    @property
    def is_docker_hub(self) -> bool:
        return self.registry.lower() in DOCKER_HUB_ALIASES

    @property
    def endpoint(self) -> str:
        """The `host[:port]` that serves the registry API."""
        return DOCKER_HUB_ENDPOINT if self.is_docker_hub else self.registry

    @property
    def remote_name(self) -> str:
        """The repository as the registry API names it (`library/` added on Docker Hub)."""
        if self.is_docker_hub and "/" not in self.repository:
            return f"library/{self.repository}"
        return self.repository

    @property
    def manifest_reference(self) -> str:
        """The digest when there is one (a tag beside it is only a label), else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def manifest_path(self) -> str:
        return f"/v2/{self.remote_name}/manifests/{self.manifest_reference}"

    @property
    def shown(self) -> str:
        """`repository:tag` or `repository@digest`, for messages."""
        separator = "@" if self.digest else ":"
        return f"{self.repository}{separator}{self.manifest_reference}"
