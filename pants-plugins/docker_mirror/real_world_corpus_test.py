"""The parser and the extractor on real public material that nobody here wrote (issue 18).

The corpus is `../shared/corpus/` beside the repository (its README names every source and
commit): image references in `refs/*.tsv` and Kubernetes manifests in `manifests/`. It is not
part of the project, so it is read from there, never copied in: `DOCKER_MIRROR_CORPUS` names
it, or else it is found from the repository root (`DOCKER_MIRROR_BUILD_ROOT`, which `./pants`
exports, since Pants runs tests in a sandbox elsewhere; the working directory under plain
pytest). Without it the tests skip, and fail under `CI=true`.

The expectations are written from the grammar and from reading the material, not from the code
under test: the references the corpus marks or shows as placeholders are refused, every other
one parses back exactly as written; distribution/reference's own test table is honoured; and
every `image:` line of every manifest is found by the extractor, but for the ones listed below
with the reason each is no container's.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from docker_mirror.goals.extraction import ExtractionError, check_generates, found_images, new_spec
from docker_mirror.extractor.__main__ import extract_file
from docker_mirror.oci.reference import ImageReference
from docker_mirror.spec_files.parser import SpecError, parse_spec, parse_spec_files
from docker_mirror_testutil.machine import REPO_ROOT, unavailable

CORPUS_ENV = "DOCKER_MIRROR_CORPUS"
BUILD_ROOT_ENV = "DOCKER_MIRROR_BUILD_ROOT"


def corpus_location() -> Path:
    named = os.environ.get(CORPUS_ENV)
    if named:
        return Path(named)
    root = Path(os.environ.get(BUILD_ROOT_ENV) or REPO_ROOT)
    return root.parent / "shared" / "corpus"


@pytest.fixture(scope="module")
def corpus() -> Path:
    location = corpus_location()
    if not (location / "refs").is_dir() or not (location / "manifests").is_dir():
        unavailable(
            f"no corpus at {location} (set {CORPUS_ENV}, or run through ./pants, which exports "
            f"{BUILD_ROOT_ENV}, with the corpus in ../shared/corpus beside the repository)"
        )
    return location


def rows(path: Path) -> Iterator[list[str]]:
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line and not line.startswith("#"):
            yield line.split("\t")


def cpu_seconds(work: Callable[[], object], runs: int = 3) -> float:
    """The least CPU time of `runs` runs: what the work costs, not what the machine is busy with."""
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


# --------------------------------------------------------------------------------------------
# References


@dataclass(frozen=True)
class Line:
    """A spec line split as the README's grammar has it: `[--platform=P] REF [AS NAME]`."""

    platform: str | None
    reference: str
    stage_name: str | None


def split_line(text: str) -> Line:
    words = text.split()
    platform = words.pop(0)[len("--platform=") :] if words[0].startswith("--platform=") else None
    if len(words) == 3 and words[1].lower() == "as":
        return Line(platform, words[0], words[2])
    assert len(words) == 1, text
    return Line(platform, words[0], None)


def parses_as_written(text: str) -> bool:
    """Whether `text` is accepted; if it is, it must mean exactly what is written."""
    try:
        (entry,) = parse_spec(f"{text}\n".encode(), "corpus.txt")
    except SpecError:
        return False
    expected = split_line(text)
    assert (str(entry.reference), entry.platform, entry.stage_name) == (
        expected.reference,
        expected.platform,
        expected.stage_name,
    ), text
    return True


# Read from the Dockerfiles: the lines that are templates of a `FROM` line, not one. Docker's
# docs write `%%IMAGE%%` and `<version>`, dotnet-docker's templates `{{baseImageTag}}`, and two
# Markdown blocks write a lone backtick and `ImageName`.
PLACEHOLDER = re.compile(r"%%[A-Z]+%%|<[a-z]+>|\{\{[A-Za-z_]+\}\}|^`$|^ImageName$")


