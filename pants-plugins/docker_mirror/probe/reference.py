"""Image references, as `docker_mirror.image_reference` reads them, and where to ask for them.

The probe runs in its own interpreter without Pants, so it cannot import
`docker_mirror.image_reference`; this module holds the same grammar (anchored ASCII regexes,
`fullmatch` only), and `reference_test.py` checks that both read every reference alike. What
is accepted here is safe to put in a URL path as is: path components are `[a-z0-9._-]`, tags
`[A-Za-z0-9_.-]` and digests `sha256:<hex>`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Optional

DOCKER_HUB = "docker.io"
# Docker Hub's registry API lives on another host than its name, and its official images sit
# under `library/`.
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = (
    rf"(?:localhost|{_LABEL}(?:\.{_LABEL})+|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
    rf"|{_LABEL}:[0-9]+"
)
_REFERENCE = re.compile(
    rf"(?:(?P<registry>{_HOST})/)?"
    rf"(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?",
    re.ASCII,
)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
_MAX_NAME_LENGTH = 255
_MAX_REFERENCE_LENGTH = 1024


def _looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


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
        if len(text) > _MAX_REFERENCE_LENGTH:
            raise InvalidReference("invalid image reference: too long")
        match = _REFERENCE.fullmatch(text)
        if not match:
            raise InvalidReference("invalid image reference")
        registry, repository = match["registry"], match["repository"]
        if registry is None:
            # `a.b/c` is a host and a path: the regex only takes hosts of that shape, so a first
            # component like `a_b.c` followed by `/` lands here, and is not a valid reference.
            first, slash, _ = repository.partition("/")
            if slash and _looks_like_host(first):
                raise InvalidReference("invalid image reference: invalid registry host")
        elif registry.startswith("["):
            try:
                ipaddress.IPv6Address(registry[1 : registry.index("]")])
            except ValueError:
                raise InvalidReference("invalid image reference: invalid IPv6 host") from None
        name = f"{registry}/{repository}" if registry else repository
        if len(name) > _MAX_NAME_LENGTH:
            raise InvalidReference("invalid image reference: name too long")
        return cls(text, registry or DOCKER_HUB, repository, match["tag"], match["digest"])

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
