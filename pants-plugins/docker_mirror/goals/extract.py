"""`pants docker-mirror-extract`: the engine wiring that runs the image extractor on Kubernetes
manifests and writes a spec file."""

from __future__ import annotations

import json
import os
import posixpath

from docker_mirror.compat import (
    created_digest,
    digest_contents,
    path_globs_contents,
    process_result,
    venv_pex_process,
)
from docker_mirror.goals.extraction import (
    ExtractionError,
    check_generates,
    found_images,
    new_spec,
    update_spec,
)
from docker_mirror.subsystems.extractor import ImageExtractor
from pants.backend.python.util_rules.pex import VenvPexProcess
from pants.engine.console import Console
from pants.engine.fs import (
    CreateDigest,
    FileContent,
    GlobMatchErrorBehavior,
    PathGlobs,
    SpecsPaths,
    Workspace,
)
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.rules import collect_rules, goal_rule
from pants.option.option_types import StrOption
from pants.util.logging import LogLevel
from pants.util.strutil import softwrap

REQUEST_FILE = "extractor-request.json"
RESULT_FILE = "extractor-result.json"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class DockerMirrorExtractSubsystem(GoalSubsystem):
    name = "docker-mirror-extract"
    help = softwrap(
        f"""
        Write a `docker_mirror_images` spec file listing the container images of Kubernetes
        manifests: the output of `helm template` or `kustomize build`, or any YAML of
        Kubernetes objects, several documents per file.

        Give the files as arguments, after the goal's options (`pants docker-mirror-extract
        --output=images.txt deploy/rendered.yaml`, or `deploy/*.yaml`); of the files given,
        those ending in {", ".join(f"`{s}`" for s in MANIFEST_SUFFIXES)} are read. They must be
        in the repository and not ignored by Pants (`.gitignore`, `[GLOBAL].pants_ignore`). The
        image of every container, init container and ephemeral container is collected, wherever
        its list is: in the pod spec of a workload, of a CRD's pod template (an Argo Rollout) or
        pod list (a StrimziPodSet), of a Pod a policy wraps, in a `List`'s items, in an object
        of any kind or none. An `image` outside a container list (a ConfigMap's data, a CRD's
        schema, an operator's own `spec.image`) is not read, nor are Kyverno's validate
        patterns. Each image is listed once, sorted, under a comment saying where it was found
        (`# Deployment/web`, `# (no kind)/name` for an object without a kind); spellings of one
        image as Docker reads them (`nginx`, `nginx:latest`, `docker.io/library/nginx`) are one
        line, in the shortest spelling found.

        Without `--output` the spec file is printed. With `--output` it is written; if that
        file exists, its comments, blank lines and pins survive: a line whose image the
        manifests still use stays as it is (a pinned `nginx:1.25@sha256:...` for a manifest's
        `nginx:1.25` included, however either is spelt), a line whose image is gone is removed,
        and new images are inserted in order. What was added and removed is printed. Images you
        list by hand belong in another spec file of the generator, since re-extracting removes
        what the manifests do not use.

        An image that is not a string or not a valid image reference (e.g. an unrendered
        `{{{{ .Values.image }}}}`), and a file that is not valid YAML, are reported as
        `file:document: Kind/name field (line N): problem`, and nothing is written. The YAML
        reader refuses alias bombs, recursive aliases, nesting over 200 levels and files over
        64 MiB, each with a clear error.
        """
    )

    output = StrOption(
        default=None,
        help=softwrap(
            """
            The spec file to write, relative to the build root, e.g.
            `third_party/images/app.images.txt`. By default the spec file is printed.
            """
        ),
    )


class DockerMirrorExtract(Goal):
    subsystem_cls = DockerMirrorExtractSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


def output_path_problem(output: str) -> str | None:
    """Why `output` cannot be the spec file to write, or None."""
    normalized = posixpath.normpath(output)
    if os.path.isabs(output) or normalized.startswith("../") or normalized in ("..", "."):
        return f"--output must be a file path inside the build root, not {output!r}"
    return None