def test_every_from_line_of_real_dockerfiles_parses_as_written_but_placeholders(corpus: Path) -> None:
    verdicts: Counter[tuple[str, bool]] = Counter()
    for repo, _commit, path, line, text in rows(corpus / "refs/dockerfile-from.tsv"):
        placeholder = bool(PLACEHOLDER.search(split_line(text).reference))
        accepted = parses_as_written(text)
        assert accepted != placeholder, f"{repo} {path}:{line}: {text}"
        verdicts[repo, accepted] += 1
    print_figures("dockerfile-from.tsv", verdicts)
    assert sum(n for (_, ok), n in verdicts.items() if ok) == 658
    assert sum(n for (_, ok), n in verdicts.items() if not ok) == 62


def official_images(corpus: Path) -> list[str]:
    return [text for _library_file, text in rows(corpus / "refs/official-images-tags.tsv")]


def test_every_official_image_tag_parses_as_written(corpus: Path) -> None:
    lines = official_images(corpus)
    assert len(lines) == 9_849
    for text in lines:
        assert parses_as_written(text), text
    # One spec file of them all: no two lines are one image, and every line is an entry.
    content = ("\n".join(lines) + "\n").encode()
    assert len(parse_spec_files([("official.images.txt", content)])) == 9_849
    print_figures("official-images-tags.tsv", Counter({("docker-library/official-images", True): 9_849}))


def test_the_official_images_parse_well_under_a_second(corpus: Path) -> None:
    content = ("\n".join(official_images(corpus)) + "\n").encode()
    seconds = cpu_seconds(lambda: parse_spec_files([("official.images.txt", content)]))
    print(f"9,849 official-images lines: {seconds * 1000:.0f} ms of CPU")
    # About 0.1 s on a busy 2-core machine; CPU time, so other processes do not count.
    assert seconds < 0.5, seconds


def test_distribution_references_own_tests_are_honoured(corpus: Path) -> None:
    verdicts: Counter[tuple[str, bool]] = Counter()
    for test, _function, text, expected, _error in rows(corpus / "refs/upstream-tests.tsv"):
        try:
            parsed = ImageReference.parse(text)
        except ValueError:
            accepted = False
        else:
            accepted = True
            assert str(parsed) == text
        assert accepted == (expected == "valid"), f"{test}: {text!r} should be {expected}"
        # A spec line of it agrees (an empty line is blank, not a reference).
        if text:
            assert parses_as_written(text) == accepted, text
        verdicts[test.partition(":")[0], accepted] += 1
    print_figures("upstream-tests.tsv", verdicts)
    assert sum(verdicts.values()) == 110


def print_figures(source: str, verdicts: Counter[tuple[str, bool]]) -> None:
    """The figures of a source, for `pants test --output=all`."""
    accepted = sum(n for (_, ok), n in verdicts.items() if ok)
    refused = sum(n for (_, ok), n in verdicts.items() if not ok)
    print(f"{source}: {accepted} accepted, {refused} refused")
    for group in sorted({group for group, _ in verdicts}):
        print(f"  {group}: {verdicts[group, True]} accepted, {verdicts[group, False]} refused")


# --------------------------------------------------------------------------------------------
# Manifests

# From reading each file: the `image:` lines that are no container's, and why.
NOT_IN_A_CONTAINER_LIST = {
    "argoproj+argo-cd/resource_customizations/apps.kruise.io/DaemonSet/testdata/no-update-strategy-partition.yaml": {
        "my-k8s-rdmaplugin": "`containers` is a mapping there, not a list (Kubernetes would refuse the object)",
    },
    "argoproj+argo-cd/controller/testdata/pod-running-restart-always.yaml": {
        "alpine:latest": "`status.containerStatuses[0].image`: what ran, reported; the spec's is found",
    },
    **{
        f"argoproj+argo-cd/resource_customizations/monitoring.coreos.com/Prometheus/testdata/{name}.yaml": {
            "quay.io/prometheus/prometheus:v2.37.0": "a Prometheus object's own `spec.image`",
        }
        for name in ("degraded", "healthy", "progressing")
    },
    "prometheus-operator+kube-prometheus/manifests/prometheus-prometheus.yaml": {
        "quay.io/prometheus/prometheus:v3.13.2": "a Prometheus object's own `spec.image`",
    },
    "prometheus-operator+kube-prometheus/manifests/alertmanager-alertmanager.yaml": {
        "quay.io/prometheus/alertmanager:v0.33.1": "an Alertmanager object's own `spec.image`",
    },
}
# Files the extractor refuses, with its message: a Helm template, not YAML (`{{ ... }}` keys).
UNREADABLE = {
    "argoproj+argo-cd/test/e2e/testdata/helm-guestbook/templates/guestbook-ui-deployment.yaml": (
        "a mapping or sequence as a mapping key is not supported (line 8)"
    ),
}


