"""How a failing image's summary line reads: pure functions."""

from __future__ import annotations

from docker_mirror.util_rules.registry_failures import (
    REFERRERS_OFF_HINT,
    access_denied,
    named_registry,
    uncopied_referrers,
    unread_referrers,
)


def test_a_refusal_names_the_registry_and_how_to_log_in() -> None:
    assert access_denied("unauthorized", "r.lan:5000") == (
        "access denied by registry r.lan:5000 (401 unauthorized); log in with "
        "`docker login r.lan:5000` (or `skopeo login r.lan:5000`)"
    )
    assert access_denied("unauthorized", "r.lan", "it refused the credentials from ~/.docker/config.json") == (
        "access denied by registry r.lan (it refused the credentials from ~/.docker/config.json); "
        "log in with `docker login r.lan` (or `skopeo login r.lan`)"
    )
    assert access_denied("denied", "r.lan").startswith("access denied by registry r.lan (403: ")


def test_the_registry_a_message_is_about_is_the_one_it_names_last() -> None:
    message = "copying from src.lan/x to dst.lan:5000/y: unauthorized by dst.lan:5000"
    assert named_registry(message, ("src.lan", "dst.lan:5000")) == "dst.lan:5000"
    assert named_registry("reading src.lan/x: unauthorized", ("dst.lan:5000", "src.lan")) == "src.lan"
    assert named_registry("unauthorized", ("dst.lan:5000", "src.lan")) is None
    # A host that is a prefix of another (same port prefix) is not mistaken for it.
    assert named_registry("at 127.0.0.1:50001: denied", ("127.0.0.1:5000", "127.0.0.1:50001")) == "127.0.0.1:50001"


def test_referrers_off_is_offered_only_when_the_referrers_alone_failed() -> None:
    subject = "src.lan/x:1 (sha256:0123456789ab)"
    alone = unread_referrers(subject, "src.lan", "the referrers index is not JSON", "error")
    assert alone.endswith(REFERRERS_OFF_HINT)
    assert alone.startswith(f"what refers to {subject} at registry src.lan: could not be read (")
    for kind, error in (
        ("unreachable", "registry src.lan unreachable: connection refused (4 attempts)"),
        ("tls", "TLS verification of src.lan failed; ..."),
        ("rate_limited", "rate limited by src.lan (429), retry after 3600 s"),
        ("unauthorized", "unauthorized by src.lan for sha256-x.sig: ..."),
        ("denied", "access denied by src.lan (403) to x:sha256-x.sig"),
    ):
        message = unread_referrers(subject, "src.lan", error, kind)
        assert "referrers=False" not in message, kind
        assert message.endswith("; so the image is not copied"), message
    refused = unread_referrers(subject, "src.lan", "unauthorized by src.lan for sha256-x.sig: ...", "unauthorized")
    assert "`docker login src.lan`" in refused and "sha256-x.sig" not in refused
    # A destination that failed its own read is the cause, whatever the referrers read said.
    caused = unread_referrers(subject, "src.lan", "some error", "error", ("destination d at registry dst: refused",))
    assert caused == (
        f"destination d at registry dst: refused; what refers to {subject} could not be checked "
        "there, so the image is not copied"
    )


def test_a_refused_referrers_copy_names_the_registry_it_was_refused_by() -> None:
    subject = "src.lan/x:1 (sha256:0123456789ab)"
    to = "dst.lan:5000/mirror/x:1 at registry dst.lan:5000"
    registries = ("dst.lan:5000", "src.lan")
    assert uncopied_referrers(subject, to, registries, "src.lan answered 401 Unauthorized for blob b", "unauthorized") == (
        f"copying what refers to {subject} to {to}: access denied by registry src.lan (401 "
        "unauthorized); log in with `docker login src.lan` (or `skopeo login src.lan`)"
    )
    assert "dst.lan:5000 (403" in uncopied_referrers(subject, to, registries, "forbidden", "denied")
    assert uncopied_referrers(subject, to, registries, "dst.lan:5000 answered 500", "error") == (
        f"copying what refers to {subject} to {to}: dst.lan:5000 answered 500"
    )
