"""The upstream HTTP client (gateway/wire/upstream.py) against a real server on loopback."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from gateway.wire.types import UpstreamRequest
from gateway.wire.upstream import UpstreamClient


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _seen_user_agents(headers: dict[str, str]) -> list[str]:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.extend(request.headers.getall("user-agent", []))
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_post("/v1/x", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = UpstreamClient()
    await client.start()
    try:
        req = UpstreamRequest("POST", f"http://127.0.0.1:{port}/v1/x", headers, b"{}")
        resp = await client.send(req, "p", 5.0, 5.0)
        assert resp.status == 200 and await resp.read() == b"{}"
    finally:
        await client.close()
        await runner.cleanup()
    return seen


def test_the_gateway_names_itself_and_a_configured_user_agent_wins() -> None:
    assert asyncio.run(_seen_user_agents({"content-type": "application/json"})) == ["switchyard"]
    assert asyncio.run(_seen_user_agents({"User-Agent": "acme/1"})) == ["acme/1"]
