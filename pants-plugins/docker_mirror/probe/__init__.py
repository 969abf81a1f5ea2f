"""The registry probe: what each image reference serves now, by `HEAD`, in one process.

`python -m docker_mirror.probe REQUEST.json RESULT.json` (see `protocol` for both files). It
replaces the one `skopeo inspect --raw` (a Go start-up, a `/v2/` ping and a manifest `GET`) per
reference that copy mode ran: one process per generator asks every registry concurrently, over
reused connections, with one token per registry and scope, and reads each digest from the
`Docker-Content-Digest` of a `HEAD`, which Docker Hub does not count as a pull. It `GET`s a
manifest only when the caller needs its body or the registry sends no digest header. It also
finds and copies what refers to an image (signatures, attestations, SBOMs), checking a cosign
signature first when asked: see the README's "Referrers".

It runs in its own interpreter (CPython 3.9 to 3.14), from a PEX Pants builds from
`requirements.txt`: it imports the standard library, its requirements and its own modules, never
the rest of `docker_mirror` (which imports Pants).

The library: aiohttp, for its HTTP/1.1 (a C parser), connection pool per host, TLS with an
`ssl.SSLContext` per request, `CONNECT` tunnels, header and time limits, and streamed bodies.
Measured on the 2-core CI machine, 2,000 `HEAD`s to a local registry 8 at a time: about 0.3 ms
of CPU each for aiohttp alone, against 0.17 ms for bare h11 with no pool or TLS logic and
1.2 ms for httpx (whose pool and anyio cost 1.6 to 3.3 ms per `HEAD` when the probe ran on it).
The probe ran on h11 with an HTTP client written here; each line of it was a line where a proxy
or a hostile answer could find a bug a library with many users has fixed. The OCI SDK `oras` is
synchronous (requests), keeps one token per client rather than per scope, and has no HEAD-only
digest read or credential helpers; `python-dxf` is synchronous too. docker-py's `docker.auth`
reads Docker configs and runs credential helpers, but with no time limit on a helper, its stderr
passed through, none of skopeo's auth files or namespaced keys, and requests imported with it.

Written here by hand, because it is the registry's protocol or the probe's policy, not HTTP's:
redirects one hop at a time, because a registry's credentials, TLS settings and proxy must
follow the host each hop reaches, which aiohttp's own redirects do not do (`transport`); which
TLS settings and proxy a host gets, as Docker and skopeo decide them (`access`); the reference
grammar (`reference`, the same as `docker_mirror.oci.reference`); the `WWW-Authenticate` parser
(`challenge`; aiohttp's is private) and the distribution spec's Bearer token flow and Basic auth
(`auth`); the one authorized request path with its retries and time budget (`registry`);
what a manifest answer means (`manifests`); credential lookup in skopeo's and Docker's files and
`docker-credential-*` helpers (`credentials`); backoff and `Retry-After` (`retry`); and scrubbing
secrets out of every message (`secrets`). For referrers: the distribution API calls a copy makes
(`distribution`); the two schemes, listings and merges (`referrers`); which requests find and
copy them (`mirror_referrers`); and checking cosign signatures (`signatures`, with
`cryptography` for the ECDSA itself). What was looked at instead: `oras` (the Python SDK) can
copy a graph of manifests and blobs, but on threads, reading each blob whole into memory, and
knows nothing of cosign's tags; sigstore-python verifies Sigstore bundles against Sigstore's
trust roots and identities, not cosign's key-signed `.sig` payloads, where the gate verifies
both layouts with the repository's keys, offline.
"""
