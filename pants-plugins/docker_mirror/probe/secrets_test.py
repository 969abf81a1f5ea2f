from __future__ import annotations

from docker_mirror.probe.secrets import REDACTED, Secrets


def test_scrub() -> None:
    secrets = Secrets()
    assert secrets.add_basic("alice", "hunter22") == "Basic YWxpY2U6aHVudGVyMjI="
    secrets.add("tok.en.value")
    secrets.add("abc")  # too short to be scrubbed without mangling messages
    text = "pw hunter22, header Basic YWxpY2U6aHVudGVyMjI=, alice:hunter22, token tok.en.value, abc"
    assert secrets.scrub(text) == f"pw {REDACTED}, header Basic {REDACTED}, {REDACTED}, token {REDACTED}, abc"
    assert secrets.scrub("nothing secret") == "nothing secret"
