from __future__ import annotations

from docker_mirror.probe.secrets import REDACTED, Secrets, one_line


def test_scrub() -> None:
    secrets = Secrets()
    assert secrets.add_basic("alice", "hunter22") == "Basic YWxpY2U6aHVudGVyMjI="
    secrets.add("tok.en.value")
    secrets.add("abc")  # too short to be scrubbed without mangling messages
    text = "pw hunter22, header Basic YWxpY2U6aHVudGVyMjI=, alice:hunter22, token tok.en.value, abc"
    assert secrets.scrub(text) == f"pw {REDACTED}, header Basic {REDACTED}, {REDACTED}, token {REDACTED}, abc"
    assert secrets.scrub("nothing secret") == "nothing secret"


def test_clean_scrubs_before_it_cuts() -> None:
    secrets = Secrets()
    value = secrets.add_basic("alice", "p\u00e4ssw\u00f6rd-Secret-0123456789")
    text = "denied; you sent Authorization: " + value
    assert secrets.clean(text, 40) == "denied; you sent Authorization: Basic..."
    assert secrets.clean(text) == f"denied; you sent Authorization: Basic {REDACTED}"
    assert one_line("a\x1b[31m\nb\u202ec\x00", 10) == "a [31m b c"
