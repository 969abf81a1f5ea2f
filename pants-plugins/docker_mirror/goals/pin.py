"""`pants docker-mirror-pin`: the engine wiring that pins spec lines to the digests their tags serve
now."""

from __future__ import annotations

from typing import Iterable, Mapping

from docker_mirror.compat import (
    UnmatchedBuildFileGlobs,
    concurrently,
    created_digest,
    path_globs_contents,
    rule_call,
    unexpanded_targets,
)
from docker_mirror.goals.pinning import (
    CHECK,
    PIN,
    UPDATE,
    FilePins,
    Served,
    plan_file,
    references_to_resolve,
)
from docker_mirror.spec_files.parser import SpecError, parse_spec
from docker_mirror.target_types import (
    DockerMirrorImagesSourcesField,
    DockerMirrorImagesTargetGenerator,
)
from docker_mirror.oci.untrusted_text import shorten, visible
from docker_mirror.util_rules.registry_reads import RegistryReads, RegistryReadsRequest, read_failure, read_registries
from docker_mirror.util_rules.registry_failures import at_registry
from pants.core.target_types import TargetGeneratorSourcesHelperTarget
from pants.engine.addresses import Addresses
from pants.engine.console import Console
from pants.engine.fs import CreateDigest, FileContent, PathGlobs, Workspace
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.rules import collect_rules, goal_rule
from pants.engine.target import Target, UnexpandedTargets
from pants.option.option_types import BoolOption
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

# Registry answers end up in messages: keep them readable.
_MESSAGE_LIMIT = 300


class DockerMirrorPinSubsystem(GoalSubsystem):
    name = "docker-mirror-pin"
    help = softwrap(
        """
        Pin the images of `docker_mirror_images` spec files to the digests their tags serve now.

        Each line without a digest, e.g. `python:3.12`, is resolved with one `HEAD` request to
        its registry (Docker Hub counts no pull for it) and rewritten in place as
        `python:3.12@sha256:<digest>`; a line without a tag is written `name:latest@sha256:...`.
        A line that already has a digest is kept as it is, and costs no request (see
        `--update`). Nothing else in the file changes, byte for byte: comments, blank lines,
        `--platform=`, `AS` names, spacing, line endings, a byte order mark. For a
        `--platform=` line the digest is that of the image index the tag serves, from which
        the platform is picked: what `FROM --platform=... name:tag@sha256:...` expects. So is
        the digest of a line whose generator keeps only some `platforms`: the destination
        serves a filtered index of it, under a digest of its own, which `pants package`
        records.

        A pinned line mirrors exactly what was pinned, with either `method`: the source is
        fetched by its digest and pushed under the line's tag, so a tag that moves upstream
        changes nothing until the pin is updated, and that update is a reviewable change of the
        spec file, which `pants --changed-since=<rev> publish` then mirrors.

        Give the `docker_mirror_images` targets (`src:mirror`, `src::`, `::`) or spec files
        (`src/images.txt`); other targets are ignored. One line is printed per changed digest,
        `path:line: python:3.12 sha256:aaaa… -> sha256:bbbb…`; a file is written only when a
        digest in it changed. A line whose tag cannot be resolved is reported as
        `path:line: <reason>: <line>`, the other lines are still pinned, and the goal exits
        non-zero.
        """
    )

    check = BoolOption(
        default=False,
        help=softwrap(
            """
            Write nothing; report every line that is unpinned, or whose tag now serves another
            digest (`path:line: stale: the tag now serves sha256:…`), and exit non-zero if
            there is any, like `pants lint`. Run it in CI as the gate that every image is
            pinned, and on a schedule as the alarm that an upstream tag moved.
            """
        ),
    )
    update = BoolOption(
        default=False,
        help=softwrap(
            """
            Resolve the lines that already have a digest too, and rewrite those whose tag now
            serves another digest. A line pinned by digest alone (`name@sha256:...`) has no tag
            to follow and is always kept.
            """
        ),
    )

    @property
    def mode(self) -> str:
        if self.check:
            return CHECK
        return UPDATE if self.update else PIN


class DockerMirrorPin(Goal):
    subsystem_cls = DockerMirrorPinSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


def is_generator(target: Target) -> bool:
    return isinstance(target, DockerMirrorImagesTargetGenerator)


