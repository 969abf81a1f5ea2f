"""Image references and platforms: the OCI distribution grammar, read as Docker reads it, in one
home. A trust boundary: an accepted value ends up verbatim in a `FROM` line and in requests."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from docker_mirror.oci.media_types import DIGEST, DIGEST_SOURCE
from docker_mirror.oci.untrusted_text import quote

_T = TypeVar("_T")

DOCKER_HUB = "docker.io"
# Every name Docker Hub goes by: a reference without a host names it as `docker.io`; its
# registry API answers at `registry-1.docker.io`, and Docker's config files say `index.docker.io`.
DOCKER_HUB_NAMES = (DOCKER_HUB, "index.docker.io", "registry-1.docker.io")
# Docker Hub's registry API lives on another host than its name.
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"

# The grammar, as regex sources; error messages quote them so users see what is allowed.
_PATH_COMPONENT_SOURCE = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_LABEL_SOURCE = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_IPV6_SOURCE = r"\[[0-9A-Fa-f:]+\]"
_TAG_SOURCE = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_PLATFORM_COMPONENT_SOURCE = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"

# Only what `_looks_like_host` calls a host: with a '.' or a port, `localhost`, IPv6, or a single
# label with an upper-case letter (the lookahead). So a plain first path component never takes a
# detour through this branch.
_HOST_SOURCE = (
    rf"(?:localhost|{_DOMAIN_LABEL_SOURCE}(?:\.{_DOMAIN_LABEL_SOURCE})+|{_IPV6_SOURCE}"
    rf"|(?=[a-z0-9-]*[A-Z]){_DOMAIN_LABEL_SOURCE})"
    rf"(?::[0-9]+)?|{_DOMAIN_LABEL_SOURCE}:[0-9]+"
)
REFERENCE_SOURCE = (
    rf"(?:(?P<registry>{_HOST_SOURCE})/)?"
    rf"(?P<repository>{_PATH_COMPONENT_SOURCE}(?:/{_PATH_COMPONENT_SOURCE})*)"
    rf"(?::(?P<tag>{_TAG_SOURCE}))?"
    rf"(?:@(?P<digest>{DIGEST_SOURCE}))?"
)
PLATFORM_SOURCE = rf"{_PLATFORM_COMPONENT_SOURCE}(?:/{_PLATFORM_COMPONENT_SOURCE}){{1,2}}"

# re.ASCII so that classes never widen to Unicode; always used with fullmatch, never with `$`
# (which would also match before a trailing newline).
_PATH_COMPONENT = re.compile(_PATH_COMPONENT_SOURCE, re.ASCII)
_PATH = re.compile(rf"{_PATH_COMPONENT_SOURCE}(?:/{_PATH_COMPONENT_SOURCE})*", re.ASCII)
# With `.match` on path + "/": ends where the first invalid component starts.
_VALID_PATH_PREFIX = re.compile(rf"(?:{_PATH_COMPONENT_SOURCE}/)*", re.ASCII)
_PATH_FORBIDDEN_CHAR = re.compile(r"[^a-z0-9._-]", re.ASCII)
_DOMAIN_LABEL = re.compile(_DOMAIN_LABEL_SOURCE, re.ASCII)
_IPV6_BODY = re.compile(r"[0-9A-Fa-f:]+", re.ASCII)
_PORT = re.compile(r"[0-9]+", re.ASCII)
_TAG = re.compile(_TAG_SOURCE, re.ASCII)
_DIGEST_ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*", re.ASCII)
_PLATFORM = re.compile(PLATFORM_SOURCE, re.ASCII)
_PLATFORM_COMPONENT = re.compile(_PLATFORM_COMPONENT_SOURCE, re.ASCII)
_REFERENCE = re.compile(REFERENCE_SOURCE, re.ASCII)
# Defense in depth: the union of all characters any part of a reference may contain.
_REFERENCE_CHARS = re.compile(r"[A-Za-z0-9._:/@\[\]-]+", re.ASCII)

# Of the path after the host (distribution/reference's NameTotalLengthMax, on the path alone since
# 2024), as Docker reads it: `library/` included for a Docker Hub name without a namespace.
_MAX_PATH_LENGTH = 255
# Docker's spellings of Docker Hub in a reference (`registry-1.docker.io` is its API's host, which
# Docker does not rename), and the namespace of its official images.
_DOCKER_HUB_SPELLINGS = (DOCKER_HUB, "index.docker.io")
OFFICIAL_NAMESPACE = "library/"
# What `docker` prints for an image ID, and refuses as a name (anchoredIdentifierRegexp).
_IMAGE_ID = re.compile(r"[a-f0-9]{64}", re.ASCII)
# The digest algorithms Docker accepts besides sha256 (go-digest's), which this project refuses.
_OTHER_DOCKER_DIGESTS = ("sha384", "sha512")
_MAX_TAG_LENGTH = 128
# Longer input skips the fast-path regexes, so they never run on unbounded text.
FAST_PATH_MAX_LENGTH = 1024


def build_validated(cls: type[_T], values: tuple[Any, ...]) -> _T:
    """An instance of a frozen dataclass from values the parser has just validated.

    Skips `__post_init__`, whose re-validation (meant for direct construction) would double
    the cost of parsing large files; filling `__dict__` directly bypasses the frozen
    `__setattr__` just like the dataclass-generated `__init__` does, only faster.
    """
    instance = object.__new__(cls)
    instance.__dict__.update(zip(cls.__dataclass_fields__, values))  # type: ignore[attr-defined]
    return instance


def _looks_like_host(component: str) -> bool:
    # Docker's rule (splitDockerDomain): otherwise `bitnami/redis` would read as host "bitnami".
    # An upper-case letter makes a host too (`LOCALDOMAIN/debian`): a path has none.
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component.lower() != component
    )


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _is_official_docker_hub_name(registry: str | None, path: str) -> bool:
    """Whether Docker puts `library/` before `path`: a Docker Hub name without a namespace."""
    return (registry is None or registry in _DOCKER_HUB_SPELLINGS) and "/" not in path


def _path_length(registry: str | None, path: str) -> int:
    """The length of the path as Docker reads it (and limits it)."""
    extra = len(OFFICIAL_NAMESPACE) if _is_official_docker_hub_name(registry, path) else 0
    return len(path) + extra


def fast_name_ok(registry: str | None, repository: str) -> bool:
    """The rules the fast-path regexes cannot express; False sends to the slow path.

    A path component with '.' (like `a_b.c`) is valid, but as a first component followed by
    '/' it is a host, and an invalid one; lengths and IPv6 values are not checked by regexes,
    nor whether a name alone is an image ID (the slow path looks at its tag and digest).
    """
    if registry is None:
        if "/" in repository and _looks_like_host(repository.partition("/")[0]):
            return False
        if len(repository) == 64 and _IMAGE_ID.fullmatch(repository):
            return False
    elif registry[0] == "[" and not _is_ipv6(registry[1 : registry.index("]")]):
        return False
    return _path_length(registry, repository) <= _MAX_PATH_LENGTH


def _check_registry(registry: str) -> None:
    if registry.startswith("["):
        end = registry.find("]")
        if end == -1:
            raise ValueError(
                f"invalid registry host {quote(registry)}: missing ']' after IPv6 address"
            )
        body, rest = registry[1:end], registry[end + 1 :]
        if not _IPV6_BODY.fullmatch(body):
            raise ValueError(
                f"invalid IPv6 address {quote(body)} in registry host {quote(registry)}"
            )
        if not _is_ipv6(body):
            raise ValueError(
                f"invalid IPv6 address {quote(body)} in registry host {quote(registry)} "
                "(Docker takes any hex digits and colons between brackets; this project takes "
                "only an IPv6 address, since it connects to the host)"
            )
        if rest and not rest.startswith(":"):
            raise ValueError(
                f"invalid registry host {quote(registry)}: unexpected {quote(rest)} after ']'"
            )
        port = rest[1:] if rest else None
    else:
        hostname, colon, port_text = registry.partition(":")
        port = port_text if colon else None
        for label in hostname.split("."):
            if not _DOMAIN_LABEL.fullmatch(label):
                what = "empty label" if not label else f"invalid label {quote(label)}"
                raise ValueError(
                    f"invalid registry host {quote(registry)}: {what} "
                    f"(labels must match {_DOMAIN_LABEL_SOURCE})"
                )
    if port is not None and not _PORT.fullmatch(port):
        raise ValueError(
            f"invalid registry port {quote(port)} in {quote(registry)} (digits only)"
        )


def _path_component_problem(component: str, name: str) -> ValueError:
    """The error for an invalid path component, saying what is wrong with it."""
    where = f" in image name {quote(name)}" if component != name else ""
    if not component:
        return ValueError(f"empty path component{where}")
    bad_char = _PATH_FORBIDDEN_CHAR.search(component)
    if bad_char:
        problem = f"character {quote(bad_char.group())} is not allowed"
        if _PATH_COMPONENT.fullmatch(component.lower()):
            problem = "upper-case letters are not allowed"
    else:
        problem = "separators . _ __ - must sit between lowercase letters or digits"
    return ValueError(
        f"invalid path component {quote(component)}{where}: {problem} "
        f"(allowed: {_PATH_COMPONENT_SOURCE})"
    )


def _check_tag(tag: str) -> None:
    if _TAG.fullmatch(tag):
        return
    if not tag:
        raise ValueError("empty tag after ':'")
    if len(tag) > _MAX_TAG_LENGTH:
        raise ValueError(
            f"tag is {len(tag)} characters long (at most {_MAX_TAG_LENGTH} allowed)"
        )
    raise ValueError(f"invalid tag {quote(tag)} (allowed: {_TAG_SOURCE})")


def _check_digest(digest: str) -> None:
    if DIGEST.fullmatch(digest):
        return
    if not digest:
        raise ValueError("empty digest after '@'")
    algorithm, colon, _ = digest.partition(":")
    if colon and algorithm != "sha256" and _DIGEST_ALGORITHM.fullmatch(algorithm):
        why = ""
        if algorithm in _OTHER_DOCKER_DIGESTS:
            why = (
                f"; Docker also takes {' and '.join(_OTHER_DOCKER_DIGESTS)}, but pins, digest "
                "tags and the comparisons with what registries serve are sha256 here"
            )
        raise ValueError(
            f"unsupported digest algorithm {quote(algorithm)} (only sha256 is accepted{why})"
        )
    raise ValueError(
        f"invalid digest {quote(digest)} (expected sha256: followed by 64 lowercase hex digits)"
    )


def _path_too_long(registry: str | None, path: str) -> ValueError:
    length = _path_length(registry, path)
    counted = "the registry host not counted"
    if _is_official_docker_hub_name(registry, path):
        counted = f"with the {quote(OFFICIAL_NAMESPACE)} Docker puts before a Docker Hub name"
    return ValueError(
        f"image path is {length} characters long ({counted}; at most {_MAX_PATH_LENGTH} allowed)"
    )


def _host_problem(error: ValueError, name: str) -> ValueError:
    """`error` about the host of `name`, saying why when Docker would accept `name` anyway."""
    if len(name) <= FAST_PATH_MAX_LENGTH and _PATH.fullmatch(name):
        return ValueError(
            f"{error}; a first component with '.' is a registry host here, where "
            f"distribution/reference would read {quote(name)} as a path under no registry at "
            "all, which no registry serves"
        )
    return error


def check_reference(text: str) -> tuple[str | None, str, str | None, str | None]:
    """The slow path: splits `text` by hand and checks each part, naming the first bad one."""
    if not text:
        raise ValueError("empty image reference")
    if text.startswith("-"):
        # Would be read as an option by `docker` and friends.
        raise ValueError(f"image reference {quote(text)} must not start with '-'")
    if _IMAGE_ID.fullmatch(text):
        raise ValueError(
            f"{quote(text)} looks like an image ID (64 hex digits), not an image name: Docker "
            "refuses it as ambiguous (for a repository of that name, add a tag or its namespace, "
            "library/<hex>)"
        )
    name_and_tag, at, digest_text = text.partition("@")
    digest = digest_text if at else None
    # The tag colon is the last one after the last '/': earlier colons belong to a host:port.
    last_slash = name_and_tag.rfind("/")
    colon = name_and_tag.rfind(":")
    tag: str | None
    if colon > last_slash:
        name, tag = name_and_tag[:colon], name_and_tag[colon + 1 :]
    else:
        name, tag = name_and_tag, None
    if not name:
        raise ValueError(f"missing image name in {quote(text)}")
    registry: str | None = None
    path = name
    first, slash, rest = name.partition("/")
    if slash and _looks_like_host(first):
        registry, path = first, rest
    # Checked first: it also bounds the input of the path's regexes below (the host's checks
    # are one label or address at a time, in linear time).
    if _path_length(registry, path) > _MAX_PATH_LENGTH:
        raise _path_too_long(registry, path)
    if registry is not None:
        try:
            _check_registry(registry)
        except ValueError as e:
            raise _host_problem(e, name) from None
    # One regex call for the whole path, and one more to find the bad component if any.
    if not _PATH.fullmatch(path):
        start = _VALID_PATH_PREFIX.match(path + "/").end()  # type: ignore[union-attr]
        raise _path_component_problem(path[start:].partition("/")[0], name)
    if tag is not None:
        _check_tag(tag)
    if digest is not None:
        _check_digest(digest)
    if not _REFERENCE_CHARS.fullmatch(text):  # pragma: no cover - unreachable by construction
        raise ValueError(f"invalid character in image reference {quote(text)}")
    return registry, path, tag, digest


def _split_reference(text: str) -> tuple[str | None, str, str | None, str | None]:
    """(registry, repository, tag, digest) of `text`; raises ValueError naming the bad part."""
    if len(text) <= FAST_PATH_MAX_LENGTH:
        match = _REFERENCE.fullmatch(text)
        if match and fast_name_ok(match["registry"], match["repository"]):
            return match["registry"], match["repository"], match["tag"], match["digest"]
    return check_reference(text)


@dataclass(frozen=True)
class ImageReference:
    """An image reference as written, split into its parts; valid by construction."""

    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    def __post_init__(self) -> None:
        # Direct construction must not bypass validation: the value ends up in a Dockerfile.
        parts = (self.registry, self.repository, self.tag, self.digest)
        if not isinstance(self.repository, str) or not all(
            part is None or isinstance(part, str) for part in parts
        ):
            raise ValueError(f"image reference parts must be strings: {parts!r}")
        if _split_reference(str(self)) != parts:
            raise ValueError(f"image reference parts do not round-trip: {parts!r}")

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def registry_host(self) -> str:
        """The registry the reference names, `docker.io` when it names none."""
        return self.registry or DOCKER_HUB

    @property
    def manifest_reference(self) -> str:
        """What to ask the registry for: `name@digest` when there is a digest (a tag beside it is
        then only a label), else `name:tag`, `latest` by default."""
        if self.digest is not None:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or 'latest'}"

    def pinned(self, digest: str) -> str:
        """`name@digest`: the manifest `digest` of this image, immune to a tag moving."""
        return f"{self.name}@{digest}"

    @property
    def identity(self) -> ImageIdentity:
        """The image this reference names, as Docker reads it; see `ImageIdentity`."""
        registry = self.registry or DOCKER_HUB
        if registry in _DOCKER_HUB_SPELLINGS:
            registry = DOCKER_HUB
        repository = self.repository
        if _is_official_docker_hub_name(self.registry, repository):
            repository = OFFICIAL_NAMESPACE + repository
        tag = self.tag if self.tag is not None or self.digest is not None else "latest"
        # Made once per spec line: filled directly, like the parser's own values.
        return build_validated(ImageIdentity, (registry, repository, tag, self.digest))

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        return build_validated(cls, _split_reference(text))

    # Where the registry API serves it.

    @property
    def is_docker_hub(self) -> bool:
        return self.registry_host.lower() in DOCKER_HUB_NAMES

    @property
    def endpoint(self) -> str:
        """The `host[:port]` that serves the registry API (Docker Hub's is not `docker.io`)."""
        return DOCKER_HUB_ENDPOINT if self.is_docker_hub else self.registry_host

    @property
    def remote_name(self) -> str:
        """The repository as the registry API names it (`library/` added on Docker Hub)."""
        if self.is_docker_hub and "/" not in self.repository:
            return f"{OFFICIAL_NAMESPACE}{self.repository}"
        return self.repository

    @property
    def archive_repository(self) -> str:
        """`registry/repository` as an archive names the image (Docker Hub's as `docker.io`)."""
        host = DOCKER_HUB if self.is_docker_hub else self.registry_host.lower()
        return f"{host}/{self.remote_name}"

    @property
    def archive_name(self) -> str:
        """The name an archive's `index.json` gives the image (`archive_ref_name`)."""
        return archive_ref_name(self.archive_repository, self.tag_or_digest)

    @property
    def tag_or_digest(self) -> str:
        """The digest when there is one (a tag beside it is only a label), else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def manifest_path(self) -> str:
        return f"/v2/{self.remote_name}/manifests/{self.tag_or_digest}"

    @property
    def shown(self) -> str:
        """`repository:tag` or `repository@digest`, for messages."""
        separator = "@" if self.digest else ":"
        return f"{self.repository}{separator}{self.tag_or_digest}"


def archive_ref_name(repository: str, reference: str) -> str:
    """`registry/repository:tag` or `registry/repository@sha256:...`: the name an archive's
    `index.json` gives an image (`org.opencontainers.image.ref.name`), which `skopeo copy
    oci-archive:<tar>:<name>` reads."""
    return f"{repository}@{reference}" if reference.startswith("sha256:") else f"{repository}:{reference}"


class InvalidReference(ValueError):
    """A reference the grammar refuses, as the registry probe reports it."""


def parse_reference(text: str) -> ImageReference:
    try:
        return ImageReference.parse(text)
    except ValueError as e:
        raise InvalidReference(f"invalid image reference: {e}") from None


@dataclass(frozen=True)
class ImageIdentity:
    """A reference as Docker normalises it: two references name the same image exactly when
    their identities are equal. This is the one definition of "the same image" that spec files,
    extraction, the allowlist and `docker-mirror-pin` use.

    Docker's normalisation (distribution/reference `ParseNormalizedNamed` and `TagNameOnly`): no
    host is `docker.io`, and so is `index.docker.io`; a Docker Hub name without a namespace is
    under `library/`; no tag and no digest is `latest`. So `nginx`, `nginx:latest`,
    `library/nginx` and `docker.io/library/nginx:latest` are one image. A digest decides what is
    fetched, but a tag beside it stays part of the identity, since it is what the mirror pushes:
    `nginx:1.25@sha256:<d>` and `nginx@sha256:<d>` are two images (pushed as `1.25` and as
    `digest-sha256-<d>`). Hosts are compared as written, as Docker does (`registry-1.docker.io`, Docker
    Hub's API host, is not `docker.io` to Docker; it still is to the allowlist, which judges
    hosts).

    Not validated on construction: `ImageReference.identity` makes it from validated parts.
    """

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        """The canonical spelling: `docker.io/library/nginx:latest`."""
        return self._spelled(f"{self.registry}/{self.repository}")

    @property
    def familiar(self) -> str:
        """The spelling Docker prints (`docker.io/` and `library/` left out, the tag kept):
        `nginx:latest`, `bitnami/redis:7`, `ghcr.io/org/app:1`. It parses back to this identity."""
        name = f"{self.registry}/{self.repository}"
        # Left out only where the rest would not read as a host (`docker.io/0.0/x` stays whole).
        if self.registry == DOCKER_HUB and not _looks_like_host(self.repository.split("/")[0]):
            name = self.repository
            official = name[len(OFFICIAL_NAMESPACE) :]
            if name.startswith(OFFICIAL_NAMESPACE) and "/" not in official:
                name = official
        return self._spelled(name)

    def without_digest(self) -> ImageIdentity:
        """What a line with this identity follows when it is pinned: its tag (None for a line
        pinned by digest alone)."""
        return ImageIdentity(self.registry, self.repository, self.tag, None)

    def _spelled(self, name: str) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return f"{name}{tag}{digest}"


def registry_host(reference: str) -> str:
    """The registry host of a reference (`docker.io` when it names none), by the distribution
    grammar's rule alone: no other part is checked."""
    first, slash, _ = reference.partition("/")
    return first if slash and _looks_like_host(first) else DOCKER_HUB



# --------------------------------------------------------------------------------------------
# Platforms


def platform_problem(platform: str) -> str | None:
    if _PLATFORM.fullmatch(platform):
        return None
    expected = "expected <os>/<arch>[/<variant>], e.g. linux/amd64 or linux/arm64/v8"
    if not platform:
        return f"empty --platform value ({expected})"
    components = platform.split("/")
    if not 2 <= len(components) <= 3:
        return f"invalid platform {quote(platform)}: {len(components)} component(s), {expected}"
    for component in components:
        if not _PLATFORM_COMPONENT.fullmatch(component):
            what = "empty component" if not component else f"invalid component {quote(component)}"
            return (
                f"invalid platform {quote(platform)}: {what} "
                f"(allowed: {_PLATFORM_COMPONENT_SOURCE})"
            )
    return f"invalid platform {quote(platform)}"  # pragma: no cover - the checks above cover it


def is_valid_platform(platform: str) -> bool:
    return bool(_PLATFORM.fullmatch(platform))


def split_platform(platform: str) -> tuple[str, str, str | None]:
    """(os, architecture, variant) of `os/arch[/variant]`."""
    os_name, arch, *variant = platform.split("/")
    return os_name, arch, (variant[0] if variant else None)


def normalized_platform(platform: str) -> tuple[str, str, str | None]:
    """`split_platform`, with the variants containerd and Docker take as implied: arm64 means
    arm64/v8, arm means arm/v7, amd64 means amd64/v1."""
    os_name, arch, variant = split_platform(platform)
    if arch == "arm64" and variant == "v8":
        variant = None
    elif arch == "arm" and variant is None:
        variant = "v7"
    elif arch == "amd64" and variant == "v1":
        variant = None
    return os_name, arch, variant
