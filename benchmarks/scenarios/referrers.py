"""What carrying signatures, attestations and SBOMs costs (issue 17): a first mirror and a no-op
re-mirror of N images that each have four referrers (cosign's `.sig`, `.att` and `.sbom` tags,
and an SPDX SBOM as an OCI 1.1 referrer listed by the fallback tag, since the loopback
`docker-registry` has no referrers API), with `referrers` on (the default) and off, of N images
with nothing attached, and `skopeo sync --all` (which copies none of them) on the same images.

The requests are read from the registries' own access logs, per image and by method: a manifest
`GET` is what Docker Hub counts as a pull, a `HEAD` is not; "other" are the rest (the referrers
API's `GET`, which the loopback registry answers 404, blob `HEAD`s).
"""

from __future__ import annotations

import concurrent.futures
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from docker_mirror_testutil import cosign
from docker_mirror_testutil.images import make_image
from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.referrers import attach_spdx_sbom
from docker_mirror_testutil.registries import Registry

from benchmarks.baselines import skopeo_sync
from benchmarks.harness import Bench, Measured, measure, median, progress, spread
from benchmarks.report import Section, Table

SIGNED = "pants publish, method=copy (referrers copied: the default)"
OFF = "pants publish, method=copy, `referrers=False`"
BARE = "pants publish, method=copy, images with nothing attached"
SKOPEO = "skopeo sync --all (copies no referrers)"
ROWS = (SIGNED, OFF, BARE, SKOPEO)
DISTINCT_IMAGES = 4
REFERRERS_PER_IMAGE = 4


@dataclass(frozen=True)
class ReferrerSizes:
    sizes: tuple[int, ...]
    noop_runs: int


@dataclass(frozen=True)
class Setup:
    repo: PantsRepo
    upstream: Registry
    signed: tuple[str, ...]  # the largest size's lines with referrers; size N uses the first N
    bare: tuple[str, ...]
    sizes: ReferrerSizes


def directory(row: str, size: int) -> str:
    return f"referrers/{ {SIGNED: 'signed', OFF: 'off', BARE: 'bare'}[row] }{size}"


def prepare(bench: Bench, repo: PantsRepo, sizes: ReferrerSizes) -> Setup:
    """Untimed: an upstream registry, seeded with the images and their referrers, and one
    generator per row and size."""
    upstream = bench.registry("referrers-upstream")
    count = max(sizes.sizes)
    signed = tuple(f"{upstream.address}/signed/img{i:04d}:1" for i in range(count))
    bare = tuple(f"{upstream.address}/bare/img{i:04d}:1" for i in range(count))
    for j in range(DISTINCT_IMAGES):
        make_image(f"{upstream.address}/seed/img{j}:1", f"referrers bench image {j}")
    key = cosign.generate_key()

    def seed(i: int) -> None:
        for kind in ("signed", "bare"):
            upstream.put_tag_into(f"seed/img{i % DISTINCT_IMAGES}", "1", f"{kind}/img{i:04d}", "1")
        repository = f"signed/img{i:04d}"
        subject = upstream.manifest_digest(repository, "1")
        assert subject is not None
        cosign.sign(upstream, repository, subject, key)
        cosign.attest(upstream, repository, subject, key)
        cosign.attach_sbom(upstream, repository, subject, b'{"spdxVersion": "SPDX-2.3"}')
        attach_spdx_sbom(upstream, repository, subject)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(seed, range(count)))
    for size in sizes.sizes:
        for row, lines, extra in ((SIGNED, signed, ""), (OFF, signed, ", referrers=False"), (BARE, bare, "")):
            repo.write(
                {
                    f"{directory(row, size)}/BUILD": (
                        f"docker_mirror_images(name='mirror', sources=['images.txt'], method='copy'{extra})\n"
                    ),
                    f"{directory(row, size)}/images.txt": "".join(f"{line}\n" for line in lines[:size]),
                }
            )
    progress(f"referrers/: {count} images with {REFERRERS_PER_IMAGE} referrers each, {count} with none")
    return Setup(repo, upstream, signed, bare, sizes)


def warm_up(bench: Bench, setup: Setup) -> None:
    """Untimed, in the repository's running daemon: packages every generator of this scenario
    once against a throwaway destination, so that no timed run is the daemon's first look at
    its targets."""
    dest = bench.registry("referrers-warm-up")
    try:
        bench.pants(setup.repo, "package", "referrers::", registry=dest)
    finally:
        bench.stop_registry(dest)


def requests_by_method(log: Sequence[str]) -> dict[str, int]:
    """Manifest HEADs and GETs, and every other request, in access-log lines."""
    counts = {"HEAD": 0, "GET": 0, "other": 0}
    for line in log:
        match = re.search(r'"(\w+) (/v2/\S*)', line)
        if not match:
            continue
        method, path = match.groups()
        if "/manifests/" in path and method in ("HEAD", "GET"):
            counts[method] += 1
        else:
            counts["other"] += 1
    return counts


@dataclass
class Runs:
    first: dict[str, dict[int, Measured]]
    noop: dict[str, dict[int, list[Measured]]]


