"""The registry probe: what each image reference serves now, by `HEAD`, in one process.

`python -m docker_mirror.probe REQUEST.json RESULT.json` (see `protocol` for both files). It
replaces the one `skopeo inspect --raw` (a Go start-up, a `/v2/` ping and a manifest `GET`) per
reference that copy mode ran: one process per generator asks every registry concurrently, over
reused connections, with one token per registry and scope, and reads each digest from the
`Docker-Content-Digest` of a `HEAD`, which Docker Hub does not count as a pull. It `GET`s a
manifest only when the caller needs its body or the registry sends no digest header.

It runs in its own interpreter (CPython 3.9 to 3.14), from a PEX Pants builds from
`requirements.txt`: it imports the standard library, h11 and its own modules, never the rest of
`docker_mirror` (which imports Pants).

The library: h11, python-hyper's sans-IO HTTP/1.1 (the parser under httpcore and httpx), a
pure-Python wheel with no dependencies. It frames requests and answers correctly (sized and
chunked bodies, HEAD answers, which connections may be reused); asyncio streams carry them.
httpx was the first choice and the probe ran on it (async pools, an `httpx.Auth` flow), but on
the 2-core CI machine it cost 1.6 ms of CPU per HEAD on one connection and 3.3 ms on eight
(httpcore's pool and anyio), against 0.5 ms for h11 on asyncio: with two HEADs per image and the
registries on the same cores, that alone was most of a no-op's per-image budget. The OCI SDK
`oras` is synchronous (requests), keeps one token per client rather than per scope, needs
`jsonschema` (whose `rpds-py` is a compiled wheel), and has no HEAD-only digest read or
credential helpers; `python-dxf` is synchronous too. docker-py's `docker.auth` reads Docker
configs and runs credential helpers, but with no time limit on a helper, its stderr passed
through, none of skopeo's auth files or namespaced keys, and requests and urllib3 imported
with it.

Written here by hand: the connection pool, TLS, proxies (`CONNECT`), redirects, time and size
limits (`transport`); the reference grammar (`reference`, the same as
`docker_mirror.image_reference`); the registry access rule and CA loading (`access`); the
`WWW-Authenticate` parser (`challenge`); the distribution spec's Bearer token flow and Basic
auth (`registry`); credential lookup in skopeo's and Docker's files and `docker-credential-*`
helpers (`credentials`); retries with backoff and `Retry-After` (`retry`); and scrubbing
secrets out of every message (`secrets`).
"""
