"""Operations routes: liveness, readiness, Prometheus metrics and ``POST /admin/reload``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import lifecycle
from gateway.config import ConfigError, load_config, summary
from gateway.errors import GatewayError, forbidden
from gateway.pipeline.frame import CTX, RequestContext
from gateway.routes.common import json_response

# The paths anyone may call without a key (probes, the Prometheus scrape, the console's page and
# assets, which hold no data: the page's own calls carry the admin key).
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", "/ui"})
PUBLIC_PREFIXES = ("/ui/",)


def is_public(path: str) -> bool:
    return path in PUBLIC or path.startswith(PUBLIC_PREFIXES)


class AdminRoutes:
    """``health`` answers (ready, draining, usage-writer status); ``reload`` swaps the config."""

    def __init__(self, gw: Any, reload: Callable[[], Awaitable[list[str]]]) -> None:
        self.gw = gw  # the composition root: ``ready``, ``draining``, ``writer``, ``metrics``, ``config``
        self.reload = reload

    def routes(self) -> list[Route]:
        routes = [
            Route("/healthz", self.healthz, methods=["GET", "HEAD"]),
            Route("/readyz", self.readyz, methods=["GET", "HEAD"]),
            Route("/admin/reload", self.admin_reload, methods=["POST"]),
        ]
        if self.gw.metrics is not None:
            routes.append(Route("/metrics", self.metrics_text, methods=["GET"]))
        return routes

    async def healthz(self, request: Request) -> Response:
        return json_response(None, 200, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        # An unreachable Redis does not make the gateway unready: requests still succeed and
        # records wait in the buffer (drops show in metrics); only a dead writer does.
        gw = self.gw
        writer = gw.writer
        usage = writer.status() if writer is not None else {"kind": "memory"}
        if not gw.ready or gw.draining or (writer is not None and not writer.running):
            return json_response(None, 503, {"status": "not ready", "usage": usage})
        return json_response(None, 200, {"status": "ready", "usage": usage})

    async def admin_reload(self, request: Request) -> Response:
        ctx: RequestContext = request.scope[CTX]
        if not ctx.who.admin:
            raise forbidden("Reloading the config needs an admin key.")
        path = os.environ.get("SWITCHYARD_CONFIG")
        if path and lifecycle.supervised():
            # Several workers: check the file here, then let uvicorn's supervisor roll them all.
            try:
                await asyncio.to_thread(load_config, path)
            except ConfigError as e:
                raise GatewayError(400, "; ".join(e.problems), code="invalid_config") from None
            lifecycle.request_supervisor_reload()
            return json_response(ctx, 202, {"status": "reloading"})
        problems = await self.reload()
        if problems:
            raise GatewayError(400, "; ".join(problems), code="invalid_config")
        return json_response(ctx, 200, {"status": "reloaded", "summary": summary(self.gw.config)})

    async def metrics_text(self, request: Request) -> Response:
        # Unauthenticated, like most exporters: keep the port off the public internet.
        body, content_type = self.gw.metrics.render()
        return Response(body, media_type=content_type)
