"""`pants package` of a `docker_mirror_archive`: every image it names, with what refers to it,
into one OCI image layout, as a tar under `dist/` (the connected side of an air gap).

Two processes: the export reads every source (as a no-op `publish` would) and copies what the
blob store lacks into it, a Pants named cache kept between runs; then the tar is written from
the store. The tar's process is cached on the archive's `index.json`, so packaging again when
nothing changed costs the export's reads and no copy of the archive."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Iterable, Sequence

from docker_mirror.compat import (
    addresses_of,
    concurrently,
    created_digest,
    digest_contents,
    process_result,
    rule_call,
    targets,
    venv_pex_process,
)
from docker_mirror.oci.probe_protocol import (
    ExportedImage,
    ExportImage,
    ExportRequest,
    ProbeRequest,
    ProbeResult,
    encoded,
)
from docker_mirror.oci.reference import ImageReference
from docker_mirror.subsystems.docker_mirror import DockerMirrorSubsystem
from docker_mirror.subsystems.registry_probe import RegistryProbe
from docker_mirror.target_types import (
    DockerMirrorArchiveImagesField,
    DockerMirrorArchiveOutputPathField,
    DockerMirrorBuildSpecFileField,
    DockerMirrorPlatformField,
    DockerMirrorPlatformsField,
    DockerMirrorReferrersField,
    DockerMirrorRequireSignatureField,
    DockerMirrorSignatureIdentityField,
    DockerMirrorSourceImageField,
)
from docker_mirror.goals.package import required_identity
from docker_mirror.util_rules.copies import copy_deadline
from docker_mirror.util_rules.registry_client import RegistryClientEnvironment
from docker_mirror.util_rules.registry_reads import (
    REQUEST_FILE,
    failed_probe_message,
    probe_process,
    probe_settings,
    read_result,
)
from docker_mirror.util_rules.signature_keys import SignatureKeysRequest, resolve_signature_keys
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, FileContent
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import collect_rules, rule
from pants.engine.target import InvalidFieldException, Target
from pants.engine.unions import UnionRule

# The blob store: a Pants named cache, where the processes see it.
BLOB_CACHE = "docker_mirror_blobs"
BLOB_STORE = ".docker-mirror-blobs"
INDEX_FILE = "index.json"


class ArchiveFailed(Exception):
    """Images that could not be archived: no archive is written."""


@dataclass(frozen=True)
class DockerMirrorArchiveFieldSet(PackageFieldSet):
    required_fields = (DockerMirrorArchiveImagesField,)

    images: DockerMirrorArchiveImagesField
    output_path: DockerMirrorArchiveOutputPathField


def export_image(target: Target, keys: Sequence[tuple[str, bytes]], identity_mode: str = "key") -> ExportImage:
    """What the probe is asked to archive of one `docker_mirror_image`."""
    source = str(target[DockerMirrorSourceImageField].value)
    return ExportImage(
        source,
        target[DockerMirrorPlatformField].value,
        tuple(target[DockerMirrorPlatformsField].value or ()),
        bool(target[DockerMirrorReferrersField].value),
        tuple((path, pem.decode("ascii", errors="replace")) for path, pem in keys),
        required_identity(
            target[DockerMirrorSignatureIdentityField].value, identity_mode, source, [path for path, _ in keys]
        ),
    )


def export_images(archive: Address, images: Iterable[tuple[Address, ExportImage]]) -> tuple[ExportImage, ...]:
    """One image per name in the archive, in order; two images that would take one name with
    different contents (platforms, referrers, keys) are an error naming both."""
    by_name: dict[str, tuple[Address, ExportImage]] = {}
    for address, image in images:
        name = ImageReference.parse(image.reference).archive_name
        earlier = by_name.setdefault(name, (address, image))
        if dataclasses.replace(earlier[1], reference=image.reference) != image:
            raise InvalidFieldException(
                f"{archive}: `images` names {earlier[0]} and {address}, which would both be "
                f"{name} in the archive, with different `platform`, `platforms`, `referrers` or "
                "`require_signature`: keep one of them"
            )
    return tuple(image for _, image in sorted(by_name.values(), key=lambda entry: entry[1].reference))


def export_failure(exported: ExportedImage) -> str | None:
    """Why an image is not in the archive, in one line; None if it is."""
    if exported.name is not None:
        return None
    result = exported.result
    if result.outcome == "unsigned":
        why = f"refused by `require_signature`: {result.message}"
    else:
        failed = next((t for t in result.tags if t.outcome not in ("copied", "up_to_date")), None)
        why = (failed.message if failed else None) or result.message or result.outcome
    return f"{exported.reference}: {why}"


def archive_failures(result: ProbeResult | None, problem: str, images: Sequence[ExportImage]) -> list[str]:
    """A line for each image the export did not put in the archive."""
    exported = {e.reference: e for e in result.export.images} if result and result.export else {}
    failures = []
    for image in images:
        done = exported.get(image.reference)
        failure = export_failure(done) if done else f"{image.reference}: {problem}"
        if failure:
            failures.append(failure)
    return failures


def tar_summary(stdout: bytes) -> str:
    """`12 blobs, 48.2 MiB`, from what the tar's process says."""
    try:
        written = json.loads(stdout)
        return f"{written['blobs']} blobs, {written['bytes'] / 1024 / 1024:.1f} MiB"
    except (ValueError, KeyError, TypeError):
        return "written"


