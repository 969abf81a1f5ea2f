"""The registry probe: what each image reference serves now, by `HEAD`, in one process.

`python -m docker_mirror.probe REQUEST.json RESULT.json` (see `protocol` for both files). It
replaces the one `skopeo inspect --raw` (a Go start-up, a `/v2/` ping and a manifest `GET`) per
reference that copy mode ran: one process per generator asks every registry concurrently, over
reused connections, with one token per registry and scope, and reads each digest from the
`Docker-Content-Digest` of a `HEAD`, which Docker Hub does not count as a pull. It `GET`s a
manifest only when the caller needs its body or the registry sends no digest header.

It runs in its own interpreter (CPython 3.9 to 3.14), from a PEX Pants builds from
`requirements.txt`: it imports the standard library, httpx, and its own modules, never the rest
of `docker_mirror` (which imports Pants).

Why httpx: asyncio with per-host connection pools and limits, HTTP/1.1 keep-alive, timeouts per
phase, proxies, a pluggable auth flow (`httpx.Auth`) that sees each 401 and may re-send, and
pure-Python wheels from 3.8 up. The OCI SDK `oras` was the other candidate: it is synchronous
(requests), keeps one token per client rather than per scope, needs `jsonschema` (whose
`rpds-py` is a compiled wheel), and has no HEAD-only digest read or credential helpers.
`python-dxf` is synchronous too. docker-py's `docker.auth` reads Docker configs and runs
credential helpers, but with no time limit on a helper, its stderr passed through, none of
skopeo's auth files or namespaced keys, and requests/urllib3 imported with it.

Written here by hand: the reference grammar (`reference`, the same as
`docker_mirror.image_reference`), the registry access rule and CA loading (`access`), the
`WWW-Authenticate` parser (`challenge`), the Bearer token flow of the distribution spec and
Basic auth (`registry.RegistryAuth`), credential lookup in skopeo's and Docker's files and
`docker-credential-*` helpers (`credentials`), retries with backoff and `Retry-After`
(`retry`), proxy selection and response size caps (`transport`), and scrubbing secrets out of
every message (`secrets`).
"""
