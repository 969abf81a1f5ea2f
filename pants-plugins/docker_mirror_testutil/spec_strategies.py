"""Hypothesis strategies that generate the spec-file grammar, and the hypothesis settings
profiles, shared by the property tests (`test_spec_properties.py`, `test_trust_boundaries.py`).

Profiles: `bounded` (the default: CI and `pants test`) and `long` (by hand), picked with the
`HYPOTHESIS_PROFILE` environment variable; `HYPOTHESIS_MAX_EXAMPLES` overrides the count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from docker_mirror_testutil.spec_grammar import ModelEntry, ModelReference

settings.register_profile(
    "bounded",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "100")),
    # Generous: the machine is shared with other test runs; a slow example is not a failure
    # here (the timing tests in spec_files/parser_test.py bound the parser's speed).
    deadline=timedelta(seconds=10),
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "20000")),
    deadline=timedelta(seconds=30),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bounded"))

# --------------------------------------------------------------------------------------------
# Strategies: the grammar

LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
LETTERS_DIGITS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TAG_CHARS = LETTERS_DIGITS + "_.-"

alphanumerics = st.text(LOWER_ALNUM, min_size=1, max_size=6)
separators = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def path_components(draw: st.DrawFn) -> str:
    parts = [draw(alphanumerics)]
    for _ in range(draw(st.integers(0, 3))):
        parts += [draw(separators), draw(alphanumerics)]
    return "".join(parts)


path_component = st.one_of(
    path_components(),
    # Words that mean something elsewhere: the AS keyword, Dockerfile instructions, a host.
    st.sampled_from(["library", "as", "from", "run", "localhost", "a", "0", "sha256"]),
    st.text(LOWER_ALNUM, min_size=60, max_size=130),  # pushes names towards the 255 limit
)

domain_labels = st.one_of(
    st.text(LETTERS_DIGITS, min_size=1, max_size=1),
    st.builds(
        lambda first, middle, last: first + middle + last,
        st.text(LETTERS_DIGITS, min_size=1, max_size=1),
        st.text(LETTERS_DIGITS + "-", max_size=8),
        st.text(LETTERS_DIGITS, min_size=1, max_size=1),
    ),
)
ports = st.one_of(st.integers(0, 65535).map(str), st.sampled_from(["5000", "00443", "0"]))
optional_port = st.one_of(st.just(""), ports.map(lambda port: f":{port}"))
ipv6_addresses = st.ip_addresses(v=6).flatmap(
    lambda address: st.sampled_from(
        [str(address), address.exploded, str(address).upper(), address.exploded.upper()]
    )
).filter(lambda text: "." not in text)  # IPv4-mapped forms are outside the grammar

hosts = st.one_of(
    st.builds(lambda port: f"localhost{port}", optional_port),
    st.builds(
        lambda labels, port: ".".join(labels) + port,
        st.lists(domain_labels, min_size=2, max_size=4),
        optional_port,
    ),
    # A single label is a host only with a port (`registry:5000/app`) or an upper-case letter
    # (`LOCALDOMAIN/app`, as Docker reads it).
    st.builds(lambda label, port: f"{label}:{port}", domain_labels, ports),
    st.builds(
        lambda label, upper, port: label + upper + port,
        st.text(LETTERS_DIGITS, min_size=1, max_size=3),
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=3),
        optional_port,
    ),
    st.builds(lambda address, port: f"{address}{port}", st.ip_addresses(v=4).map(str), optional_port),
    st.builds(lambda address, port: f"[{address}]{port}", ipv6_addresses, optional_port),
    st.sampled_from(["docker.io", "ghcr.io", "registry-1.docker.io", "127.0.0.1:5000", "[::1]:5000"]),
)

tags = st.one_of(
    st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(LETTERS_DIGITS + "_"),
        st.text(TAG_CHARS, max_size=12),
    ),
    st.sampled_from(["latest", "3.12-slim", "_", "1.0.0-rc.1", "A" * 128, "v" + "-" * 127]),
)
digests = st.binary(min_size=32, max_size=32).map(lambda raw: f"sha256:{raw.hex()}")


def looks_like_host(component: str) -> bool:
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component.lower() != component
    )


def path_length(registry: Optional[str], repository: str) -> int:
    """The path's length as Docker limits it: `library/` counted on Docker Hub without a
    namespace."""
    docker_hub = registry in (None, "docker.io", "index.docker.io")
    return len(repository) + (len("library/") if docker_hub and "/" not in repository else 0)


@dataclass(frozen=True)
class GeneratedReference:
    text: str
    model: ModelReference

    @property
    def repository_offset(self) -> int:
        return len(self.model.registry) + 1 if self.model.registry else 0


@st.composite
def references(draw: st.DrawFn, *, max_path_length: int = 255) -> GeneratedReference:
    registry = draw(st.one_of(st.none(), hosts))
    components = draw(st.lists(path_component, min_size=1, max_size=4))
    # Without a host, a first component that looks like one would be read as a host.
    assume(registry is not None or len(components) == 1 or not looks_like_host(components[0]))
    repository = "/".join(components)
    name = f"{registry}/{repository}" if registry else repository
    assume(path_length(registry, repository) <= max_path_length)
    tag = draw(st.one_of(st.none(), tags))
    digest = draw(st.one_of(st.none(), digests))
    text = name + (f":{tag}" if tag is not None else "") + (f"@{digest}" if digest else "")
    # 64 hex digits alone are an image ID, not a name.
    assume(not (len(text) == 64 and all(c in "0123456789abcdef" for c in text)))
    return GeneratedReference(text, ModelReference(registry, repository, tag, digest))


platform_components = st.one_of(
    path_components().filter(lambda c: "__" not in c and "--" not in c),
    st.sampled_from(["linux", "windows", "amd64", "arm64", "arm", "v7", "v8", "386", "ppc64le"]),
)
platforms = st.one_of(
    st.lists(platform_components, min_size=2, max_size=3).map("/".join),
    st.sampled_from(["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "windows/amd64"]),
)
stage_names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(LETTERS_DIGITS[:52]),
    st.text(LETTERS_DIGITS + "_.-", max_size=10),
) | st.sampled_from(["base", "AS", "as", "FROM", "x" * 128])

blanks = st.one_of(
    st.text(" \t", min_size=1, max_size=3),
    # Past 1 kB a line skips the parser's whole-line regex: cover that path too.
    st.just(" " * 1030),
)
optional_blanks = st.one_of(st.just(""), blanks)
printable_chars = st.characters(blacklist_categories=("Cs",)).filter(
    lambda c: c.isprintable() or c == "\t"
)
comment_texts = st.one_of(
    st.text(printable_chars, max_size=20),
    st.sampled_from([" $(id)", "RUN rm -rf /", "\\", "'\"`", " AS x", "#", "\u00e9\u2713"]),
)


@dataclass(frozen=True)
class GeneratedLine:
    """A valid spec line, where its parts sit, and what it means."""

    text: str
    reference: GeneratedReference
    reference_start: int
    code_end: int  # where the comment starts (len(text) without one)
    model: ModelEntry

    @property
    def from_instruction(self) -> str:
        platform = f"--platform={self.model.platform} " if self.model.platform else ""
        return f"FROM {platform}{self.reference.text}"


@st.composite
def spec_lines(draw: st.DrawFn, reference_strategy: Optional[st.SearchStrategy] = None) -> GeneratedLine:
    platform = draw(st.one_of(st.none(), platforms))
    reference = draw(references() if reference_strategy is None else reference_strategy)
    stage_name = draw(st.one_of(st.none(), stage_names))
    text = draw(optional_blanks)
    if platform is not None:
        text += f"--platform={platform}" + draw(blanks)
    reference_start = len(text)
    text += reference.text
    if stage_name is not None:
        keyword = draw(st.sampled_from(["AS", "as", "As", "aS"]))
        text += draw(blanks) + keyword + draw(blanks) + stage_name
    text += draw(optional_blanks)
    code_end = len(text)
    comment = draw(st.one_of(st.none(), comment_texts))
    if comment is not None:
        if not text or text[-1] not in " \t":
            text += draw(blanks)
            code_end = len(text)
        text += "#" + comment
    return GeneratedLine(
        text, reference, reference_start, code_end, ModelEntry(platform, reference.model, stage_name)
    )


blank_lines = st.text(" \t", max_size=4)
comment_lines = st.builds(lambda lead, text: f"{lead}#{text}", st.text(" \t", max_size=2), comment_texts)
