"""The `[docker-mirror]` options: how `method="copy"` reaches registries."""

from __future__ import annotations

from pants.core.util_rules.search_paths import ExecutableSearchPathsOptionMixin
from pants.option.option_types import IntOption, ShellStrListOption, StrListOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import softwrap

# Where Docker and the containers tools (`skopeo login`, `podman login`) keep credentials, which
# the registry probe reads; always passed through to the processes that reach registries.
CREDENTIAL_ENV_VARS = ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "HOME")


class DockerMirrorSubsystem(Subsystem):
    options_scope = "docker-mirror"
    help = softwrap(
        """
        Options for `docker_mirror_images(method="copy")`, which mirrors images registry to
        registry, keeping every platform and every digest, with no Docker engine and no other
        tool: Pants runs its own registry client, the registry probe.

        Destinations come from `[docker].registries` as for `docker_image`. Credentials come
        from the Docker config (`$DOCKER_CONFIG/config.json`, `~/.docker/config.json`) or the
        containers auth file (`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`),
        as `docker login`, `podman login` and `skopeo login` write them; they are never passed
        on the command line nor printed.
        """
    )

    class EnvironmentAware(ExecutableSearchPathsOptionMixin, Subsystem.EnvironmentAware):
        executable_search_paths_help = softwrap(
            """
            The `PATH` of the registry probe, the process that reads and copies images: where
            it finds the Docker credential helpers (`docker-credential-<name>`) that a Docker
            config's `credsStore` or `credHelpers` names.
            """
        )

        _env_vars = ShellStrListOption(
            default=[
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "NO_PROXY",
                "http_proxy",
                "https_proxy",
                "no_proxy",
            ],
            help=softwrap(
                f"""
                Environment variables to set for the registry probe, besides the ones it finds
                credentials with, which are always passed on when set
                ({", ".join(f"`{name}`" for name in CREDENTIAL_ENV_VARS)}).

                Entries are either `NAME=value` to set a value, or just `NAME` to copy the value
                from Pants's own environment. By default, the proxy settings.
                """
            ),
            advanced=True,
        )

        @property
        def env_vars(self) -> tuple[str, ...]:
            return tuple(sorted({*CREDENTIAL_ENV_VARS, *self._env_vars}))

    insecure_registries = StrListOption(
        default=[],
        help=softwrap(
            """
            Registries to reach without verifying TLS, falling back to plain HTTP: entries are
            `host` (any port), `host:port`, or a CIDR range such as `10.0.0.0/8`.

            Registries on loopback (`localhost`, `127.0.0.0/8` and `[::1]`, with any port) need
            no entry: like Docker, `method="copy"` always reaches them this way. Every other
            registry, source or destination, is reached over verified TLS, with the system's
            certificates and the per-registry CA directories Docker and skopeo read: for a
            private CA, put its certificate in `/etc/docker/certs.d/<host:port>/ca.crt` (or
            `/etc/containers/certs.d/<host:port>/ca.crt`), which the Docker engine reads too.
            """
        ),
        advanced=False,
    )

    retries = IntOption(
        default=3,
        help=softwrap(
            """
            How many times to retry a transient failure of a registry (a 429 answer, a 5xx
            answer, a dropped connection), with exponential backoff, when reading registries and
            when copying, request by request. A `Retry-After` answer is honoured up to
            `max_retry_wait`; a rate limit that outlasts the retries fails the image with a
            message naming the registry and the limit.
            """
        ),
        advanced=True,
    )

    max_retry_wait = IntOption(
        default=60,
        help=softwrap(
            """
            The longest `Retry-After` wait, in seconds, honoured before a retry. A registry that
            asks to wait longer (e.g. Docker Hub's pull limit, which lasts hours) fails the
            image at once, with the wait it asked for, rather than stalling the run.
            """
        ),
        advanced=True,
    )

    registry_concurrency = IntOption(
        default=8,
        help=softwrap(
            """
            How many requests to one registry the registry probe sends at a time. Reads wait on
            the network, so several at once hide latency; few enough to stay polite to a
            rate-limited registry.
            """
        ),
        advanced=True,
    )

    registry_timeout = IntOption(
        default=30,
        help="Seconds to wait for a registry's answer to one request, before it counts as failed.",
        advanced=True,
    )

    copy_timeout = IntOption(
        default=3600,
        help=softwrap(
            """
            The longest the copy of an image to one destination repository may take, in
            seconds, with what refers to it and its tags, so that a registry that stalls in the
            middle of a transfer fails that image instead of hanging the run. 0: no limit.
            """
        ),
        advanced=True,
    )

    allowed_source_registries = StrListOption(
        default=[],
        help=softwrap(
            """
            When set, the only registries spec files may name as sources: hosts or glob
            patterns, e.g. `["docker.io", "*.gcr.io", "registry.k8s.io"]`. A line without a
            registry host (`python:3.12`) names Docker Hub, `docker.io`. An entry without a port
            matches the host on any port; `host:port` only that port. Matching ignores case.
            Any other registry is refused when the targets are generated, with
            `path:line: registry not allowed: ...`, for both methods, and nothing of that
            generator is mirrored. Empty (the default): any registry.
            """
        ),
        advanced=False,
    )

    from_archive = StrOption(
        default=None,
        help=softwrap(
            """
            An archive that a `docker_mirror_archive` target packaged (a tar of an OCI image
            layout), to read every source image from instead of its registry: for the
            disconnected side of an air gap. `pants publish --docker-mirror-from-archive=<tar>`
            then mirrors into the destinations as usual, keeping every digest, signature and
            SBOM, and sends no request to any source registry. A path relative to the build
            root, or absolute.

            An image the archive lacks fails alone, naming the archive and the reference; a
            truncated or altered archive fails its images, and nothing is written under a
            digest that was not checked. Only `method="copy"` images read it.
            """
        ),
        advanced=False,
    )

    signature_identity = StrOption(
        default="key",
        help=softwrap(
            """
            What a signature must say, besides the digest, for `require_signature` to admit an
            image, where a target's `signature_identity` does not say: `key` (nothing more: the
            key and the digest, as `cosign verify --key`) or `source_repository` (also the
            repository it was signed for, `critical.identity.docker-reference`, must be the
            source's). See `pants help docker_mirror_images`.
            """
        ),
        advanced=True,
    )

    provenance_key = StrOption(
        default=None,
        help=softwrap(
            """
            An ECDSA P-256 private key (PEM, PKCS#8 or SEC1, unencrypted; `openssl ecparam -genkey
            -name prime256v1 | openssl pkcs8 -topk8 -nocrypt`), a path relative to the build root
            or absolute. With it, every image copy mode mirrors gets the mirror's own attestation
            at the destination: a SLSA provenance v1 statement about the destination's digest
            (the source reference as written, its digest, the destination, the times, and which
            key `require_signature` verified it with), in a DSSE envelope signed with this key,
            appended to the image's cosign `.att` tag as `cosign attest` appends. An image
            already mirrored without one gets it on the next run; a no-op writes none again (one
            `GET` of the `.att` manifest per image and destination repository tells). Needs
            `referrers` (on by default). Verify with `cosign verify-attestation --key
            <public key> --type slsaprovenance1 --insecure-ignore-tlog=true <image>@<digest>`.

            The probe reads the file itself: the key never goes on a command line, into Pants'
            store or into a log. A key readable by others than its owner is warned about.
            """
        ),
        advanced=True,
    )
