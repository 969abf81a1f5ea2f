"""A tap on the real `skopeo`: a `skopeo` wrapper that runs the real binary and records each run
(argv, environment, stdout, stderr, exit code), so a test can check what the processes Pants ran
actually did and printed. Point `[docker-mirror].executable_search_paths` at `SkopeoTap.bin`."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from docker_mirror_testutil.machine import require_skopeo

# Pants runs skopeo without PATH: the wrapper names every binary by its absolute path and uses
# bash builtins otherwise.
_WRAPPER = """#!{bash}
run={runs}/$$-$RANDOM
printf '%s\\0' "$@" >"$run.argv"
export -p >"$run.env"
{skopeo} "$@" >"$run.stdout" 2>"$run.stderr"
code=$?
{cat} "$run.stdout"
{cat} "$run.stderr" >&2
echo "$code" >"$run.exit"
exit "$code"
"""


@dataclass(frozen=True)
class SkopeoRun:
    argv: tuple[str, ...]  # without the binary
    env: str  # `export -p` output
    stdout: bytes
    stderr: bytes
    exit_code: int

    @property
    def command(self) -> str | None:
        """skopeo's command (`copy`, `inspect`...): its first argument that is not a global
        option such as `--command-timeout=30s`."""
        return next((arg for arg in self.argv if not arg.startswith("-")), None)

    def everything(self) -> bytes:
        """All that was recorded, to search for what must not be there."""
        return b"\0".join(
            [*(a.encode() for a in self.argv), self.env.encode(), self.stdout, self.stderr]
        )


@dataclass(frozen=True)
class SkopeoTap:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @classmethod
    def install(cls, root: Path) -> SkopeoTap:
        require_skopeo()
        tap = cls(root)
        (root / "runs").mkdir(parents=True)
        tap.bin.mkdir()
        wrapper = tap.bin / "skopeo"
        wrapper.write_text(
            _WRAPPER.format(
                bash=shutil.which("bash"),
                skopeo=shlex.quote(str(shutil.which("skopeo"))),
                cat=shlex.quote(str(shutil.which("cat"))),
                runs=shlex.quote(str(root / "runs")),
            )
        )
        wrapper.chmod(0o755)
        return tap

    def clear(self) -> None:
        """Forgets the runs recorded so far."""
        for recorded in (self.root / "runs").iterdir():
            recorded.unlink()

    def runs(self) -> list[SkopeoRun]:
        """Every finished run, in no particular order, but `skopeo --version` (Pants' check)."""
        runs = []
        for exit_file in sorted((self.root / "runs").glob("*.exit")):
            base = exit_file.with_suffix("")
            argv = tuple(base.with_suffix(".argv").read_bytes().decode().split("\0")[:-1])
            if argv == ("--version",):
                continue
            runs.append(
                SkopeoRun(
                    argv=argv,
                    env=base.with_suffix(".env").read_text(),
                    stdout=base.with_suffix(".stdout").read_bytes(),
                    stderr=base.with_suffix(".stderr").read_bytes(),
                    exit_code=int(exit_file.read_text()),
                )
            )
        return runs
