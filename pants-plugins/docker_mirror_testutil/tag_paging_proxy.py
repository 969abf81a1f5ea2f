"""A registry that pages its tag list, for tests: a loopback HTTP proxy in front of a real
`docker-registry` 2.8, which answers `GET /v2/<name>/tags/list` whole and unsorted, ignoring `n`
and `last`. The proxy reads the registry's whole list (without credentials: for plain registries)
and answers as the distribution spec's "Listing Tags" pages it, and as distribution v3 does: the
tags in lexical order, after `last` when given, at most `n` of them and at most `page_size` (as
registries that cap `n` do), with `Link: </v2/<name>/tags/list?n=<n>&last=<tag>>; rel="next"`
while more remain. Everything else passes through as in `FaultProxy`, whose fault plans and
request log (`requests()`, those it answered itself included) it keeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import urllib.parse
import urllib.request
from typing import List, Optional, Sequence, Tuple

from docker_mirror_testutil.fault_proxy import FaultProxy, Plan, Respond
from docker_mirror_testutil.registries import Registry
from docker_mirror_testutil.relay import Connection, Cut, Head

_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list(?:\?(?P<query>.*))?$")


class TagPagingProxy(FaultProxy):
    """Start one with `TagPagingProxy.start(registry.address, passthrough())`; point clients at
    its `address`, or use `as_registry(registry)`; set `page_size` to page shorter."""

    def __init__(self, upstream: str, plan: Plan, strip_headers: Sequence[str] = ()) -> None:
        super().__init__(upstream, plan, strip_headers)
        self.page_size = 1000

    def as_registry(self, registry: Registry) -> Registry:
        """`registry` as clients see it through this proxy (its log and state stay its own)."""
        return dataclasses.replace(registry, address=self.address)

    def _all_tags(self, name: str) -> List[str]:
        url = f"http://{self.upstream}/v2/{name}/tags/list"
        with urllib.request.urlopen(url, timeout=30) as response:
            return sorted(json.load(response).get("tags") or [])

    async def _pass_on(
        self, head: Head, method: str, path: str, cut: Optional[Cut], connection: Connection
    ) -> Tuple[int, bool]:
        tags = _TAGS.match(path)
        if cut is None and tags and method == "GET":
            query = dict(urllib.parse.parse_qsl(tags["query"] or ""))
            everything = await asyncio.get_running_loop().run_in_executor(None, self._all_tags, tags["name"])
            n = min(int(query.get("n", self.page_size)), self.page_size)
            after = [tag for tag in everything if tag > query["last"]] if "last" in query else everything
            page = after[:n]
            headers = [("Content-Type", "application/json")]
            if len(after) > n:
                following = urllib.parse.urlencode({"n": n, "last": page[-1]})
                headers.append(("Link", f'</v2/{tags["name"]}/tags/list?{following}>; rel="next"'))
            answer = Respond(200, tuple(headers), json.dumps({"name": tags["name"], "tags": page}).encode())
            await self._respond(answer, method, connection.writer)
            return answer.status, True
        return await super()._pass_on(head, method, path, cut, connection)