def is_invalid_image(value: str) -> bool:
    """The container images that are no valid reference: Argo CD's tests of a deployment that
    never becomes healthy (`image: alpine:invalid!  # Bad image - will be stuck Progressing`), and
    Knative's sources for `ko`, which builds them and writes the references (`ko://<package>`)."""
    return value == "alpine:invalid!" or value.startswith("ko://")
# The images that the extractor missed before issue 18, as (kind/name, field, image) of a file.
ONCE_MISSED = {
    **{
        f"argoproj+argo-cd/resource_customizations/core.strimzi.io/StrimziPodSet/actions/testdata/{name}.yaml": [
            ("StrimziPodSet", "my-kafka-kafka", f"spec.pods[{n}].spec.containers[0].image",
             "quay.io/strimzi/kafka:0.45.0-kafka-4.0.0")
            for n in range(3)
        ]
        for name in ("strimzi-pod-set", "strimzi-pod-set-restarting")
    },
    **{
        f"argoproj+argo-cd/resource_customizations/policy.open-cluster-management.io/Policy/testdata/{name}.yaml": [
            ("Policy", policy,
             "spec.policy-templates[1].objectDefinition.spec.object-templates[0].objectDefinition.spec"
             ".containers[0].image",
             "registry.redhat.io/rhel9/httpd-24:latest")
        ]
        for name, policy in [
            ("degraded_root", "argo-example"),
            ("disabled_root", "argo-example"),
            ("healthy_root", "argo-example"),
            ("degraded_replicated", "open-cluster-management-global-set.argo-example"),
            ("degraded_replicated_compliant_before_noncompliant", "open-cluster-management-global-set.argo-example"),
            ("healthy_replicated", "open-cluster-management-global-set.argo-example"),
        ]
    },
    # `ind: Pod`: kubectl's fixture of a broken object.
    "kubernetes+kubernetes/hack/testdata/recursive/pod/pod/busybox-broken.yaml": [
        (None, "busybox2", "spec.containers[0].image", "busybox"),
    ],
    # A top-level sequence of Argo CD action results.
    "argoproj+argo-cd/resource_customizations/batch/CronJob/actions/testdata/job.yaml": [
        ("Job", "hello-00000000000", "[0].unstructuredObj.spec.template.spec.containers[0].image", "busybox:1.28"),
    ],
}  # fmt: skip

_IMAGE_LINE = re.compile(r"[ \t]*(?:-[ \t]+)?image:[ \t]*(?P<value>.*?)[ \t]*", re.ASCII)
_BLOCK_SCALAR = (">", ">-", "|", "|-")


def image_lines(text: str) -> list[str]:
    """Every `image: <value>` line of a YAML text, read as text: the oracle the extractor's
    structural reading is compared with. A value on the next line (`image: >-`) is read there;
    `image:` followed by a mapping (a CRD's schema) is no value."""
    lines = text.split("\n")
    values = []
    for number, line in enumerate(lines):
        match = _IMAGE_LINE.fullmatch(line)
        if match is None:
            continue
        value = re.sub(r"[ \t]+#.*", "", match["value"])
        if value in _BLOCK_SCALAR:
            value = lines[number + 1].strip()
        if not value or value.startswith("{"):
            continue
        if value[0] in "'\"" and value[-1] == value[0]:
            value = value[1:-1]
        values.append(value)
    return values


def manifest_files(corpus: Path) -> list[Path]:
    root = corpus / "manifests"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "SOURCES.tsv")


@pytest.fixture(scope="module")
def extracted(corpus: Path) -> dict[str, dict]:
    """Every manifest file's extractor result, by its path in `manifests/`."""
    root = corpus / "manifests"
    return {str(path.relative_to(root)): extract_file(str(path)) for path in manifest_files(corpus)}


