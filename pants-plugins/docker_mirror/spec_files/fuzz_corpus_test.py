"""Replays the fuzzer's corpus (`fuzz/corpus/`, see `fuzz/README.md`) as ordinary test cases.

Every file there is a spec file that once reached new parser coverage, or a regression input.
Each must give safe entries or a well-formed `SpecError`, never another exception, and must pass
the same checks as the fuzz harness (`spec_grammar.check_spec_input`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from docker_mirror.spec_files.parser import SpecError
from docker_mirror_testutil.spec_grammar import check_spec_input

# The repository root in plain pytest, the sandbox root under Pants (`fuzz:corpus` is a dependency).
CORPUS = Path("fuzz/corpus")
INPUTS = sorted(CORPUS.iterdir()) if CORPUS.is_dir() else []
PATH = "fuzz/input.txt"


def test_corpus_is_there() -> None:
    names = {path.name for path in INPUTS}
    assert len(INPUTS) >= 10, f"{CORPUS.resolve()} is missing or nearly empty"
    assert {"seed-readme-example", "regression-double-cr-with-invalid-utf8"} <= names


@pytest.mark.parametrize("path", INPUTS, ids=[path.name for path in INPUTS])
def test_corpus_input(path: Path) -> None:
    check_spec_input(path.read_bytes(), PATH)


@pytest.mark.parametrize(
    "name, outcome",
    [
        ("seed-readme-example", 4),
        ("seed-empty", 0),
        ("seed-only-comments", 0),
        ("seed-bom-crlf-no-final-newline", 2),
        ("seed-hostile", [1, 2, 3, 4, 5, 6, 7, 8]),
        ("seed-invalid-utf8", [2, 3, 4]),
        ("seed-utf16", [0]),
        # With invalid UTF-8 on line 2, line 1 ("python:3\r\r") was read as "python:3".
        ("regression-double-cr-with-invalid-utf8", [1, 2]),
        ("regression-double-cr-with-invalid-utf8-2", [1, 2]),
        # What the fuzzer found in 1 s against the unfixed parser: line 3 "# cc\r\r".
        ("regression-double-cr-found-by-fuzzer", [1, 3]),
    ],
)
def test_seed_outcomes(name: str, outcome: object) -> None:
    result = check_spec_input((CORPUS / name).read_bytes(), PATH)
    if isinstance(outcome, int):
        assert not isinstance(result, SpecError), result
        assert len(result) == outcome
    else:
        assert isinstance(result, SpecError)
        assert sorted({e.line_number for e in result.errors}) == outcome
