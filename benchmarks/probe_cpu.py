"""The registry probe's own CPU per `HEAD`, against a local `docker-registry`.

    python3 benchmarks/probe_cpu.py [--heads 2000] [--concurrency 8] [--runs 2] [--source DIR]

Run from the repository root with an interpreter that has the probe's requirements
(`pants-plugins/docker_mirror/probe/requirements.txt`) installed. `--source` is the
`pants-plugins` directory whose probe is measured (default: this repository's), so the same
script measures another revision, e.g. `git archive main pants-plugins scripts | tar -x -C DIR`
and `--source DIR/pants-plugins`.

One registry on loopback (`scripts/start-registry`), one image pushed, and `--heads` references
to it, each a tag label pinned to the image's digest (`app:<n>@sha256:...`): distinct
references, so none is deduplicated, each one `HEAD /v2/app/manifests/<digest>` answered 200.
The probe runs in this process (`docker_mirror.probe.run.run`), `--concurrency` requests at a
time; its CPU is `time.process_time()` around the run (user and system time of this process,
the registry's not included), divided by the `HEAD`s it counted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--source", type=Path, default=Path("pants-plugins"))
    args = parser.parse_args()
    sys.path.insert(0, str(args.source.resolve()))

    from docker_mirror.oci.probe_protocol import parse_request
    from docker_mirror.probe.run import run
    from docker_mirror_testutil.pushes import push_image
    from docker_mirror_testutil.registries import start_registry

    with tempfile.TemporaryDirectory(prefix="probe-cpu-") as state:
        registry = start_registry(Path(state))
        try:
            digest = push_image(registry.address, "app", "1")
            references = [
                {"reference": f"{registry.address}/app:{n}@{digest}"} for n in range(args.heads)
            ]
            request = parse_request(
                {"version": 1, "requests": references,
                 "max_concurrency_per_registry": args.concurrency}
            )
            env = {"PATH": "/usr/bin:/bin", "HOME": state, "XDG_RUNTIME_DIR": state}
            run(parse_request({"version": 1, "requests": references[:20]}), env=env)  # warm-up
            for number in range(1, args.runs + 1):
                started_cpu, started = time.process_time(), time.monotonic()
                result = run(request, env=env)
                cpu, wall = time.process_time() - started_cpu, time.monotonic() - started
                heads = result.requests_sent[registry.address].HEAD
                ok = sum(r.outcome == "ok" for r in result.results)
                print(
                    f"run {number}: {heads} HEADs ({ok} ok), {args.concurrency} at a time: "
                    f"{cpu:.2f} s CPU in {wall:.2f} s, {cpu / heads * 1000:.3f} ms CPU per HEAD"
                )
        finally:
            registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
