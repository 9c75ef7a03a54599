"""A no-op external-data provider: aiohttp with Referee's TLS (TLS 1.3 only, the same serving certificate, client
certificates required and verified against the same CA) that answers each ProviderRequest with bytes recorded from
Referee for the same keys. It parses the request (as any provider must) and does nothing else, so it is the floor
that Python, aiohttp and TLS set; the bench's ratios compare Referee with it in the same run.

Run as ``python -m bench.infra.noop --port P --cert F --key F --client-ca F --responses FILE`` (``FILE``: JSON list
of ``{"keys": [...], "response": "<ProviderResponse text>"}``); it prints ``ready`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

_UNKNOWN = (
    b'{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderResponse","response":{"idempotent":true,'
    b'"items":[],"systemError":"no-op provider: no recorded response for these keys"}}'
)


def server_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """The context ``provider/server/tls.py`` builds for ``clientAuth: require``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=client_ca)
    return ctx


def build_app(responses: dict[tuple[str, ...], bytes]) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        body = responses.get(tuple(doc["request"]["keys"]), _UNKNOWN)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/verify", answer)
    app.router.add_post("/mutate", answer)
    return app


async def serve(args: argparse.Namespace) -> None:
    recorded = json.loads(Path(args.responses).read_text())
    responses = {tuple(r["keys"]): r["response"].encode() for r in recorded}
    runner = web.AppRunner(build_app(responses), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, ssl_context=server_context(args.cert, args.key, args.client_ca))
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.infra.noop")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-ca", required=True)
    p.add_argument("--responses", required=True)
    asyncio.run(serve(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