signature_keys_of = rule_call(resolve_signature_keys)


@rule(desc="Packaging an archive of mirrored images")
async def package_docker_mirror_archive(
    field_set: DockerMirrorArchiveFieldSet,
    probe: RegistryProbe,
    subsystem: DockerMirrorSubsystem,
    environment: RegistryClientEnvironment,
) -> BuiltPackage:
    named = await targets(await addresses_of(field_set.images.to_unparsed_address_inputs()))
    # A generator stands for its images (and the helper targets of its spec files, left out);
    # `method="build"` images are built, not carried.
    others = [t for t in named if t.has_field(DockerMirrorBuildSpecFileField)]
    if others:
        raise InvalidFieldException(
            f"{field_set.address}: `images` names {others[0].address}, an image of "
            '`method="build"`: an archive carries images as their registries serve them, from '
            '`docker_mirror_images(method="copy")` or `docker_mirror_image` targets'
        )
    images = [t for t in named if t.has_field(DockerMirrorSourceImageField)]
    if not images:
        raise InvalidFieldException(f"{field_set.address}: `images` names no image")
    signed = [t for t in images if t[DockerMirrorRequireSignatureField].value]
    keys = await concurrently(
        signature_keys_of(
            SignatureKeysRequest(t[DockerMirrorRequireSignatureField].value or (), t.address.spec_path, str(t.address))
        )
        for t in signed
    )
    contents = {t.address: found.contents for t, found in zip(signed, keys)}
    exports = export_images(
        field_set.address,
        ((t.address, export_image(t, contents.get(t.address, ()), subsystem.signature_identity)) for t in images),
    )
    output = field_set.output_path.value_or_default(file_ending="tar")
    caches = {BLOB_CACHE: BLOB_STORE}

    request = ProbeRequest(
        (),
        export=ExportRequest(BLOB_STORE, exports),
        **{**probe_settings(subsystem), "deadline_seconds": copy_deadline(subsystem.copy_timeout)},
    )
    exported = await process_result(
        await venv_pex_process(
            probe_process(
                probe,
                await created_digest(CreateDigest([FileContent(REQUEST_FILE, encoded(request))])),
                description=f"Reading {len(exports)} images for {output}",
                env=environment.env,
                # Sources change between runs: read them in every run; the blobs stay in the store.
                cache_scope=ProcessCacheScope.PER_SESSION,
                append_only_caches=caches,
            )
        )
    )
    if exported.exit_code != 0:
        answer, problem = None, failed_probe_message(exported.stderr, exported.exit_code)
    else:
        answer, problem = read_result(await digest_contents(exported.output_digest))
    failures = archive_failures(answer, problem, exports)
    if failures or answer is None or answer.export is None:
        raise ArchiveFailed(
            f"{field_set.address}: no archive written; {len(failures)} of {len(exports)} images could not be "
            "archived:\n" + "\n".join(f"  {failure}" for failure in failures)
        )

    index = answer.export.index.encode()
    written = await process_result(
        await venv_pex_process(
            probe_process(
                probe,
                await created_digest(CreateDigest([FileContent(INDEX_FILE, index)])),
                description=f"Writing {output} ({len(exports)} images)",
                env={},
                # The same index.json always gives the same tar: written once.
                cache_scope=ProcessCacheScope.SUCCESSFUL,
                argv=("tar", INDEX_FILE, BLOB_STORE, output),
                output_files=(output,),
                append_only_caches=caches,
            )
        )
    )
    if written.exit_code != 0:
        raise ArchiveFailed(f"{field_set.address}: {failed_probe_message(written.stderr, written.exit_code)}")
    lines = tuple(
        f"{image.name} {image.digest}" for image in sorted(answer.export.images, key=lambda e: e.name or "")
    ) + (tar_summary(written.stdout),)
    return BuiltPackage(written.output_digest, (BuiltPackageArtifact(output, extra_log_lines=lines),))


def rules():
    return (*collect_rules(), UnionRule(PackageFieldSet, DockerMirrorArchiveFieldSet))
