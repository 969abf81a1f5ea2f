"""What a no-op re-mirror asks each registry, counted exactly from its access log: the probe as
Pants runs it (its own process, the reads copy mode sends: each source and destination tag, and
the referrers of each source image with its destination), after a first mirror copied everything.

Per image at the source: its tag's `HEAD`, then one `HEAD` per cosign tag or fallback tag that
exists; per repository, its tag list (a page per 1,000 tags); per registry, one referrers request
to learn that it has no referrers API. At the destination: each tag's `HEAD`, and for what the
source has, a `HEAD` of it. A registry with the referrers API (`testutil.referrers_proxy`) is
asked for each image's referrers list instead of the fallback tag."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Sequence

import pytest

from docker_mirror.oci.media_types import OCI_MANIFEST
from docker_mirror.probe.access import Routes
from docker_mirror.probe.credentials import CredentialStore
from docker_mirror.probe.distribution import Distribution
from docker_mirror.probe.mirror_referrers import Location, copy, find
from docker_mirror.probe.registry import RegistrySession
from docker_mirror.probe.retry import RetryPolicy
from docker_mirror.probe.secrets import Secrets
from docker_mirror.probe.transport import HttpClient
from docker_mirror_testutil import cosign
from docker_mirror_testutil.fault_proxy import passthrough
from docker_mirror_testutil.oci import digest_tag
from docker_mirror_testutil.probe_process import run_probe
from docker_mirror_testutil.pushes import push_image, push_manifest
from docker_mirror_testutil.referrers import attach_spdx_sbom
from docker_mirror_testutil.referrers_proxy import ReferrersProxy
from docker_mirror_testutil.registries import Registry, start_registry

_REQUEST = re.compile(r'"(?P<method>[A-Z]+) /v2/(?P<path>\S+) HTTP')


def kinds(lines: Iterable[str]) -> Counter:
    """Requests by method and what they ask for: `HEAD manifest`, `GET tags`, `GET referrers`..."""
    counts: Counter = Counter()
    for line in lines:
        match = _REQUEST.search(line)
        if match is None:
            continue
        path = match["path"]
        kind = next(
            (name for part, name in (("/tags/list", "tags"), ("/referrers/", "referrers"),
                                     ("/manifests/", "manifest"), ("/blobs/", "blob")) if part in path),
            "other",
        )  # fmt: skip
        counts[f"{match['method']} {kind}"] += 1
    return counts


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_registry(tmp_path_factory.mktemp("source"))
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def destination(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_registry(tmp_path_factory.mktemp("destination"))
    try:
        yield registry
    finally:
        registry.stop()


def session(address: str, home: Path) -> RegistrySession:
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(home), "PATH": "/usr/bin:/bin"}
    secrets = Secrets()
    return RegistrySession(
        address, address,
        http=HttpClient(Routes(env, secrets=secrets), timeout=10),
        credentials=CredentialStore(env, secrets=secrets), policy=RetryPolicy(attempts=2),
        max_concurrency=8, timeout=10, secrets=secrets,
    )  # fmt: skip


def push_images(source: Registry, destination: Registry, repository: str, count: int) -> List[str]:
    """`count` images tagged 1, 2, ... at the source, and the same at the destination (as the
    plugin's skopeo copy leaves them); their digests."""
    digests = []
    for number in range(1, count + 1):
        label = f"{repository} {number}"
        digest = push_image(source.address, repository, str(number), label)
        assert push_image(destination.address, f"mirror/{repository}", str(number), label) == digest
        digests.append(digest)
    return digests


def mirror_referrers(source: str, destination: str, repository: str, subjects: Sequence[str], home: Path) -> None:
    """What the first mirror did: every referrer of each subject copied (in process)."""

    async def all_of_them() -> None:
        src = Location(Distribution(session(source, home)), repository)
        dst = Location(Distribution(session(destination, home)), f"mirror/{repository}")
        for subject in subjects:
            found = await find(src, subject, [dst])
            result = await copy(src, dst, subject, found.plans[0])
            assert result.outcome == "ok", result

    asyncio.run(all_of_them())


def no_op(
    tmp_path: Path, source: str, destination: str, repository: str, count: int,
    logs: Dict[str, Callable[[], List[str]]],
) -> Dict[str, Any]:
    """The reads of a re-mirror of `count` images: returns the probe's result and, by name,
    what each log in `logs` gained meanwhile (by kind)."""
    before = {name: len(log()) for name, log in logs.items()}
    run = run_probe(
        tmp_path,
        [f"{source}/{repository}:{n}" for n in range(1, count + 1)]
        + [f"{destination}/mirror/{repository}:{n}" for n in range(1, count + 1)],
        referrers=[
            {"reference": f"{source}/{repository}:{n}", "platform": None,
             "destinations": [f"{destination}/mirror/{repository}"]}
            for n in range(1, count + 1)
        ],
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert set(run.outcomes()) == {"ok"}, run.text
    asked = {name: kinds(log()[before[name]:]) for name, log in logs.items()}
    return {"result": run.document, **asked}


def plans(result: Dict[str, Any]) -> List[List[Dict[str, Any]]]:
    """The items each image's destination lacks, image by image."""
    return [
        [item for plan in entry["destinations"].values() for item in plan["items"]]
        for entry in result["referrers"]
    ]


def settled(registry: Registry) -> Callable[[], List[str]]:
    return registry.settled_access_log


def test_nothing_attached(source: Registry, destination: Registry, tmp_path: Path) -> None:
    n = 5
    push_images(source, destination, "none/app", n)
    asked = no_op(tmp_path, source.address, destination.address, "none/app", n,
                  {"source": settled(source), "destination": settled(destination)})  # fmt: skip
    assert plans(asked["result"]) == [[]] * n
    assert asked["source"] == Counter({"HEAD manifest": n, "GET tags": 1, "GET referrers": 1})
    assert asked["destination"] == Counter({"HEAD manifest": n})


def test_a_signature_only(source: Registry, destination: Registry, tmp_path: Path) -> None:
    n = 5
    subjects = push_images(source, destination, "sig/app", n)
    key = cosign.generate_key()
    for subject in subjects:
        cosign.sign(source, "sig/app", subject, key)
    mirror_referrers(source.address, destination.address, "sig/app", subjects, tmp_path)
    asked = no_op(tmp_path, source.address, destination.address, "sig/app", n,
                  {"source": settled(source), "destination": settled(destination)})  # fmt: skip
    assert plans(asked["result"]) == [[]] * n
    # Each image's tag and its `.sig` tag; the tag list; learning there is no referrers API.
    assert asked["source"] == Counter({"HEAD manifest": 2 * n, "GET tags": 1, "GET referrers": 1})
    assert asked["destination"] == Counter({"HEAD manifest": 2 * n})


def test_30_images_with_a_signature_and_an_sbom_cost_at_most_4_requests_each(
    source: Registry, destination: Registry, tmp_path: Path
) -> None:
    n = 30
    subjects = push_images(source, destination, "both/app", n)
    key = cosign.generate_key()
    for subject in subjects:
        cosign.sign(source, "both/app", subject, key)
        attach_spdx_sbom(source, "both/app", subject)  # listed by the fallback tag
    mirror_referrers(source.address, destination.address, "both/app", subjects, tmp_path)
    asked = no_op(tmp_path, source.address, destination.address, "both/app", n,
                  {"source": settled(source), "destination": settled(destination)})  # fmt: skip
    assert plans(asked["result"]) == [[]] * n
    assert [entry["found"] for entry in asked["result"]["referrers"]] == [{"signature": 1}] * n
    # The image's tag, `.sig` and the fallback tag; no manifest GET.
    assert asked["source"] == Counter({"HEAD manifest": 3 * n, "GET tags": 1, "GET referrers": 1})
    assert sum(asked["source"].values()) <= 4 * n
    # Each tag, the `.sig` tag and the source's listing by its digest.
    assert asked["destination"] == Counter({"HEAD manifest": 3 * n})


def test_a_signature_added_upstream_after_the_last_run_still_arrives(
    source: Registry, destination: Registry, tmp_path: Path
) -> None:
    n = 3
    subjects = push_images(source, destination, "later/app", n)
    logs = {"source": settled(source), "destination": settled(destination)}
    first = no_op(tmp_path, source.address, destination.address, "later/app", n, logs)
    assert plans(first["result"]) == [[]] * n
    signature = cosign.sign(source, "later/app", subjects[1], cosign.generate_key())
    again = no_op(tmp_path, source.address, destination.address, "later/app", n, logs)
    tag = digest_tag(subjects[1], "sig")
    assert plans(again["result"]) == [
        [], [{"kind": "signature", "digest": signature, "media_type": OCI_MANIFEST, "tag": tag}], []
    ]
    # The tag list named the new `.sig` tag: one more HEAD, at each registry.
    assert again["source"] == Counter({"HEAD manifest": n + 1, "GET tags": 1, "GET referrers": 1})
    assert again["destination"] == Counter({"HEAD manifest": n + 1})
    mirror_referrers(source.address, destination.address, "later/app", subjects, tmp_path)
    assert destination.manifest_digest("mirror/later/app", tag) == signature


def test_a_repository_of_3000_tags_is_listed_in_3_pages(
    source: Registry, destination: Registry, tmp_path: Path
) -> None:
    (subject,) = push_images(source, destination, "many/app", 1)
    manifest, media_type = source.manifest("many/app", subject)
    for number in range(2, 3001):  # 3,000 tags in all
        push_manifest(source.address, "many/app", f"v{number:04d}", manifest, media_type)
    asked = no_op(tmp_path, source.address, destination.address, "many/app", 1,
                  {"source": settled(source), "destination": settled(destination)})  # fmt: skip
    assert plans(asked["result"]) == [[]]
    # 1,000 tags a page, following the registry's `Link`s: 3 pages, within the 4 that the
    # image's `HEAD`s (.sig, .att, .sbom, fallback) would have cost.
    assert asked["source"] == Counter({"HEAD manifest": 1, "GET tags": 3, "GET referrers": 1})


@pytest.mark.parametrize("attached", [False, True])
def test_a_registry_with_the_referrers_api(attached: bool, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Source and destination with the referrers API: each image's referrers list, as before
    (the tag list still names its cosign tags); no fallback tag."""
    upstream_registry = start_registry(tmp_path_factory.mktemp("api-source"))
    mirror_registry = start_registry(tmp_path_factory.mktemp("api-destination"))
    try:
        with ReferrersProxy.start(upstream_registry.address, passthrough()) as upstream_api, \
                ReferrersProxy.start(mirror_registry.address, passthrough()) as mirror_api:  # fmt: skip
            upstream, mirror = upstream_api.as_registry(upstream_registry), mirror_api.as_registry(mirror_registry)
            n = 4
            subjects = push_images(upstream, mirror, "api/app", n)
            if attached:
                key = cosign.generate_key()
                for subject in subjects:
                    cosign.sign(upstream, "api/app", subject, key)
                    attach_spdx_sbom(upstream, "api/app", subject)
                mirror_referrers(upstream.address, mirror.address, "api/app", subjects, tmp_path)
            upstream_registry.settled_access_log()
            mirror_registry.settled_access_log()

            def through(proxy: ReferrersProxy, registry: Registry) -> Callable[[], List[str]]:
                def log() -> List[str]:
                    registry.settled_access_log()
                    return [f'"{r.method} {r.path} HTTP' for r in proxy.requests()]

                return log

            asked = no_op(tmp_path, upstream.address, mirror.address, "api/app", n,
                          {"source": through(upstream_api, upstream_registry),
                           "destination": through(mirror_api, mirror_registry)})  # fmt: skip
            assert plans(asked["result"]) == [[]] * n
            if attached:
                # The tag, `.sig`; the referrers list; the tag list.
                assert asked["source"] == Counter({"HEAD manifest": 2 * n, "GET referrers": n, "GET tags": 1})
                # The tag, `.sig`, and the source's listing by its digest.
                assert asked["destination"] == Counter({"HEAD manifest": 3 * n})
            else:
                assert asked["source"] == Counter({"HEAD manifest": n, "GET referrers": n, "GET tags": 1})
                assert asked["destination"] == Counter({"HEAD manifest": n})
            assert digest_tag(subjects[0]) not in upstream_registry.tags("api/app")
    finally:
        upstream_registry.stop()
        mirror_registry.stop()
