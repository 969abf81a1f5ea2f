"""Which registries `method="copy"` reaches over plain HTTP: loopback ones, and listed ones."""

from __future__ import annotations

import pytest
from docker_mirror.oci.registry_access import is_loopback_registry, split_registry_address, tls_verify


@pytest.mark.parametrize(
    "address",
    [
        "localhost",
        "localhost:5000",
        "LOCALHOST:5000",
        "127.0.0.1",
        "127.0.0.1:5501",
        "127.1.2.3:80",
        "[::1]",
        "[::1]:5000",
        "::1",
    ],
)
def test_loopback_registries_skip_tls_verification(address: str) -> None:
    assert is_loopback_registry(address)
    assert tls_verify(address) is False


@pytest.mark.parametrize(
    "address",
    [
        None,  # Docker Hub
        "docker.io",
        "ghcr.io",
        "registry.example.com:5000",
        "10.0.0.5:5000",
        "128.0.0.1:5000",
        "[::2]:5000",
        "localhost.example.com",
        "mylocalhost:5000",
        # Names and addresses that reach loopback, or look like it, but are not written as it.
        "localhost.evil.com",
        "127.0.0.1.nip.io:5000",
        "[::ffff:7f00:1]:5000",
        "[::ffff:127.0.0.1]",
        "127.1:5000",
        "0.0.0.0:5000",
    ],
)
def test_every_other_registry_is_tls_verified(address: str | None) -> None:
    assert tls_verify(address) is True


@pytest.mark.parametrize(
    "address, entry, insecure",
    [
        ("registry.lan:5000", "registry.lan", True),  # a host without port: every port
        ("registry.lan", "registry.lan", True),
        ("REGISTRY.lan:5000", "registry.lan:5000", True),
        ("registry.lan:5000", "registry.lan:5001", False),
        ("registry.lan", "registry.lan:5000", False),
        ("other.lan:5000", "registry.lan", False),
        ("10.1.2.3:5000", "10.0.0.0/8", True),
        ("11.1.2.3:5000", "10.0.0.0/8", False),
        ("[fd00::5]:5000", "fd00::/8", True),
        ("registry.lan:5000", "10.0.0.0/8", False),
        ("10.1.2.3", "not a network/8", False),
        ("registry.lan", "", False),
    ],
)
def test_insecure_registries_entries(address: str, entry: str, insecure: bool) -> None:
    assert tls_verify(address, [entry]) is (not insecure)


def test_split_registry_address() -> None:
    assert split_registry_address("Registry.Example.com:5000") == ("registry.example.com", "5000")
    assert split_registry_address("[::1]:5000") == ("::1", "5000")
    assert split_registry_address("[::1]") == ("::1", None)
    assert split_registry_address("fd00::1") == ("fd00::1", None)
    assert split_registry_address("ghcr.io") == ("ghcr.io", None)
