"""Across an air gap (issue 27): `pants package` of a `docker_mirror_archive` of 4 images, each an
index of 2 platforms, each platform a layer of its own (random bytes: none compresses) and one
layer that every platform of every image shares (stored once in the archive), one image signed
(cosign's `.sig` tag) and one with an SPDX SBOM listed by the OCI fallback tag; then, on the far
side, `pants publish --docker-mirror-from-archive=<tar>` into an empty registry, and again.
Side by side: the nearest alternative with skopeo, `skopeo copy --all --preserve-digests` of
each image into one OCI layout directory and `tar -cf` of it, and each image copied from that
directory into an empty registry (it carries no signatures or SBOMs).

Each run packages with a fresh Pants store and a fresh named-caches directory
(`--local-store-dir`, `--named-caches-dir`, and `--local-execution-root-dir` for the
sandboxes, all under the run's throwaway directory), so the first package is cold, the user's
caches are not touched, and what each keeps is measured with `du -sb`. The bytes fetched from
the source are the sizes of the blob `GET`s the upstream's access log answered 200.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from docker_mirror_testutil import cosign
from docker_mirror_testutil.oci import digest_tag
from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.pushes import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, push_blob, push_manifest
from docker_mirror_testutil.referrers import attach_spdx_sbom
from docker_mirror_testutil.registries import Registry

from docker_mirror.oci.manifests import digest_of

from benchmarks.harness import Bench, Measured, measure, median, progress, run, spread
from benchmarks.report import Section, Table

PLATFORMS = (("linux", "amd64"), ("linux", "arm64"))
DIRECTORY = "air_gap"
OUTPUT = "air-gap.tar"
MIB = 2**20

COLD = "pants package, cold (fresh named cache and store)"
AGAIN = "pants package again, nothing changed (`dist/` deleted)"
PUBLISH = "pants publish --docker-mirror-from-archive, into an empty registry"
REPUBLISH = "pants publish --docker-mirror-from-archive again (up to date)"
SKOPEO_PACK = "skopeo copy --all ×N into one OCI layout, then `tar -cf`"
SKOPEO_UNTAR = "`tar -xf` of skopeo's tar (the far side needs the directory)"
SKOPEO_LOAD = "skopeo copy --all ×N from the OCI layout into an empty registry"
ROWS = (COLD, AGAIN, PUBLISH, REPUBLISH, SKOPEO_PACK, SKOPEO_UNTAR, SKOPEO_LOAD)


@dataclass(frozen=True)
class AirGapSizes:
    images: int
    runs: int
    layer: int  # bytes of each platform's own layer
    shared: int  # bytes of the layer every platform of every image has


@dataclass(frozen=True)
class Setup:
    repo: PantsRepo
    upstream: Registry
    references: tuple[str, ...]
    sizes: AirGapSizes


@dataclass(frozen=True)
class Run:
    """One row of one run: the command, and what it left on disk."""

    measured: Measured
    tar: int | None = None  # bytes of the archive it wrote
    store: int | None = None  # growth of the Pants store dir (du -sb)
    named: int | None = None  # growth of the named-caches dir
    peak: int | None = None  # the most that store + blob cache + dist + sandboxes grew at once, sampled
    after: int | None = None  # their growth once it is over
    sandboxes: int | None = None  # the most the sandboxes held at once, sampled


def image_repository(i: int) -> str:
    return f"bench/air{i:02d}"


def prepare(bench: Bench, sizes: AirGapSizes) -> Setup:
    """Untimed: a repository of its own (each run restarts its pantsd on fresh caches), the
    upstream, and the generator and archive. `seed` fills the upstream."""
    repo = bench.repo("air-gap")
    upstream = bench.registry("air-gap-upstream")
    references = tuple(f"{upstream.address}/{image_repository(i)}:1" for i in range(sizes.images))
    repo.write(
        {
            "BUILD": "",
            f"{DIRECTORY}/BUILD": (
                "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy')\n"
                f"docker_mirror_archive(name='archive', images=[':mirror'], output_path='{OUTPUT}')\n"
            ),
            f"{DIRECTORY}/images.txt": "".join(f"{r}\n" for r in references),
        }
    )
    return Setup(repo, upstream, references, sizes)


def push_layered_index(address: str, repository: str, label: str, own: Sequence[bytes], shared: bytes) -> str:
    """An index of `PLATFORMS` under the tag `1`, each platform's manifest the `shared` layer and
    its own one of `own`; returns the index's digest."""
    shared_descriptor = {"mediaType": OCI_LAYER, "digest": push_blob(address, repository, shared), "size": len(shared)}
    entries = []
    for (os_name, arch), layer in zip(PLATFORMS, own):
        config = json.dumps(
            {"architecture": arch, "os": os_name, "config": {"Labels": {"label": f"{label} {os_name}/{arch}"}},
             "rootfs": {"type": "layers", "diff_ids": []}},
            sort_keys=True,
        ).encode()  # fmt: skip
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": push_blob(address, repository, config), "size": len(config)},
                "layers": [
                    shared_descriptor,
                    {"mediaType": OCI_LAYER, "digest": push_blob(address, repository, layer), "size": len(layer)},
                ],
            },
            sort_keys=True,
        ).encode()
        digest = push_manifest(address, repository, digest_of(manifest), manifest, OCI_MANIFEST)
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
                        "platform": {"os": os_name, "architecture": arch}})  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, sort_keys=True).encode()
    return push_manifest(address, repository, "1", index, OCI_INDEX)


