"""`python -m docker_mirror.probe REQUEST.json RESULT.json`: exit 0 when the probe ran, 2 for a
request it cannot read, 1 for an internal error; stderr is one scrubbed line.

`python -m docker_mirror.probe tar INDEX.json STORE OUTPUT.tar` writes the OCI layout of an
export (its `index.json`, blobs from the store) as a tar; stdout says how many blobs and bytes."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, TextIO

from docker_mirror.oci.probe_protocol import ProbeRequest, RequestError, encoded, parse_request
from docker_mirror.probe.oci_layout import BlobStore, write_archive
from docker_mirror.probe.referrers import ReferrersError, index_entries
from docker_mirror.probe.registry import RegistryError
from docker_mirror.probe.run import run
from docker_mirror.probe.secrets import SECRETS

USAGE = "usage: python -m docker_mirror.probe REQUEST.json RESULT.json | tar INDEX.json STORE OUTPUT.tar"
_MAX_REQUEST_SIZE = 64 * 1024 * 1024


def _fail(stderr: TextIO, code: int, message: str) -> int:
    stderr.write(f"docker_mirror.probe: {SECRETS.clean(message, 500)}\n")
    return code


def write_atomically(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def peak_rss_kib() -> Optional[int]:
    """This process's peak resident memory in KiB, where the kernel tells (Linux's `VmHWM`).
    Not `getrusage`: its `ru_maxrss` keeps the peak of the process that exec'd this one, and
    pantsd (hundreds of MB) starts the probe."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _checked(request: ProbeRequest) -> ProbeRequest:
    """The request, once each listing of a copy reads as the referrers index it must be."""
    listings = []
    if request.copy is not None:
        plan = request.copy.plan
        listings = [plan.listing] if plan.listing else []
        listings += [listing for _, listing in plan.child_listings]
    try:
        for listing in listings:
            index_entries(listing.raw)
    except ReferrersError as e:
        raise RequestError(f"copy is not a plan of referrers to copy ({e})") from None
    return request


def _tar(args: List[str], stderr: TextIO, stdout: TextIO) -> int:
    if len(args) != 3:
        return _fail(stderr, 2, USAGE)
    index_path, store, output = (Path(a) for a in args)
    try:
        index = index_path.read_bytes()
        output.parent.mkdir(parents=True, exist_ok=True)
        blobs, size = write_archive(BlobStore(store), index, output)
    except RegistryError as e:
        return _fail(stderr, 1, str(e))
    except OSError as e:
        return _fail(stderr, 1, f"cannot write the archive {output}: {e.strerror or e}")
    stdout.write(json.dumps({"blobs": blobs, "bytes": size}) + "\n")
    return 0


def main(argv: Optional[List[str]] = None, stderr: TextIO = sys.stderr, stdout: TextIO = sys.stdout) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "tar":
        return _tar(args[1:], stderr, stdout)
    if len(args) != 2:
        return _fail(stderr, 2, USAGE)
    request_path, result_path = Path(args[0]), Path(args[1])
    try:
        with open(request_path, "rb") as f:
            raw = f.read(_MAX_REQUEST_SIZE + 1)
    except OSError as e:
        return _fail(stderr, 2, f"cannot read the request {request_path}: {e.strerror}")
    if len(raw) > _MAX_REQUEST_SIZE:
        return _fail(stderr, 2, f"the request {request_path} is larger than {_MAX_REQUEST_SIZE} bytes")
    try:
        request = _checked(parse_request(json.loads(raw)))
    except ValueError as e:  # RequestError, and JSON errors
        what = e if isinstance(e, RequestError) else "it is not valid JSON"
        return _fail(stderr, 2, f"bad request {request_path}: {what}")
    try:
        result = run(request)
    except KeyboardInterrupt:
        return _fail(stderr, 130, "interrupted")
    except Exception as e:  # noqa: BLE001 - reported on one line, never as a traceback
        return _fail(stderr, 1, f"internal error: {type(e).__name__}: {e}")
    result = dataclasses.replace(result, peak_rss_kib=peak_rss_kib(), cpu_seconds=time.process_time())
    try:
        write_atomically(result_path, encoded(result).decode())
    except OSError as e:
        return _fail(stderr, 1, f"cannot write the result {result_path}: {e.strerror or e}")
    return 0
