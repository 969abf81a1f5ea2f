"""What a failing image's summary line says: what went wrong, naming the registry, and what to do.
Each description reads on from Pants' "failed for"."""

from __future__ import annotations

from typing import Sequence

from docker_mirror.oci.reference import registry_host

# The probe's outcomes for a refused request: 401 (no or wrong credentials) and 403.
ACCESS_DENIED = ("unauthorized", "denied")
# Outcomes that fail every request to a registry alike: no setting of one image gets past them.
REGISTRY_WIDE = (*ACCESS_DENIED, "unreachable", "tls", "rate_limited")

REFERRERS_OFF_HINT = (
    "`referrers=False` copies it without its signatures, attestations and SBOMs"
)


def at_registry(reference: str) -> str:
    """`<reference> at registry <host>`, naming Docker Hub when the reference has no host."""
    return f"{reference} at registry {registry_host(reference)}"


def login_hint(registry: str) -> str:
    return f"log in with `docker login {registry}` (or `skopeo login {registry}`)"


def access_denied(kind: str, registry: str, why: str | None = None) -> str:
    """A 401 (`unauthorized`) or 403 (`denied`) from `registry`, and how to log in; `why` says
    more when it is known (no credentials were found, or which were refused)."""
    if kind == "denied":
        return (
            f"access denied by registry {registry} (403: these credentials may not do this); "
            f"{login_hint(registry)} as an account that may"
        )
    return f"access denied by registry {registry} ({why or '401 unauthorized'}); {login_hint(registry)}"


def named_registry(message: str, candidates: Sequence[str]) -> str | None:
    """Which of `candidates` (registry hosts) a failure message is about: the one it names last
    (the operation that failed comes last in the probe's messages), else None."""
    found = [(message.rfind(candidate), candidate) for candidate in candidates if candidate]
    named = [(position, candidate) for position, candidate in found if position >= 0]
    return max(named)[1] if named else None


def unread_referrers(
    subject: str,
    registry: str,
    error: str,
    kind: str | None,
    unreadable_destinations: Sequence[str] = (),
) -> str:
    """Why an image is not copied when what refers to it (`subject`: the image and its digest, at
    `registry`) could not be read.

    `unreadable_destinations`: how each destination that failed its own read failed. One that
    refused access or could not be reached is the cause to fix, and `referrers=False` would not
    get past it; nor past a source registry that does the same (`kind` in `REGISTRY_WIDE`). Only
    a failure of the referrers alone (a listing that does not parse, a referrers API that
    errs) is one that `referrers=False` gets past.
    """
    not_copied = "so the image is not copied"
    if unreadable_destinations:
        return (
            f"{'; '.join(unreadable_destinations)}; what refers to {subject} could not be "
            f"checked there, {not_copied}"
        )
    where = f"what refers to {subject} at registry {registry}"
    if kind in ACCESS_DENIED:
        return f"{where}: {access_denied(kind, registry)}; {not_copied}"
    if kind in REGISTRY_WIDE:
        return f"{where}: {error}; {not_copied}"
    return f"{where}: could not be read ({error}), {not_copied}; {REFERRERS_OFF_HINT}"


def uncopied_referrers(
    subject: str, destination: str, registries: Sequence[str], message: str, kind: str | None
) -> str:
    """Why what refers to `subject` could not be copied to `destination` (so neither was the
    image): a refusal names the registry and how to log in, without the request it refused."""
    where = f"copying what refers to {subject} to {destination}"
    if kind in ACCESS_DENIED:
        registry = named_registry(message, registries) or registries[0]
        return f"{where}: {access_denied(kind, registry)}"
    return f"{where}: {message}"