def seed(setup: Setup) -> None:
    """The images, a cosign signature of the first and an SBOM of the second (listed by the
    fallback tag: the loopback registry has no referrers API)."""
    shared = os.urandom(setup.sizes.shared)
    digests = [
        push_layered_index(setup.upstream.address, image_repository(i), f"air {i}",
                           [os.urandom(setup.sizes.layer) for _ in PLATFORMS], shared)  # fmt: skip
        for i in range(setup.sizes.images)
    ]
    cosign.sign(setup.upstream, image_repository(0), digests[0], cosign.generate_key())
    attach_spdx_sbom(setup.upstream, image_repository(min(1, len(digests) - 1)), digests[min(1, len(digests) - 1)])


# ------------------------------------------------------------------------------------------
# Measuring the bytes


def du_bytes(*paths: Path) -> int:
    """`du -sbc` of the paths that exist: their apparent sizes, a file linked twice counted once."""
    present = [str(p) for p in paths if p.exists()]
    if not present:
        return 0
    out = subprocess.run(["du", "-sbc", "--", *present], capture_output=True, text=True, check=False).stdout
    lines = out.strip().splitlines()
    return int(lines[-1].split()[0]) if lines else 0


def apparent_bytes(*paths: Path) -> int:
    """What `du -sb` counts (every file's and directory's apparent size, an inode once), read in
    this process: cheap enough to sample often."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top in paths:
        for root, dirs, files in os.walk(top):
            for name in (".", *dirs, *files):
                try:
                    stat = os.lstat(os.path.join(root, name))
                except OSError:  # removed meanwhile (a sandbox, a temporary file)
                    continue
                if (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    total += stat.st_size
    return total


SAMPLE_INTERVAL = 0.05  # seconds


@contextlib.contextmanager
def peak_bytes(paths: Sequence[Path]) -> Iterator[Callable[[], int]]:
    """While the block runs, `apparent_bytes(paths)` every `SAMPLE_INTERVAL` seconds; the
    function it yields returns the largest, once the block is done."""
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_INTERVAL):
            samples.append(apparent_bytes(*paths))

    thread = threading.Thread(target=sample, name="du-sampler", daemon=True)
    thread.start()
    try:
        yield lambda: max(samples, default=0)
    finally:
        done.set()
        thread.join(30)


def blob_gets(log: Sequence[str]) -> list[tuple[str, int]]:
    """(digest, bytes) of each blob an access log served whole (`GET .../blobs/<digest>`, 200)."""
    served = []
    for line in log:
        parts = line.split('"')
        if len(parts) > 2 and parts[1].startswith("GET /v2/") and "/blobs/sha256:" in parts[1]:
            status, _, size = parts[2].strip().partition(" ")
            if status == "200":
                served.append((parts[1].split()[1].rsplit("/", 1)[1], int(size.split()[0])))
    return served


def blob_bytes(log: Sequence[str]) -> int:
    return sum(size for _, size in blob_gets(log))


def writes(log: Sequence[str]) -> int:
    return sum(1 for line in log if any(f'"{method} ' in line for method in ("PUT", "POST", "PATCH", "DELETE")))


# ------------------------------------------------------------------------------------------
# One run


@dataclass(frozen=True)
class Caches:
    """A run's own Pants store, named caches and sandboxes."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "lmdb_store"

    @property
    def named(self) -> Path:
        return self.root / "named_caches"

    @property
    def blobs(self) -> Path:
        """The archive's blob store: the named cache `docker_mirror_blobs` (goals/archive.py)."""
        return self.named / "docker_mirror_blobs"

    @property
    def sandboxes(self) -> Path:
        return self.root / "sandboxes"

    def options(self) -> tuple[str, ...]:
        self.sandboxes.mkdir(parents=True, exist_ok=True)
        return (
            f"--named-caches-dir={self.named}",
            f"--local-store-dir={self.store}",
            f"--local-execution-root-dir={self.sandboxes}",
        )


