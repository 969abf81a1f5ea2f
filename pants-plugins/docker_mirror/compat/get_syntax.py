"""The plugin's engine requests in `Get` syntax, for Pants 2.17 to 2.22. Each helper returns its
`Get` rather than awaiting it, so that `concurrently` (`MultiGet`) can run several at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Coroutine, TypeVar

from pants.backend.python.util_rules.pex import PexRequest, VenvPex, VenvPexProcess
from pants.base.specs import RawSpecsWithoutFileOwners
from pants.engine.addresses import Addresses, UnparsedAddressInputs
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import CreateDigest, Digest, DigestContents, DigestSubset, PathGlobs
from pants.engine.internals.build_files import AddressFamilyDir
from pants.engine.internals.graph import (
    ResolvedTargetGeneratorRequests,
    ResolveTargetGeneratorRequests,
)
from pants.engine.internals.mapper import AddressFamilies, AddressFamily
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet
from pants.engine.target import Targets, UnexpandedTargets
from pants.option.global_options import UnmatchedBuildFileGlobs

_In = TypeVar("_In")
_Out = TypeVar("_Out")

if TYPE_CHECKING:
    Awaits = Get
else:

    class Awaits:
        def __class_getitem__(cls, _output: type) -> type:
            return Get


concurrently = MultiGet


def process_result(process: Process) -> Awaits[FallibleProcessResult]:
    return Get(FallibleProcessResult, Process, process)


def digest_contents(digest: Digest) -> Awaits[DigestContents]:
    return Get(DigestContents, Digest, digest)


def path_globs_contents(globs: PathGlobs) -> Awaits[DigestContents]:
    return Get(DigestContents, PathGlobs, globs)


def created_digest(request: CreateDigest) -> Awaits[Digest]:
    return Get(Digest, CreateDigest, request)


def digest_subset(request: DigestSubset) -> Awaits[Digest]:
    return Get(Digest, DigestSubset, request)


def environment_vars(request: EnvironmentVarsRequest) -> Awaits[EnvironmentVars]:
    return Get(EnvironmentVars, EnvironmentVarsRequest, request)


def addresses_of(inputs: UnparsedAddressInputs) -> Awaits[Addresses]:
    return Get(Addresses, UnparsedAddressInputs, inputs)


def targets(addresses: Addresses) -> Awaits[Targets]:
    return Get(Targets, Addresses, addresses)


def unexpanded_targets(addresses: Addresses) -> Awaits[UnexpandedTargets]:
    return Get(UnexpandedTargets, Addresses, addresses)


def address_family(directory: AddressFamilyDir) -> Awaits[AddressFamily]:
    return Get(AddressFamily, AddressFamilyDir, directory)


def address_families(specs: RawSpecsWithoutFileOwners) -> Awaits[AddressFamilies]:
    return Get(AddressFamilies, RawSpecsWithoutFileOwners, specs)


def generator_requests(
    request: ResolveTargetGeneratorRequests,
) -> Awaits[ResolvedTargetGeneratorRequests]:
    return Get(ResolvedTargetGeneratorRequests, ResolveTargetGeneratorRequests, request)


def venv_pex(request: PexRequest) -> Awaits[VenvPex]:
    return Get(VenvPex, PexRequest, request)


def venv_pex_process(request: VenvPexProcess) -> Awaits[Process]:
    return Get(Process, VenvPexProcess, request)


def rule_call(rule: Callable[..., Coroutine[Any, Any, _Out]]) -> Callable[[Any], Awaits[_Out]]:
    """A helper that requests `rule`'s output for a value of its first parameter's type."""
    output_type = rule.rule.output_type  # type: ignore[attr-defined]
    input_type = rule.rule.input_selectors[0]  # type: ignore[attr-defined]

    def call(request: Any) -> Awaits[_Out]:
        return Get(output_type, input_type, request)

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