def served_by_tags(references: Iterable[str], probed: RegistryReads) -> dict[str, Served]:
    """What each tag serves, from the probe's answers; a failure names the tag and its registry."""
    answers = {}
    for reference in references:
        manifest = probed.get(reference)
        if manifest.found:
            answers[reference] = Served(manifest.digest)
        else:
            problem = read_failure(manifest, f"cannot resolve {at_registry(reference)}")
            answers[reference] = Served(problem=visible(shorten(problem, _MESSAGE_LIMIT)))
    return answers


def plan_files(
    contents: Mapping[str, bytes], mode: str, served: Mapping[str, Served]
) -> list[FilePins]:
    return [plan_file(path, content, served, mode) for path, content in sorted(contents.items())]


def tags_to_resolve(contents: Mapping[str, bytes], mode: str) -> frozenset[str]:
    """Every `name:tag` that `mode` needs resolved in these files (a file that does not parse
    needs none: `plan_file` reports it)."""
    references: set[str] = set()
    for path, content in contents.items():
        try:
            references.update(references_to_resolve(parse_spec(content, path), mode))
        except SpecError:
            continue
    return frozenset(references)


def summary(results: Iterable[FilePins], mode: str) -> str:
    results = list(results)
    problems = sum(len(result.problems) for result in results)
    changes = sum(len(result.changes) for result in results)
    lines_ok = sum(result.lines_ok for result in results)
    files = f"{len(results)} spec file{'' if len(results) == 1 else 's'}"
    if mode == CHECK:
        if problems:
            return f"docker-mirror-pin --check: {problems} line(s) unpinned, stale or unresolvable in {files}."
        return f"docker-mirror-pin --check: all {lines_ok} image line(s) in {files} are pinned and current."
    written = sum(1 for result in results if result.changed)
    text = f"docker-mirror-pin: {changes} digest(s) changed in {written} of {files}"
    if problems:
        text += f"; {problems} problem(s)"
    return text + "."


registry_reads_for = rule_call(read_registries)


@goal_rule
async def docker_mirror_pin(
    console: Console,
    subsystem: DockerMirrorPinSubsystem,
    targets: UnexpandedTargets,
    workspace: Workspace,
    unmatched_build_file_globs: UnmatchedBuildFileGlobs,
) -> DockerMirrorPin:
    mode = subsystem.mode
    # A spec file given by name is owned by its generator's helper target; helpers of other
    # generators (`python_requirements`, ...) are not spec files.
    helpers = [t for t in targets if isinstance(t, TargetGeneratorSourcesHelperTarget)]
    owners = await unexpanded_targets(
        Addresses(sorted({h.address.maybe_convert_to_target_generator() for h in helpers}))
    )
    mirror_owners = {owner.address for owner in owners if is_generator(owner)}
    files = {
        helper.address.filename
        for helper in helpers
        if helper.address.maybe_convert_to_target_generator() in mirror_owners
    }
    globs = [
        *(
            target[DockerMirrorImagesSourcesField].path_globs(unmatched_build_file_globs)
            for target in targets
            if is_generator(target)
        ),
        PathGlobs(sorted(files)),
    ]
    read = await concurrently(path_globs_contents(g) for g in globs)
    contents = {file.path: file.content for digest_contents in read for file in digest_contents}
    if not contents:
        console.print_stderr(
            "docker-mirror-pin: no spec file among the given targets; give `docker_mirror_images` "
            "targets (e.g. `src::`) or spec files."
        )
        return DockerMirrorPin(exit_code=0)

    references = tags_to_resolve(contents, mode)
    probed = await registry_reads_for(
        RegistryReadsRequest(
            FrozenDict((reference, False) for reference in sorted(references)),
            description=f"docker-mirror-pin of {len(contents)} spec file(s)",
        )
    )
    results = plan_files(contents, mode, served_by_tags(references, probed))

    changed = [result for result in results if result.changed]
    if changed and mode != CHECK:
        digest = await created_digest(
            CreateDigest([FileContent(result.path, result.content) for result in changed])
        )
        workspace.write_digest(digest)
    for result in results:
        for change in result.changes:
            console.print_stdout(str(change))
    for result in results:
        for problem in result.problems:
            console.print_stderr(str(problem))
    console.print_stderr(summary(results, mode))
    failed = any(result.problems for result in results)
    return DockerMirrorPin(exit_code=1 if failed else 0)


def rules():
    return collect_rules()
