"""What a registry serves for an image reference: one `HEAD` of the manifest (its digest in
`Docker-Content-Digest`), a `GET` only when the body is needed or the registry sends no digest,
and what each answer means as a `ManifestResult`."""

from __future__ import annotations

import hashlib
import re
from typing import Optional

from docker_mirror.oci.media_types import DIGEST, MANIFEST_ACCEPT
from docker_mirror.probe.access import authority
from docker_mirror.probe.auth import Scope, parse_json
from docker_mirror.oci.probe_protocol import ManifestResult
from docker_mirror.oci.reference import ImageReference
from docker_mirror.probe.registry import Answer, RegistryError, RegistrySession, reason_phrase
from docker_mirror.probe.secrets import Secrets

_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


async def probe_manifest(session: RegistrySession, reference: ImageReference, need_body: bool) -> ManifestResult:
    """The digest, media type and size `reference` has at its registry now (and the body, with
    `need_body`)."""
    method = "GET" if need_body else "HEAD"
    scopes = [Scope(reference.remote_name)]
    try:
        answer = await session.request(method, reference.manifest_path, scopes=scopes,
                                       subject=reference.shown, headers=[("Accept", MANIFEST_ACCEPT)])
        if answer.status == 200 and method == "HEAD" and not _header_digest(answer):
            method = "GET"
            answer = await session.request(method, reference.manifest_path, scopes=scopes,
                                           subject=reference.shown, headers=[("Accept", MANIFEST_ACCEPT)])
    except RegistryError as e:
        return _result(session, reference, e.outcome, method=e.method or method, http_status=e.status,
                       retry_after_seconds=e.retry_after, message=e.message)
    return _meaning(session, reference, answer)


def _result(session: RegistrySession, reference: ImageReference, outcome: str, **fields: object) -> ManifestResult:
    message = fields.pop("message", None)
    if isinstance(message, str):
        message = session.secrets.clean(message)
    return ManifestResult(reference=str(reference), outcome=outcome, message=message, **fields)  # type: ignore[arg-type]


def _meaning(session: RegistrySession, reference: ImageReference, answer: Answer) -> ManifestResult:
    status, method, registry = answer.status, answer.method, session.registry
    if status == 200:
        return _found(session, reference, answer)
    detail = _error_detail(answer.body, session.secrets)
    if status == 404:
        return _result(session, reference, "not_found", method=method, http_status=404,
                       message=f"{reference.shown} not found at {registry} (404{detail})")
    if status == 401:
        host = authority(answer.url)
        if not session.is_own(answer.url):
            why = (f"it redirected to {host}, which asked for credentials; they are only sent to "
                   "the registry")
        elif session.looked_up_credentials(reference.remote_name) is None:
            why = f"no credentials for {registry} in the Docker config or containers auth files"
        else:
            credentials = session.looked_up_credentials(reference.remote_name)
            why = f"it refused the credentials from {credentials.source if credentials else '?'}"
        return _result(session, reference, "unauthorized", method=method, http_status=401,
                       message=f"unauthorized by {registry} (401{detail}) for {reference.shown}: {why}")
    if status == 403:
        return _result(session, reference, "denied", method=method, http_status=403,
                       message=f"access denied by {registry} (403{detail}) to {reference.shown}")
    return _result(session, reference, "error", method=method, http_status=status,
                   message=f"{registry} answered {status} {reason_phrase(status)}{detail} for {reference.shown}")


def _header_digest(answer: Answer) -> str:
    value = (answer.headers.get("Docker-Content-Digest") or "").strip()
    return value if DIGEST.fullmatch(value) else ""


def _found(session: RegistrySession, reference: ImageReference, answer: Answer) -> ManifestResult:
    header_digest = _header_digest(answer)
    media_type = _media_type(answer.headers.get("Content-Type"))
    method, registry = answer.method, session.registry
    if method == "HEAD":
        length = (answer.headers.get("Content-Length") or "").strip()
        size = int(length) if length.isascii() and length.isdigit() and len(length) < 19 else None
        digest, body = header_digest, None
    else:
        body = answer.body
        digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
        if header_digest and header_digest != digest:
            return _result(session, reference, "error", method=method, http_status=200,
                           message=f"{registry} served {reference.shown} with a body whose digest "
                           f"{digest} is not the {header_digest} it announced")
        size = len(body)
        if media_type is None:
            media_type = _body_media_type(body)
    if reference.digest and digest != reference.digest:
        return _result(session, reference, "error", method=method, http_status=200,
                       message=f"{registry} answered {reference.shown} with another manifest, {digest}")
    return _result(session, reference, "ok", digest=digest, media_type=media_type, size=size, body=body,
                   method=method, http_status=200)


def _media_type(value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    media_type = value.split(";", 1)[0].strip()
    return media_type if _MEDIA_TYPE.fullmatch(media_type) else None


def _body_media_type(body: bytes) -> Optional[str]:
    document = parse_json(body)
    value = document.get("mediaType") if isinstance(document, dict) else None
    return _media_type(value) if isinstance(value, str) else None


def _error_detail(body: Optional[bytes], secrets: Secrets) -> str:
    """`: <code>: <message>` from a registry's JSON error body, when it has one; secrets
    scrubbed before it is cut."""
    document = parse_json(body) if body else None
    if not isinstance(document, dict):
        return ""
    try:
        first = document["errors"][0]
        code, message = str(first.get("code") or ""), str(first.get("message") or "")
    except (AttributeError, TypeError, IndexError, KeyError):
        return ""
    text = secrets.clean(": ".join(part for part in (code, message) if part), 120)
    return f": {text}" if text else ""
