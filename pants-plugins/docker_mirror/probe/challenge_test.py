from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from docker_mirror.probe.challenge import Challenge, parse_challenges, pick


def test_docker_hub() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/python:pull"'
    )
    assert parse_challenges([header]) == [
        Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                             "scope": "repository:library/python:pull"})
    ]


def test_basic_and_case() -> None:
    assert parse_challenges(['BASIC Realm="start-registry"']) == [
        Challenge("basic", {"realm": "start-registry"})
    ]


def test_several_challenges_in_one_header_and_in_several() -> None:
    challenges = parse_challenges(
        ['Basic realm="a", Bearer realm="https://t/x", service=svc', 'Negotiate']
    )
    assert [c.scheme for c in challenges] == ["basic", "bearer", "negotiate"]
    assert challenges[1].params == {"realm": "https://t/x", "service": "svc"}
    assert pick(challenges) == challenges[1]


def test_quoted_strings_with_commas_escapes_and_spaces() -> None:
    (challenge,) = parse_challenges(
        [r'Bearer  realm = "https://t/x?a=1,b=2" , scope="repository:a:pull repository:b:pull",'
         r' error="insufficient_scope", note="say \"hi\""']
    )
    assert challenge.realm == "https://t/x?a=1,b=2"
    assert challenge.scope == "repository:a:pull repository:b:pull"
    assert challenge.params["error"] == "insufficient_scope"
    assert challenge.params["note"] == 'say "hi"'


def test_nothing_to_answer() -> None:
    assert pick(parse_challenges([])) is None
    assert pick(parse_challenges(["Negotiate abc=="])) is None
    assert parse_challenges([""]) == []


@given(st.lists(st.text(max_size=60), max_size=3))
def test_never_fails_on_garbage(headers: list) -> None:
    for challenge in parse_challenges(headers):
        assert challenge.scheme and all(isinstance(v, str) for v in challenge.params.values())