def run_scenario(bench: Bench, setup: Setup) -> Section:
    runs = Runs({row: {} for row in ROWS}, {row: {n: [] for n in setup.sizes.sizes} for row in ROWS})
    for size in setup.sizes.sizes:
        for row in ROWS:
            if row == SKOPEO:
                lines = setup.signed[:size]

                def mirror(dest: Registry) -> str:
                    return skopeo_sync(bench.work / "referrers-sync.yaml", lines, dest)

                daemons: list[int] = []
            else:
                target = f"{directory(row, size)}::"

                def mirror(dest: Registry) -> str:
                    return bench.pants(setup.repo, "--stats-log", "publish", target, registry=dest)

                daemons = setup.repo.daemon_pids()
            dest = bench.registry("referrers-dest")
            watched = {"source": setup.upstream, "destination": dest}
            try:
                runs.first[row][size] = measure(lambda: mirror(dest), watched, daemons)
                for _ in range(setup.sizes.noop_runs):
                    runs.noop[row][size].append(measure(lambda: mirror(dest), watched, daemons))
            finally:
                bench.stop_registry(dest)
            progress(
                f"referrers, {size} images, {row.split(' (')[0]}: first {runs.first[row][size].seconds:.1f} s, "
                f"no-op {median([m.seconds for m in runs.noop[row][size]]):.1f} s"
            )
    return Section((noop_table(runs, setup), first_table(runs, setup)), targets(runs, setup))


def per_image(measured: Measured, registry: str, size: int) -> Mapping[str, float]:
    counts = requests_by_method(measured.log[registry])
    return {method: count / size for method, count in counts.items()}


def figures(measured: Measured, size: int) -> tuple[str, str]:
    source, destination = per_image(measured, "source", size), per_image(measured, "destination", size)

    def text(counts: Mapping[str, float]) -> str:
        return " / ".join(f"{counts[m]:g}" for m in ("HEAD", "GET", "other"))

    return text(source), text(destination)


def processes(data: Sequence[Measured], row: str) -> str:
    if row == SKOPEO:
        return "—"
    return "/".join(sorted({str(m.stats().processes) for m in data}, key=int))


def noop_table(runs: Runs, setup: Setup) -> Table:
    rows = []
    for size in setup.sizes.sizes:
        for row in ROWS:
            data = runs.noop[row][size]
            source, destination = figures(data[-1], size)
            rows.append(
                (row, f"{size:,}", f"{median([m.seconds for m in data]):.2f} s", spread([m.seconds for m in data]),
                 source, destination, str(data[-1].traffic["destination"].manifest_puts), processes(data, row))
            )  # fmt: skip
    return Table(
        f"8. No-op re-mirror of N images with referrers ({setup.sizes.noop_runs} "
        f"run{'s' if setup.sizes.noop_runs != 1 else ''} per row)",
        ("tool", "N", "median", "runs (s)", "source, per image: manifest HEAD / manifest GET / other",
         "destination, per image: manifest HEAD / manifest GET / other", "manifest PUTs", "processes Pants ran"),  # fmt: skip
        tuple(rows),
        (
            f"Each image has {REFERRERS_PER_IMAGE} referrers at the source: a cosign signature (`.sig`), an "
            "attestation (`.att`), an SBOM (`.sbom`) and an SPDX SBOM attached as an OCI 1.1 referrer, listed by "
            "the fallback tag (the loopback registry has no referrers API). Requests are the registries' own "
            "access-log lines of the last run, divided by N; \"other\" is every request that is not a manifest "
            "HEAD or GET (here the referrers API's GET, which the registry answers 404 and the probe asks once "
            "per run and registry; token and blob requests). Pants rows: warm pantsd, one generator per row "
            "and size. skopeo sync reads each source and destination manifest whole (a GET) and copies no "
            "referrer, so its mirror fails verification; it is here for the request counts.",
        ),
    )


def first_table(runs: Runs, setup: Setup) -> Table:
    rows = []
    for size in setup.sizes.sizes:
        for row in ROWS:
            measured = runs.first[row][size]
            source, destination = figures(measured, size)
            traffic = measured.traffic["destination"]
            rows.append(
                (row, f"{size:,}", f"{measured.seconds:.2f} s", source, str(traffic.manifest_puts), str(traffic.blob_uploads),
                 processes([measured], row))
            )  # fmt: skip
    return Table(
        "9. First mirror of N images with referrers, into an empty registry (1 run per row)",
        ("tool", "N", "time", "source, per image: manifest HEAD / manifest GET / other", "manifest PUTs at the destination",
         "blob upload requests", "processes Pants ran"),  # fmt: skip
        tuple(rows),
        ("The images share 4 distinct images' blobs; each repository's referrers are its own.",),
    )


def targets(runs: Runs, setup: Setup) -> tuple[str, ...]:
    largest = max(setup.sizes.sizes)
    signed, bare, off = (per_image(runs.noop[r][largest][-1], "source", largest) for r in (SIGNED, BARE, OFF))
    gets = runs.noop[SIGNED][largest][-1].traffic["source"].manifest_gets
    return (
        f"- Issue 17, a no-op stays free: {gets} manifest GETs at the source in a no-op re-mirror of {largest:,} "
        f"images with {REFERRERS_PER_IMAGE} referrers each ({'holds' if gets == 0 else 'does not hold'}); "
        f"per image {signed['HEAD']:g} HEADs at the source with referrers, {bare['HEAD']:g} for an image "
        f"with nothing attached, {off['HEAD']:g} with `referrers=False`.",
    )
