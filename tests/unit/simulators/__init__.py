"""The simulated upstreams (``simulators/``) driven in process, checked with the providers' official SDKs."""

from __future__ import annotations

import asyncio
import importlib.util
from types import ModuleType
from typing import Any

import httpx

BASE = "http://mock"
# The HTTP library the installed SDKs are built on: recent openai and anthropic SDKs use httpx2 (httpx's
# successor, same API) and anthropic refuses httpx objects; older ones use httpx.
SDK_HTTP: ModuleType = importlib.import_module("httpx2") if importlib.util.find_spec("httpx2") else httpx


def http_client(app: Any, lib: ModuleType = SDK_HTTP) -> Any:
    """A synchronous ``lib.Client`` over an ASGI app, no socket (``lib.ASGITransport`` is async only, so
    each request runs the app in its own event loop): for the SDKs' sync clients."""

    class SyncASGITransport(lib.BaseTransport):  # type: ignore[name-defined,misc]
        def handle_request(self, request: Any) -> Any:
            async def call() -> Any:
                async with lib.AsyncClient(transport=lib.ASGITransport(app=app), base_url=BASE) as client:
                    req = lib.Request(request.method, request.url, headers=request.headers, content=request.read())
                    r = await client.send(req)
                    return lib.Response(r.status_code, headers=r.headers, content=r.content)

            return asyncio.run(call())

    return lib.Client(transport=SyncASGITransport(), base_url=BASE)
