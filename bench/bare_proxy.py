"""The floor: a bare raw-ASGI proxy on uvicorn (uvloop, httptools, orjson), with a choice of HTTP client.

It does the least any gateway must: parse the JSON body, route ``vendor/model`` to a fixed upstream,
rewrite the model name, send with the upstream's own key and relay the answer (streams chunk by chunk,
unparsed). Any path is relayed to the same path under the vendor's base URL (chat, completions,
embeddings, ``/v1/responses``, ``/v1/messages``), so each native row of the bench is compared to this
floor relaying the same bytes. An upstream named with ``--anthropic`` gets its key in ``x-api-key``
with the client's ``anthropic-version`` (and ``anthropic-beta``), as Anthropic's API wants. No auth,
limits, accounting or metrics: its cost is what the gateway's extras are measured against.

    python -m bench.bare_proxy --client aiohttp|httpx|httpx-aiohttp|switchyard --port P --upstream fast=http://127.0.0.1:Q/v1 \
        --upstream anthropic=http://127.0.0.1:R/v1 --anthropic anthropic
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn

CLIENTS = ("aiohttp", "httpx", "httpx-aiohttp", "switchyard")  # switchyard: the gateway's own client
UPSTREAM_KEY = "sk-bench-upstream"
JSON_HEADERS = {"content-type": "application/json", "authorization": f"Bearer {UPSTREAM_KEY}"}
ANTHROPIC_HEADERS = {"content-type": "application/json", "x-api-key": UPSTREAM_KEY, "anthropic-version": "2023-06-01"}
FORWARDED = (b"anthropic-version", b"anthropic-beta")  # client headers an Anthropic upstream gets as they came


class Upstream:
    """One pooled client; ``post`` gives (status, content-type, body chunks)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.client: Any = None

    async def start(self) -> None:
        if self.kind == "switchyard":
            from gateway.wire.connection import Pool

            self.client = Pool()
            return
        import aiohttp
        import httpx

        if self.kind == "httpx":
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
            self.client = httpx.AsyncClient(limits=limits, timeout=60)
            return
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        if self.kind == "aiohttp":
            self.client = session
        else:
            from httpx_aiohttp import AiohttpTransport

            self.client = httpx.AsyncClient(transport=AiohttpTransport(client=session), timeout=60)

    async def post(
        self, url: str, body: bytes, headers: dict[str, str] = JSON_HEADERS
    ) -> tuple[int, bytes, AsyncIterator[bytes]]:
        if self.kind == "switchyard":
            r = await self.client.request("POST", url, headers, body, None, 60.0, 60.0)
            return r.status, (r.headers.get("content-type") or "").encode(), _switchyard_body(r)
        if self.kind == "aiohttp":
            resp = await self.client.post(url, data=body, headers=headers)
            return resp.status, resp.headers.get("content-type", "").encode(), _aiohttp_body(resp)
        req = self.client.build_request("POST", url, content=body, headers=headers)
        resp = await self.client.send(req, stream=True)
        return resp.status_code, resp.headers.get("content-type", "").encode(), _httpx_body(resp)

    async def close(self) -> None:
        await (self.client.close() if self.kind in ("aiohttp", "switchyard") else self.client.aclose())


async def _aiohttp_body(resp: Any) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_any():
            yield chunk
    finally:
        resp.release()


async def _switchyard_body(resp: Any) -> AsyncIterator[bytes]:
    try:
        while chunk := await resp.next():
            yield chunk
    finally:
        resp.close()


async def _httpx_body(resp: Any) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.aiter_raw():
            yield chunk
    finally:
        await resp.aclose()


class BareProxy:
    def __init__(self, client: str, upstreams: dict[str, str], anthropic: frozenset[str] = frozenset()) -> None:
        self.upstream = Upstream(client)
        self.routes = upstreams  # vendor -> base URL, fixed at start: a request never picks the URL
        self.anthropic = anthropic  # vendors speaking Anthropic's dialect (key in x-api-key)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await self.upstream.start()
                else:
                    await self.upstream.close()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        raw, more = b"", True
        while more:
            msg = await receive()
            raw += msg.get("body", b"")
            more = msg.get("more_body", False)
        body = orjson.loads(raw)
        vendor, _, body["model"] = body["model"].partition("/")
        url = self.routes[vendor] + scope["path"].removeprefix("/v1")
        headers_out = JSON_HEADERS
        if vendor in self.anthropic:
            headers_out = dict(ANTHROPIC_HEADERS)
            for k, v in scope["headers"]:
                if k in FORWARDED:
                    headers_out[k.decode()] = v.decode("latin-1")
        status, ctype, chunks = await self.upstream.post(url, orjson.dumps(body), headers_out)
        headers = [(b"content-type", ctype)]
        if body.get("stream") is not True:
            data = b"".join([c async for c in chunks])
            headers.append((b"content-length", str(len(data)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            return await send({"type": "http.response.body", "body": data})
        await send({"type": "http.response.start", "status": status, "headers": headers})
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="A bare raw-ASGI proxy: the floor the gateway is compared to.")
    ap.add_argument("--client", choices=CLIENTS, default="aiohttp")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", action="append", required=True, help="vendor=base URL (ending in /v1)")
    ap.add_argument("--anthropic", action="append", default=[], help="a vendor that speaks Anthropic's Messages API")
    args = ap.parse_args(argv)
    routes = dict(u.split("=", 1) for u in args.upstream)
    app = BareProxy(args.client, {k: v.rstrip("/") for k, v in routes.items()}, frozenset(args.anthropic))
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", access_log=False, log_level="warning"
    )


if __name__ == "__main__":
    main()
