"""The plugin's engine requests in call-by-name syntax, for Pants 2.23 and later (the only syntax
of 2.32 and later)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from docker_mirror.compat.pants_version import PANTS_2_29
from pants.backend.python.util_rules.pex import (
    PexRequest,
    VenvPex,
    VenvPexProcess,
    create_venv_pex,
    setup_venv_pex_process,
)
from pants.base.specs import RawSpecsWithoutFileOwners
from pants.engine.addresses import Addresses, UnparsedAddressInputs
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import CreateDigest, Digest, DigestContents, DigestSubset, PathGlobs
from pants.engine.internals.build_files import AddressFamilyDir, parse_address_family
from pants.engine.internals.graph import (
    ResolvedTargetGeneratorRequests,
    ResolveTargetGeneratorRequests,
    resolve_generator_target_requests,
    resolve_targets,
    resolve_unexpanded_targets,
    resolve_unparsed_address_inputs,
)
from pants.engine.internals.mapper import AddressFamilies, AddressFamily
# Defined in `specs_rules` up to Pants 2.27; moved to `graph` since, and imported there.
from pants.engine.internals.specs_rules import address_families_from_raw_specs_without_file_owners
from pants.engine.intrinsics import (
    create_digest,
    digest_subset_to_digest,
    execute_process,
    get_digest_contents,
)
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import concurrently, implicitly
from pants.engine.target import Targets, UnexpandedTargets

if PANTS_2_29:
    from pants.core.util_rules.env_vars import environment_vars_subset
    from pants.option.bootstrap_options import UnmatchedBuildFileGlobs
else:
    from pants.engine.internals.platform_rules import environment_vars_subset
    from pants.option.global_options import UnmatchedBuildFileGlobs

_Out = TypeVar("_Out")


async def process_result(process: Process) -> FallibleProcessResult:
    return await execute_process(process, **implicitly())


async def digest_contents(digest: Digest) -> DigestContents:
    return await get_digest_contents(digest)


async def path_globs_contents(globs: PathGlobs) -> DigestContents:
    return await get_digest_contents(**implicitly({globs: PathGlobs}))


async def created_digest(request: CreateDigest) -> Digest:
    return await create_digest(request)


async def digest_subset(request: DigestSubset) -> Digest:
    return await digest_subset_to_digest(request)


async def environment_vars(request: EnvironmentVarsRequest) -> EnvironmentVars:
    return await environment_vars_subset(request, **implicitly())


async def addresses_of(inputs: UnparsedAddressInputs) -> Addresses:
    return await resolve_unparsed_address_inputs(inputs, **implicitly())


async def targets(addresses: Addresses) -> Targets:
    return await resolve_targets(**implicitly({addresses: Addresses}))


async def unexpanded_targets(addresses: Addresses) -> UnexpandedTargets:
    return await resolve_unexpanded_targets(addresses)


async def address_family(directory: AddressFamilyDir) -> AddressFamily:
    family = await parse_address_family(directory, **implicitly())
    return family.ensure()


async def address_families(specs: RawSpecsWithoutFileOwners) -> AddressFamilies:
    return await address_families_from_raw_specs_without_file_owners(specs, **implicitly())


async def generator_requests(
    request: ResolveTargetGeneratorRequests,
) -> ResolvedTargetGeneratorRequests:
    return await resolve_generator_target_requests(request, **implicitly())


async def venv_pex(request: PexRequest) -> VenvPex:
    return await create_venv_pex(**implicitly({request: PexRequest}))


async def venv_pex_process(request: VenvPexProcess) -> Process:
    return await setup_venv_pex_process(request, **implicitly())


def rule_call(rule: Callable[..., Awaitable[_Out]]) -> Callable[[Any], Coroutine[Any, Any, _Out]]:
    """A helper that calls `rule` with a value for its first parameter, the others implicit."""

    async def call(request: Any) -> _Out:
        return await rule(request, **implicitly())

    return call


__all__ = (
    "AddressFamilyDir",
    "UnmatchedBuildFileGlobs",
    "addresses_of",
    "address_families",
    "address_family",
    "concurrently",
    "created_digest",
    "digest_contents",
    "digest_subset",
    "environment_vars",
    "generator_requests",
    "path_globs_contents",
    "process_result",
    "rule_call",
    "targets",
    "unexpanded_targets",
    "venv_pex",
    "venv_pex_process",
)
