"""What a spec line can and cannot decide, across the plugin's modules (see THREAT_MODEL.md).

A spec line names a *source* image and nothing else. Whatever the grammar accepts, it cannot
choose where its image is pushed, cannot turn off TLS verification for a host that is not on
loopback, and reaches the registry probe, which copies it, only as a string in its request file,
never on a command line.
"""

from __future__ import annotations

import ipaddress
import json
from types import SimpleNamespace

from docker_mirror.target_types import DockerMirrorPlatformField, DockerMirrorSourceImageField
from docker_mirror.generation import BUILD, COPY, PlannedImage, image_field_values
from docker_mirror.oci.probe_protocol import Plan, ProbeRequest, TagCopy, encoded, parse_request
from docker_mirror.oci.reference import DOCKER_HUB, ImageReference, registry_host
from docker_mirror.oci.registry_access import tls_verify
from docker_mirror.util_rules.copies import CopyImageRequest
from docker_mirror.util_rules.registry_reads import REQUEST_FILE, RESULT_FILE, probe_process
from docker_mirror.spec_files.parser import SpecEntry, parse_spec
from hypothesis import example, given
from docker_mirror_testutil.spec_strategies import GeneratedLine, hosts, spec_lines

PATH = "src/images.txt"
HELPER = "src/images.txt:mirror"


def entry_of(line: GeneratedLine) -> SpecEntry:
    (entry,) = parse_spec(f"{line.text}\n".encode("utf-8"), PATH)
    return entry


def is_loopback_host(registry: str) -> bool:
    """Written apart from registry_access.py: `localhost`, 127.0.0.0/8 or ::1, any port."""
    if registry.startswith("["):
        return ipaddress.IPv6Address(registry[1 : registry.index("]")]) == ipaddress.IPv6Address("::1")
    host = registry.partition(":")[0]
    if host.lower() == "localhost":
        return True
    octets = host.split(".")
    is_ipv4 = len(octets) == 4 and all(
        o.isdigit() and o.isascii() and int(o) <= 255 and (o == "0" or not o.startswith("0"))
        for o in octets
    )
    return is_ipv4 and octets[0] == "127"


@given(spec_lines())
def test_a_spec_line_cannot_choose_where_its_image_is_pushed(line: GeneratedLine) -> None:
    entry = entry_of(line)
    values = image_field_values(
        PlannedImage("image", entry),
        method=BUILD,
        defaults={},
        template={},
        overrides={},
        spec_file="images.txt",
        helper_spec=HELPER,
    )
    # No `registries` (so `[docker].registries` defaults or the BUILD file decide), no build
    # args, no context: only these, from the line.
    assert set(values) == {"image_tags", "pull", "instructions", "spec_file", "repository", "dependencies"}
    # The destination repository is the source path without its host (the `[docker].registries`
    # entry decides the destination host and may add a prefix); never a host:port of its own.
    assert values["repository"] == entry.reference.repository
    assert ":" not in values["repository"] and "@" not in values["repository"]
    assert values["instructions"] == [entry.from_instruction]
    assert values["image_tags"] == [entry.default_image_tag]
    assert values["spec_file"] == "images.txt" and values["pull"] is True
    assert values["dependencies"] == [HELPER]

    # method="copy": the same, with the source reference and platform instead of a Dockerfile.
    copy = image_field_values(
        PlannedImage("image", entry),
        method=COPY,
        defaults={},
        template={},
        overrides={},
        spec_file="images.txt",
        helper_spec=HELPER,
    )
    assert copy == {
        DockerMirrorSourceImageField.alias: str(entry.reference),
        DockerMirrorPlatformField.alias: entry.platform,
        "image_tags": [entry.default_image_tag],
        "repository": entry.reference.repository,
        "spec_file": "images.txt",
        "dependencies": [HELPER],
    }


@given(hosts)
@example("localhost:5000")
@example("LOCALHOST:5000")
@example("[0:0:0:0:0:0:0:1]:5000")
@example("127.255.0.1:80")
@example("128.0.0.1:80")
@example("localhost.example.com")
@example("[::2]:5000")
def test_tls_verification_is_only_skipped_for_loopback_registries(host: str) -> None:
    # With no `insecure_registries` configured (a pants.toml setting, not a spec file's).
    assert tls_verify(host) is (not is_loopback_host(host))


@given(spec_lines())
def test_the_probe_reads_the_same_host_and_gets_the_reference_only_as_data(line: GeneratedLine) -> None:
    entry = entry_of(line)
    reference = str(entry.reference)
    # copy mode decides TLS on the host it reads from the reference: the parser's host.
    assert registry_host(reference) == (entry.reference.registry or DOCKER_HUB)
    verify = tls_verify(registry_host(reference))
    assert verify is (entry.reference.registry is None or not is_loopback_host(entry.reference.registry))
    # What is copied is a field of the request file, read back as it was written.
    copy = CopyImageRequest(
        ImageReference.parse(reference).name, "sha256:" + "1" * 64, "mirror.example.com/mirror/app",
        Plan(), 1, tags=(TagCopy("1", None),), platform=entry.platform,
    ).copy_request(())
    request = parse_request(json.loads(encoded(ProbeRequest((), copy=copy))))
    assert request.copy == copy and registry_host(copy.source) == registry_host(reference)


def test_the_probes_command_line_is_fixed() -> None:
    """Only the request and result files' names: nothing of a spec line."""
    probe = SimpleNamespace(pex=None)
    process = probe_process(probe, None, description="", env={}, cache_scope=None)  # type: ignore[arg-type]
    assert process.argv == (REQUEST_FILE, RESULT_FILE)
