"""Coverage-guided fuzzing of the spec parser (atheris, libFuzzer for Python). Run via `fuzz/run`.

Each input is the raw bytes of a spec file. For each, the harness checks (1-4 are
`spec_grammar.check_spec_input`, which `pants-plugins/docker_mirror/spec_files/fuzz_corpus_test.py` runs on the committed corpus):

1. `parse_spec` returns entries or raises `SpecError`, never anything else; entries yield a single
   safe `FROM` line, and every line of a `SpecError` starts with `path:line:` or `path:`;
2. the parser agrees with the independent grammar model in `pants-plugins/docker_mirror_testutil/spec_grammar.py`, line by line;
3. the parser's fast path (whole-line regex) and slow path (per-part checks) agree;
4. `parse_spec_files` and `assign_names` raise only `SpecError`, and every name is safe;
5. BuildKit's own Dockerfile parser (the `dockerfile` package Pants uses) reads every generated
   `FROM` line as exactly one FROM instruction with the expected flag and image, and nothing else.

Any exception (including an AssertionError from these checks) is a crash: libFuzzer saves the
input and `fuzz/run` fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "pants-plugins")]

# Regex hook: atheris learns strings the parser's regexes match and feeds them to the mutator.
# (Not the "str" hook: atheris 2.3.0 reads `s.startswith("[")`'s argument as a regex and crashes.)
atheris.enabled_hooks.add("RegEx")

with atheris.instrument_imports(include=["docker_mirror"]):
    from docker_mirror.spec_files.parser import SpecEntry, SpecError
    from docker_mirror_testutil.spec_grammar import check_spec_input

import dockerfile  # noqa: E402  (not instrumented: Go code, and only an oracle)

PATH = "fuzz/input.txt"


def check_with_buildkit(entry: SpecEntry) -> None:
    """BuildKit reads the generated line as one FROM, with exactly the expected flag and image."""
    instruction = entry.from_instruction
    commands = dockerfile.parse_string(instruction + "\n")
    assert len(commands) == 1, (instruction, commands)
    (command,) = commands
    assert command.cmd.upper() == "FROM" and not command.json and command.sub_cmd is None, command
    expected_flags = (f"--platform={entry.platform}",) if entry.platform else ()
    assert command.flags == expected_flags, command
    assert command.value == (str(entry.reference),), command
    assert (command.start_line, command.end_line) == (1, 1), command


def test_one_input(data: bytes) -> None:
    result = check_spec_input(data, PATH)  # checks 1-4 of the module docstring
    if not isinstance(result, SpecError):
        for entry in result:
            check_with_buildkit(entry)


def main() -> None:
    # libFuzzer's -merge re-runs argv[0] as a command: `fuzz/run` names an executable wrapper.
    argv = [os.environ.get("FUZZ_SPEC_COMMAND", sys.argv[0]), *sys.argv[1:]]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
