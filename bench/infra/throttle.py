"""A throttling proxy in front of the real registry, in its own process: ``python -m bench.infra.throttle URL``
prints ``port N`` and proxies everything to ``URL`` (tests/support/referrers_proxy.py's ``ReferrersProxy`` in
``passthrough`` mode, so the referrers API answers the registry's own 404) until a *storm* is started:

* ``POST /_bench/storm`` with ``{"seconds": S, "retryAfter": "R"}``: for the next S seconds every request gets
  ``429 TOOMANYREQUESTS`` with ``Retry-After: R`` and is not forwarded;
* ``GET /_bench/events?since=T``: ``[[time, status], …]`` of every registry request received after T
  (``time.monotonic()``: CLOCK_MONOTONIC, the same clock in every process of the machine).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

from aiohttp import web

from tests.support.referrers_proxy import ReferrersProxy, _error


class ThrottlingProxy(ReferrersProxy):
    thread_name = "throttling-proxy"

    def __init__(self, upstream_url: str) -> None:
        super().__init__(upstream_url, rewrite_token_realm=False)
        self.mode = "passthrough"
        self.storm_until = 0.0
        self.storm_retry_after = "1"
        self.events: list[tuple[float, int]] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_bench/"):
            return await self._control(request)
        now = time.monotonic()
        if now < self.storm_until:
            self.events.append((now, 429))
            headers = {"Retry-After": self.storm_retry_after}
            return _error(429, "TOOMANYREQUESTS", "throttled by the bench's storm", headers)
        response = await super()._handle(request)
        self.events.append((now, response.status))
        self.log.clear()  # the parent's per-request log is not needed here
        self.request_headers.clear()
        return response

    async def _control(self, request: web.Request) -> web.Response:
        if request.path == "/_bench/storm" and request.method == "POST":
            doc = await request.json()
            now = time.monotonic()
            self.storm_retry_after = str(doc["retryAfter"])
            self.storm_until = now + float(doc["seconds"])
            return web.json_response({"start": now, "end": self.storm_until})
        if request.path == "/_bench/events":
            since = float(request.query.get("since", "0"))
            return web.Response(
                text=json.dumps([e for e in self.events if e[0] >= since]), content_type="application/json"
            )
        return web.Response(status=404)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    proxy = ThrottlingProxy(args[0]).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"port {proxy.port}", flush=True)
    stop.wait()
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