def check_published(setup: Setup, dest: Registry, prefix: str, signed: bool) -> None:
    """Every image is at `dest` under its source's digest (and the signature, where `signed`)."""
    for i in range(setup.sizes.images):
        repository = image_repository(i)
        source = setup.upstream.manifest_digest(repository, "1")
        copied = dest.manifest_digest(f"{prefix}{repository}", "1")
        if copied != source:
            raise RuntimeError(f"{dest.address}/{prefix}{repository}:1 serves {copied}, the source {source}")
    if signed:
        source = setup.upstream.manifest_digest(image_repository(0), "1")
        assert source is not None
        tag = digest_tag(source, "sig")
        if dest.manifest_digest(f"{prefix}{image_repository(0)}", tag) is None:
            raise RuntimeError(f"{dest.address}/{prefix}{image_repository(0)} has no signature tag {tag}")


def check_archive(setup: Setup, tar: Path) -> None:
    """The archive names every image, the signature's tag and the SBOM's fallback tag."""
    with tarfile.open(tar, "r:") as archive:
        member = archive.extractfile("index.json") or archive.extractfile("./index.json")
        assert member is not None
        names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in json.load(member)["manifests"]]
    if len(names) != setup.sizes.images + 2 or not any(n.endswith(".sig") for n in names):
        raise RuntimeError(f"{tar} names {names}: not the {setup.sizes.images} images, a signature and an SBOM's tag")


def pants_run(bench: Bench, setup: Setup, number: int) -> dict[str, Run]:
    repo, caches = setup.repo, Caches(bench.work / f"air-gap-caches-{number}")
    options = caches.options()
    dist = repo.root / "dist"
    tar = dist / OUTPUT
    # Untimed: a pantsd of its own on the fresh caches (stopped first: the store is the
    # daemon's), which builds the probe's virtualenv in them by packaging the generator (its
    # images' manifests are read, no blob).
    bench.stop_daemon(repo)
    shutil.rmtree(dist, ignore_errors=True)
    warm = bench.registry("air-gap-warm-up")
    try:
        bench.pants(repo, *options, "package", f"{DIRECTORY}:mirror", registry=warm)
    finally:
        bench.stop_registry(warm)
    daemons = repo.daemon_pids()
    watched = {"source": setup.upstream}
    runs: dict[str, Run] = {}

    def package(row: str) -> None:
        store, named = du_bytes(caches.store), du_bytes(caches.named)
        # Sampled: where the archive's bytes go (not the probe's virtualenv, thousands of files
        # that the package does not change).
        hot = (caches.store, caches.blobs, dist, caches.sandboxes)
        before = apparent_bytes(*hot)
        with peak_bytes(hot) as peak, peak_bytes((caches.sandboxes,)) as sandboxes:
            measured = measure(lambda: bench.pants(repo, *options, "package", f"{DIRECTORY}:archive"), watched, daemons)
        after = apparent_bytes(*hot)
        runs[row] = Run(
            measured, tar.stat().st_size, du_bytes(caches.store) - store, du_bytes(caches.named) - named,
            max(peak(), after) - before, after - before, sandboxes(),
        )  # fmt: skip
        progress(
            f"air gap, run {number + 1}, {row}: {measured.seconds:.1f} s, tar {runs[row].tar / MIB:.1f} MiB, "
            f"{blob_bytes(measured.log['source']) / MIB:.1f} MiB fetched, store +{runs[row].store / MIB:.1f} MiB, "
            f"named caches +{runs[row].named / MIB:.1f} MiB, peak +{runs[row].peak / MIB:.1f} MiB"
        )

    package(COLD)
    check_archive(setup, tar)
    if tar.stat().st_nlink > 1:
        bench.warnings.append(f"- air gap: {tar} has {tar.stat().st_nlink} links (a hard link to the store?).")
    shutil.rmtree(dist)
    package(AGAIN)

    dest = bench.registry("air-gap-dest")
    try:
        for row in (PUBLISH, REPUBLISH):
            measured = measure(
                lambda: bench.pants(repo, *options, "publish", f"{DIRECTORY}::",
                                    f"--docker-mirror-from-archive=dist/{OUTPUT}", registry=dest),  # fmt: skip
                {**watched, "destination": dest},
                daemons,
            )
            runs[row] = Run(measured)
            progress(
                f"air gap, run {number + 1}, {row}: {measured.seconds:.1f} s, {len(measured.log['source'])} "
                f"requests to the source, {writes(measured.log['destination'])} writes"
            )
        check_published(setup, dest, "mirror/", signed=True)
    finally:
        bench.stop_registry(dest)
    bench.stop_daemon(repo)
    shutil.rmtree(caches.root, ignore_errors=True)  # about 3 copies of the archive
    return runs