def test_the_corpus_has_what_its_readme_says(corpus: Path, extracted: dict[str, dict]) -> None:
    assert len(extracted) == 236
    listed = {f"{repo.replace('/', '+')}/{path}" for repo, _commit, path, _size in rows(corpus / "manifests/SOURCES.tsv")}
    assert listed == set(extracted)


def test_every_image_of_every_container_list_is_found(extracted: dict[str, dict], corpus: Path) -> None:
    for name, result in extracted.items():
        if name in UNREADABLE:
            assert result["error"] == UNREADABLE[name] and result["images"] == []
            continue
        assert result["error"] is None, (name, result["error"])
        found = Counter(image["image"] for image in result["images"])
        expected = Counter(image_lines((corpus / "manifests" / name).read_text(encoding="utf-8")))
        expected.subtract(Counter(NOT_IN_A_CONTAINER_LIST.get(name, {}).keys()))
        assert found == +expected, name
    for name, images in ONCE_MISSED.items():
        assert [
            (image["kind"], image["name"], image["field"], image["image"]) for image in extracted[name]["images"]
        ] == images, name


def test_every_image_found_is_a_valid_reference_but_the_invalid_ones(extracted: dict[str, dict]) -> None:
    figures: Counter[tuple[str, str]] = Counter()
    images: set[str] = set()
    good_files: list[dict] = []
    for name, result in extracted.items():
        repo = name.partition("/")[0].replace("+", "/")
        values = [image["image"] for image in result["images"]]
        invalid = [value for value in values if is_invalid_image(value)]
        figures[repo, "files"] += 1
        figures[repo, "found"] += len(values)
        figures[repo, "accepted"] += len(values) - len(invalid)
        figures[repo, "refused"] += len(invalid)
        try:
            found = found_images(json.dumps({"files": [result]}).encode())
        except ExtractionError as e:
            if name in UNREADABLE:
                assert e.problems == (f"{result['path']}: {UNREADABLE[name]}",)
                figures[repo, "unreadable"] += 1
                continue
            # Each invalid image is reported, compiler-style, and nothing else.
            assert len(e.problems) == len(invalid) > 0, e
            for problem, value in zip(e.problems, invalid):
                assert problem.startswith(f"{result['path']}:") and f'"{value}" is not a valid image reference' in problem
            continue
        assert not invalid and name not in UNREADABLE
        images.update(found)
        good_files.append(result)
    # All of it as one spec file: every image once, and the generator takes it.
    spec = new_spec(found_images(json.dumps({"files": good_files}).encode()))
    check_generates("corpus.images.txt", spec)
    entries = parse_spec(spec, "corpus.images.txt")
    repos = sorted({repo for repo, _ in figures})
    total = Counter({what: sum(figures[repo, what] for repo in repos) for _, what in figures})
    print(
        f"manifests: {total['files']} files, {total['found']} container images found "
        f"({total['accepted']} valid, {total['refused']} refused) in {len(images)} spellings of "
        f"{len(entries)} distinct images, "
        f"{total['unreadable']} file(s) not YAML"
    )
    for repo in repos:
        print(
            f"  {repo}: {figures[repo, 'files']} files, {figures[repo, 'found']} images found "
            f"({figures[repo, 'accepted']} valid, {figures[repo, 'refused']} refused), "
            f"{figures[repo, 'unreadable']} not YAML"
        )
    assert (total["files"], total["found"], total["refused"], total["unreadable"]) == (236, 274, 13, 1)
    # Spellings of one image, across files, are one line.
    assert len(entries) == len({ImageReference.parse(text).identity for text in images})


def test_the_whole_manifest_corpus_extracts_in_under_a_second(corpus: Path) -> None:
    paths = [str(path) for path in manifest_files(corpus)]
    seconds = cpu_seconds(lambda: [extract_file(path) for path in paths])
    print(f"236 manifest files, 2.1 MB: {seconds * 1000:.0f} ms of the extractor's CPU")
    # About 0.25 s on a busy 2-core machine.
    assert seconds < 1.0, seconds