def describe(where: frozenset[str]) -> str:
    return ", ".join(sorted(where))


@goal_rule
async def docker_mirror_extract(
    console: Console,
    subsystem: DockerMirrorExtractSubsystem,
    specs_paths: SpecsPaths,
    extractor: ImageExtractor,
    workspace: Workspace,
) -> DockerMirrorExtract:
    files = sorted(path for path in specs_paths.files if path.endswith(MANIFEST_SUFFIXES))
    skipped = sorted(set(specs_paths.files) - set(files))
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        suffixes = "/".join(MANIFEST_SUFFIXES)
        console.print_stderr(f"docker-mirror-extract: not read (not {suffixes}): {shown}")
    output = subsystem.output
    if output is not None:
        problem = output_path_problem(output)
        if problem:
            console.print_stderr(f"docker-mirror-extract: {problem}")
            return DockerMirrorExtract(exit_code=1)
        output = posixpath.normpath(output)
    if not files:
        console.print_stderr(
            "docker-mirror-extract: no manifest file given: give the YAML files to read, e.g. "
            "`pants docker-mirror-extract deploy/rendered.yaml --output=images.txt`."
        )
        return DockerMirrorExtract(exit_code=1)

    manifests = await path_globs_contents(PathGlobs(files))
    request = json.dumps({"files": files}).encode()
    input_digest = await created_digest(
        CreateDigest(
            [
                *(FileContent(file.path, file.content) for file in manifests),
                FileContent(REQUEST_FILE, request),
            ]
        )
    )
    process = await venv_pex_process(
        VenvPexProcess(
            extractor.pex,
            argv=(REQUEST_FILE, RESULT_FILE),
            description=f"Extracting container images from {len(files)} file(s)",
            input_digest=input_digest,
            output_files=(RESULT_FILE,),
            level=LogLevel.DEBUG,
            # The reader is bounded; this only stops a run that something else made hang.
            timeout_seconds=900,
        )
    )
    result = await process_result(process)
    if result.exit_code != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        console.print_stderr(
            "docker-mirror-extract: the image extractor failed: "
            + (lines[-1] if lines else f"exit code {result.exit_code}")
        )
        return DockerMirrorExtract(exit_code=1)
    contents = await digest_contents(result.output_digest)
    content = next((f.content for f in contents if f.path == RESULT_FILE), b"")

    existing = None
    if output is not None:
        read = await path_globs_contents(
            PathGlobs([output], glob_match_error_behavior=GlobMatchErrorBehavior.ignore)
        )
        existing = next((f.content for f in read if f.path == output), None)
    try:
        images = found_images(content)
        if existing is None:
            spec = new_spec(images)
            added = tuple(sorted(images.items()))
            removed: tuple[tuple[int, str], ...] = ()
            changed = True
        else:
            update = update_spec(output or "", existing, images)
            spec, added, removed, changed = update.content, update.added, update.removed, update.changed
        check_generates(output or "<stdout>", spec)
    except ExtractionError as e:
        for problem in e.problems:
            console.print_stderr(problem)
        console.print_stderr("docker-mirror-extract: nothing written.")
        return DockerMirrorExtract(exit_code=1)

    if output is None:
        console.print_stdout(spec.decode("utf-8"), end="")
        console.print_stderr(f"docker-mirror-extract: {len(images)} image(s) in {len(files)} file(s).")
        return DockerMirrorExtract(exit_code=0)
    for reference, where in added:
        console.print_stdout(f"{output}: added {reference} ({describe(where)})")
    for line_number, reference in removed:
        console.print_stdout(f"{output}:{line_number}: removed {reference}")
    if changed:
        workspace.write_digest(await created_digest(CreateDigest([FileContent(output, spec)])))
    console.print_stderr(
        f"docker-mirror-extract: {output}: {len(added)} added, {len(removed)} removed, "
        f"{len(images) - len(added)} kept{'' if changed else ', unchanged'}."
    )
    return DockerMirrorExtract(exit_code=0)


def rules():
    return collect_rules()
