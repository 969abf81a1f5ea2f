"""The registry probe as Pants runs it, `python -m docker_mirror.probe REQUEST RESULT` in a
process of its own, for the tests: its request written, its result read, its output kept.

`DOCKER_MIRROR_PROBE_PYTHON=/path/to/python` runs the probe with another interpreter (with the
probe's requirements installed), e.g. to check Python 3.13.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import docker_mirror
from docker_mirror.oci.probe_protocol import ResultError, parse_result

PROBE_TIMEOUT = 120
SOURCE_ROOT = str(Path(docker_mirror.__file__).resolve().parent.parent)


def basic(user: str, password: str) -> str:
    """The base64 `user:password` of a Basic `Authorization` and of a Docker config `auth`."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    text: str  # the result file as written
    elapsed: float
    # The probe process's peak resident set (KiB): its own report (`VmHWM`), or `wait4`'s where
    # it wrote none, which keeps this process's peak at the fork; and its CPU time (user + system).
    peak_rss_kib: int = 0
    cpu_seconds: float = 0.0

    @property
    def document(self) -> Dict[str, Any]:
        return json.loads(self.text)

    @property
    def results(self) -> List[Dict[str, Any]]:
        return self.document["results"]

    def outcomes(self) -> List[str]:
        return [r["outcome"] for r in self.results]

    def sent(self, registry: str) -> Dict[str, int]:
        return self.document["requests_sent"][registry]

    def assert_no_secret(self, *secrets: str) -> None:
        for secret in secrets:
            for where, text in (("stdout", self.stdout), ("stderr", self.stderr), ("result", self.text)):
                assert secret not in text, f"a secret is in the probe's {where}"


Request = Union[str, Dict[str, Any]]


def run_probe(
    tmp_path: Path, requests: Sequence[Request], *, home: Optional[Path] = None,
    env: Optional[Dict[str, str]] = None, **options: Any,
) -> Run:
    """Runs the probe on `requests` (references, or request entries) with `options` as the
    request's settings; HOME (and the runtime directory) is `home`, by default a fresh one."""
    entries = [{"reference": r} if isinstance(r, str) else r for r in requests]
    request_file, result_file = tmp_path / "probe-request.json", tmp_path / "probe-result.json"
    request_file.write_text(json.dumps({"version": 1, "requests": entries, **options}))
    if result_file.exists():
        result_file.unlink()
    home = home or tmp_path / "home"
    home.mkdir(exist_ok=True)
    python = os.environ.get("DOCKER_MIRROR_PROBE_PYTHON")
    process_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        # Keeps the machine's own auth files out: skopeo's runtime file, under the test's home.
        "XDG_RUNTIME_DIR": str(home),
        "PYTHONPATH": SOURCE_ROOT if python else os.pathsep.join(p for p in sys.path if p),
        **(env or {}),
    }
    started = time.monotonic()
    out, err = tmp_path / "probe-stdout.txt", tmp_path / "probe-stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [python or sys.executable, "-m", "docker_mirror.probe", str(request_file), str(result_file)],
            env=process_env, stdout=stdout, stderr=stderr,
        )
    # `wait4` rather than `wait`: it tells this process's own peak memory and CPU time.
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > PROBE_TIMEOUT:
            process.kill()
            os.wait4(process.pid, 0)
            process.returncode = -9
            raise subprocess.TimeoutExpired(process.args, PROBE_TIMEOUT)
        time.sleep(0.02)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    text = result_file.read_text() if result_file.exists() else ""
    return Run(process.returncode, out.read_text(), err.read_text(), text, elapsed,
               _own_peak(text) or usage.ru_maxrss, usage.ru_utime + usage.ru_stime)  # fmt: skip


def _own_peak(text: str) -> Optional[int]:
    try:
        return parse_result(text.encode()).peak_rss_kib
    except ResultError:
        return None


def docker_config(home: Path, document: Dict[str, Any]) -> Path:
    path = home / ".docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def credential_helper(directory: Path, name: str, answer: Dict[str, str]) -> Path:
    """`docker-credential-<name>`: logs its argv and stdin (not its answer) to `<name>.log`."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / f"{name}.log"
    script = directory / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s|" "$*" >>"{log}"; cat >>"{log}"; echo >>"{log}"\n'
        # What the process list shows of the probe (its parent) while it holds the secret.
        f'tr "\\0" " " </proc/$PPID/cmdline >>"{directory / (name + ".parent")}"\n'
        f"cat <<'EOF'\n{json.dumps(answer)}\nEOF\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


def trust_ca(home: Path, authority: str, ca: Path) -> None:
    """Trusts `ca` for `authority` (`host:port`) the way skopeo reads it, in the user's
    `~/.config/containers/certs.d/<authority>/`."""
    directory = home / ".config" / "containers" / "certs.d" / authority
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(ca.read_bytes())