def skopeo_run(bench: Bench, setup: Setup, number: int) -> dict[str, Run]:
    layout = bench.work / f"air-gap-oci-{number}"
    archive = bench.work / f"air-gap-oci-{number}.tar"
    far = bench.work / f"air-gap-far-{number}"
    names = setup.references  # the OCI ref names: the sources, as Pants names them in its archive
    runs: dict[str, Run] = {}

    def pack() -> str:
        out = "".join(
            run(["skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                 f"docker://{reference}", f"oci:{layout}:{name}"])  # fmt: skip
            for reference, name in zip(setup.references, names)
        )
        return out + run(["tar", "-cf", str(archive), "-C", str(layout), "."])

    measured = measure(pack, {"source": setup.upstream})
    runs[SKOPEO_PACK] = Run(measured, archive.stat().st_size)
    progress(f"air gap, run {number + 1}, {SKOPEO_PACK}: {measured.seconds:.1f} s, tar {archive.stat().st_size / MIB:.1f} MiB")

    far.mkdir()
    runs[SKOPEO_UNTAR] = Run(measure(lambda: run(["tar", "-xf", str(archive), "-C", str(far)])))
    dest = bench.registry("air-gap-skopeo-dest")
    try:
        measured = measure(
            lambda: "".join(
                run(["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                     f"oci:{far}:{name}", f"docker://{dest.address}/mirror/{reference.split('/', 1)[1]}"])  # fmt: skip
                for reference, name in zip(setup.references, names)
            ),
            {"source": setup.upstream, "destination": dest},
        )
        runs[SKOPEO_LOAD] = Run(measured)
        progress(f"air gap, run {number + 1}, {SKOPEO_LOAD}: {measured.seconds:.1f} s")
        check_published(setup, dest, "mirror/", signed=False)
    finally:
        bench.stop_registry(dest)
    for path in (layout, far):
        shutil.rmtree(path, ignore_errors=True)
    archive.unlink(missing_ok=True)
    return runs


# ------------------------------------------------------------------------------------------
# The table


def mib(value: float | None) -> str:
    return "—" if value is None else f"{value / MIB:.1f} MiB"


def run_scenario(bench: Bench, setup: Setup) -> Section:
    data: dict[str, list[Run]] = {row: [] for row in ROWS}
    for number in range(setup.sizes.runs):
        for one in (pants_run(bench, setup, number), skopeo_run(bench, setup, number)):
            for row, result in one.items():
                data[row].append(result)

    def med(row: str, pick: Callable[[Run], int | None]) -> float | None:
        values = [v for v in (pick(r) for r in data[row]) if v is not None]
        return median(values) if values else None

    def requests(row: str, name: str) -> str:
        counts = [len(r.measured.log.get(name, ())) for r in data[row] if name in r.measured.log]
        return " / ".join(str(c) for c in counts) if counts else "—"

    def row_writes(row: str) -> str:
        counts = [writes(r.measured.log["destination"]) for r in data[row] if "destination" in r.measured.log]
        return " / ".join(str(c) for c in counts) if counts else "—"

    def fetched(row: str) -> str:
        """The median bytes; each run's blob GETs, and how many blobs they were."""
        if not any("source" in r.measured.log for r in data[row]):
            return "—"
        gets = [blob_gets(r.measured.log["source"]) for r in data[row]]
        counts = ", ".join(f"{len(g)} of {len({d for d, _ in g})}" for g in gets)
        fetched_bytes = mib(med(row, lambda r: blob_bytes(r.measured.log["source"])))
        return f"{fetched_bytes} ({counts})" if any(gets) else fetched_bytes

    table_rows = tuple(
        (
            row.replace("×N", f"×{setup.sizes.images}"),
            f"{median([r.measured.seconds for r in data[row]]):.2f} s",
            spread([r.measured.seconds for r in data[row]]),
            mib(med(row, lambda r: r.tar)),
            fetched(row),
            requests(row, "source"),
            mib(med(row, lambda r: r.store)),
            mib(med(row, lambda r: r.named)),
            row_writes(row),
        )
        for row in ROWS
    )
    sizes = setup.sizes
    unique = sizes.images * len(PLATFORMS) * sizes.layer + sizes.shared
    cold_tar = med(COLD, lambda r: r.tar) or 0
    skopeo_tar = med(SKOPEO_PACK, lambda r: r.tar) or 0
    store, named = med(COLD, lambda r: r.store) or 0, med(COLD, lambda r: r.named) or 0
    peak, after = med(COLD, lambda r: r.peak) or 0, med(COLD, lambda r: r.after) or 0
    sandbox = med(COLD, lambda r: r.sandboxes) or 0
    wall = {row: median([r.measured.seconds for r in data[row]]) for row in ROWS}
    runs = f"{sizes.runs} run{'s' if sizes.runs > 1 else ''} per row"
    title = (
        f"12. Air gap: an archive of {sizes.images} images of {len(PLATFORMS)} platforms, one "
        f"{sizes.layer // MIB} MiB layer each and one {sizes.shared // MIB} MiB layer all share, and loading it ({runs})"
    )
    notes = (
        f"The layers are random bytes ({unique / MIB:.0f} MiB of distinct layers); one image has a cosign "
        "signature and one an SPDX SBOM listed by the OCI fallback tag, which the archive carries and "
        "skopeo's layout does not (skopeo copies no signatures or referrers). Each run packages with "
        "a fresh `--named-caches-dir`, `--local-store-dir` and `--local-execution-root-dir` under the "
        "benchmark's throwaway directory and its own pantsd on them, started by an untimed `package` of "
        "the generator (which builds the probe's virtualenv there and reads the images' manifests, no "
        "blob): cold means no blob and no process result cached. \"Fetched\" is the bytes of the blob "
        "`GET`s the source answered 200 (in brackets, per run: those `GET`s, of how many distinct blobs); "
        "\"requests to the source\" are its access-log lines, per run; "
        "store and named-cache growth are `du -sb` after the command less before; writes are the "
        "destination's `PUT`, `POST`, `PATCH` and `DELETE` lines, per run. Pants publishes from the "
        "tar; skopeo loads from the directory the far side untars first.",
    )
    lines = (
        f"- Air gap (issue 27): a cold `pants package` of the archive of {sizes.images} images "
        f"({cold_tar / MIB:.1f} MiB tar, the shared layer once) took {wall[COLD]:.2f} s against "
        f"{wall[SKOPEO_PACK]:.2f} s for `skopeo copy --all` ×{sizes.images} into one layout and `tar -cf` "
        f"({skopeo_tar / MIB:.1f} MiB, no signature or SBOM); packaging again fetched "
        f"{mib(med(AGAIN, lambda r: blob_bytes(r.measured.log['source'])))} in {wall[AGAIN]:.2f} s; publishing "
        f"from the tar took {wall[PUBLISH]:.2f} s (skopeo from the untarred layout: {wall[SKOPEO_LOAD]:.2f} s, "
        f"plus {wall[SKOPEO_UNTAR]:.2f} s of `tar -xf`) and asked the source nothing; again, {wall[REPUBLISH]:.2f} s, "
        f"writes {row_writes(REPUBLISH)}.",
        f"- Air gap, disk: the cold package grew the store by {store / MIB:.1f} MiB and the named caches by "
        f"{named / MIB:.1f} MiB, and wrote a {cold_tar / MIB:.1f} MiB tar: {after / MIB:.1f} MiB kept in all "
        f"({after / cold_tar if cold_tar else 0:.2f}x the archive), at most {peak / MIB:.1f} MiB at once "
        f"({peak / cold_tar if cold_tar else 0:.2f}x; the sandboxes alone held at most {sandbox / MIB:.1f} MiB), "
        f"sampled every {SAMPLE_INTERVAL:.2f} s.",
    )
    return Section(
        (
            Table(
                title,
                ("step", "wall (median)", "runs (s)", "tar", "fetched from the source", "requests to the source",
                 "store growth", "named-cache growth", "writes at the destination"),  # fmt: skip
                table_rows,
                notes,
            ),
        ),
        lines,
    )
