"""Builds the ASGI app from a Config.

The three generation routes are dispatched by an exact-path dict straight into the raw-ASGI
pipeline (the hot path: no framework objects per request); everything else (models, usage,
health, metrics, files) goes to a Starlette router, where convenience matters more than
microseconds. Lifespan starts the HTTP client and the usage writer and flushes on exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import lifecycle
from gateway.accounting.accountant import Accountant
from gateway.accounting.metrics import Metrics
from gateway.accounting.usage.redis_store import RedisStore
from gateway.accounting.usage.store import MemoryStore, usage_body
from gateway.accounting.usage.writer import UsageWriter
from gateway.config import Config, ConfigError, default_config, load_config, summary
from gateway.errors import GatewayError, not_found_route
from gateway.pipeline.balancer import Balancer
from gateway.pipeline.generation import Pipeline
from gateway.pipeline.limits import Limiter
from gateway.pipeline.state import State, build_state
from gateway.routes import files
from gateway.wire.asgi import Receive, Scope, Send, clean_request_id, dumps, request_id_of, send_error
from gateway.wire.types import CHAT, COMPLETIONS, EMBEDDINGS
from gateway.wire.upstream import UpstreamClient
from simulators.transport import InProcessTransport

log = logging.getLogger("switchyard")

HOT_ROUTES = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": COMPLETIONS,
    "/v4/beta/completions": COMPLETIONS,
    "/v1/embeddings": EMBEDDINGS,
}
# The routes a metrics ``endpoint`` label may name; any other path is "other".
METRIC_ENDPOINTS = (*HOT_ROUTES, "/v1/files", "/v1/fine_tuning/jobs", "/v1/batches")
USAGE_FLUSH_TIMEOUT = 5.0  # at most this many seconds (and shutdown_grace) of shutdown go to writing usage
MEMORY_LOG_MAX = 10_000  # records the in-process usage log keeps


def _json(status: int, obj: Any, request_id: str | None = None, headers: dict[str, str] | None = None) -> Response:
    h = dict(headers or {})
    if request_id:
        h["x-request-id"] = request_id
    return Response(dumps(obj), status_code=status, media_type="application/json", headers=h)


def _err(e: GatewayError, request_id: str) -> Response:
    return _json(e.status, e.body(), request_id, e.headers)


class Gateway:
    """The ASGI callable."""

    def __init__(self, cfg: Config) -> None:
        self.config = cfg
        self.upstream = UpstreamClient()
        self.upstream.mount("mock://", InProcessTransport())  # the built-in mock provider, no socket
        self.metrics = Metrics(cfg.metrics, METRIC_ENDPOINTS) if cfg.metrics.enabled else None
        self.store: MemoryStore | RedisStore
        self.writer: UsageWriter | None = None
        if cfg.usage.redis_url:
            self.store = RedisStore(cfg.usage)
            self.writer = UsageWriter(
                self.store,
                batch_size=cfg.usage.batch_size,
                flush_interval=cfg.usage.flush_interval,
                buffer_size=cfg.usage.buffer_size,
                metrics=self.metrics,
            )
        else:
            # The in-process log is only for inspection; a million records would be ~200 MB per worker.
            self.store = MemoryStore(min(cfg.usage.log_max_len, MEMORY_LOG_MAX))
        self.accountant = Accountant(self.writer or self.store, self.metrics, cfg.server.access_log)
        m = self.metrics
        self.balancer = Balancer(
            on_state=(lambda d, st: m.circuit_state(d.provider, d.target.upstream_model, st)) if m else None
        )
        self.limiter = Limiter(
            cfg.usage.redis_url,
            cfg.usage.prefix,
            cfg.server.limits_when_redis_down,
            on_failure=m.limits_failure if m else None,
        )
        self.state: State = build_state(cfg, self.upstream, self.accountant, self.balancer, self.limiter)
        self.draining = False  # SIGTERM arrived: /readyz says 503 while in-flight work finishes
        self.pipeline = Pipeline(self)
        self.started = time.time()
        self.ready = False
        self.router = Starlette(
            routes=[
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/v1/models/{model:path}", self.get_model, methods=["GET"]),
                Route("/v1/usage", self.get_usage, methods=["GET"]),
                Route("/healthz", self.healthz, methods=["GET", "HEAD"]),
                Route("/readyz", self.readyz, methods=["GET", "HEAD"]),
                Route("/admin/reload", self.admin_reload, methods=["POST"]),
                *files.routes(self),
                *([Route("/metrics", self.metrics_text, methods=["GET"])] if self.metrics else []),
            ],
            exception_handlers={404: self._not_found, 405: self._not_allowed, Exception: self._failed},
        )

    # -- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = HOT_ROUTES.get(scope["path"])
            if endpoint is not None:
                if scope["method"] == "POST":
                    return await self.pipeline.handle(scope, receive, send, endpoint)
                err = GatewayError(
                    405,
                    f"Method {scope['method']} not allowed; use POST.",
                    code="method_not_allowed",
                    headers={"allow": "POST"},
                )
                return await send_error(send, err, clean_request_id(None))
            try:
                return await self.router(scope, receive, send)
            except Exception as e:
                # Starlette has already answered with _failed; keep the traceback out of the log.
                log.error("unexpected %s on %s: %.200s", type(e).__name__, scope["path"], e)
                return
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        return await self.router(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:  # report, don't crash uvicorn with a traceback
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        await self.upstream.start()
        await self.limiter.start()
        lifecycle.install(self, asyncio.get_running_loop(), self.config.server.drain_delay, self.reload)
        _freeze_startup_objects()
        if self.metrics is not None:
            self.metrics.reap_dead_workers()
        if self.writer is not None:
            self.writer.start()
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False
        await self.upstream.close()
        await self.limiter.close()
        if self.writer is not None:
            await self.writer.close(min(self.config.server.shutdown_grace, USAGE_FLUSH_TIMEOUT))
        await self.store.close()
        if self.metrics is not None:
            self.metrics.close()

    # -- routes ----------------------------------------------------------------------------
    def _principal(self, request: Request) -> Any:
        h = request.headers
        return self.state.keys.authenticate(
            h.get("authorization", "").encode("latin-1") or None, h.get("x-api-key", "").encode("latin-1") or None
        )

    async def list_models(self, request: Request) -> Response:
        rid = request_id_of(request)
        try:
            p = self._principal(request)
        except GatewayError as e:
            return _err(e, rid)
        return _json(200, {"object": "list", "data": self._models_for(p)}, rid)

    def _models_for(self, p: Any) -> list[dict[str, Any]]:
        created = int(self.started)
        data = []
        for m in self.state.config.models:
            if p.allows(m.name):
                owner = m.name.split("/", 1)[0] if "/" in m.name else "switchyard"
                data.append({"id": m.name, "object": "model", "created": created, "owned_by": owner})
        for vendor in self.state.config.providers:
            if p.may_reach_vendor(vendor):
                data.append({"id": f"{vendor}/*", "object": "model", "created": created, "owned_by": vendor})
        return data

    async def get_model(self, request: Request) -> Response:
        rid = request_id_of(request)
        try:
            p = self._principal(request)
            name = request.path_params["model"]
            route = self.state.router.resolve(name)
            if not p.allows(name):
                raise GatewayError(
                    404,
                    f"The model '{name}' does not exist or you do not have access to it.",
                    param="model",
                    code="model_not_found",
                )
        except GatewayError as e:
            return _err(e, rid)
        owner = route.deployments[0].provider if "/" in name else "switchyard"
        return _json(200, {"id": name, "object": "model", "created": int(self.started), "owned_by": owner}, rid)

    async def get_usage(self, request: Request) -> Response:
        rid = request_id_of(request)
        try:
            p = self._principal(request)
            key = request.query_params.get("key") or p.name
            if key != p.name and not p.admin:
                raise GatewayError(
                    403,
                    "Reading another key's usage needs an admin key.",
                    code="permission_error",
                    type="permission_error",
                )
            date = request.query_params.get("date") or time.strftime("%Y-%m-%d", time.gmtime())
            try:
                day = time.strftime("%Y%m%d", time.strptime(date, "%Y-%m-%d"))
            except ValueError:
                raise GatewayError(
                    400, "Invalid 'date': expected YYYY-MM-DD.", param="date", code="invalid_value"
                ) from None
            totals, models = await self.store.usage(key, day)
        except GatewayError as e:
            return _err(e, rid)
        return _json(200, usage_body(key, date, totals, models), rid)

    async def healthz(self, request: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        # An unreachable Redis does not make the gateway unready: requests still succeed and
        # records wait in the buffer (drops show in metrics); only a dead writer does.
        usage = self.writer.status() if self.writer is not None else {"kind": "memory"}
        if not self.ready or self.draining or (self.writer is not None and not self.writer.running):
            return _json(503, {"status": "not ready", "usage": usage})
        return _json(200, {"status": "ready", "usage": usage})

    async def reload(self) -> list[str]:
        """Validate and build the config file anew, then swap it in; problems leave the old one."""
        path = os.environ.get("SWITCHYARD_CONFIG")
        if not path:
            return ["no config file: the built-in default has nothing to reload"]
        try:
            cfg = await asyncio.to_thread(load_config, path)
            state = build_state(cfg, self.upstream, self.accountant, self.balancer, self.limiter)
        except ConfigError as e:
            for p in e.problems:
                log.error("reload refused, keeping the running config: %s", p)
            return e.problems
        except Exception as e:  # an adapter that cannot be built: same outcome, never a crash
            log.error("reload refused, keeping the running config: %s", e)
            return [str(e)]
        self.state, self.config = state, cfg  # one assignment: requests in flight keep their State
        gc.unfreeze()  # let the old State be collected once its last request is done
        _freeze_startup_objects()
        log.info("config reloaded from %s", path)
        return []

    async def admin_reload(self, request: Request) -> Response:
        rid = request_id_of(request)
        try:
            p = self._principal(request)
            if not p.admin:
                raise GatewayError(403, "Reloading the config needs an admin key.", code="permission_error")
            path = os.environ.get("SWITCHYARD_CONFIG")
            if path and lifecycle.supervised():
                # Several workers: check the file here, then let uvicorn's supervisor roll them all.
                try:
                    await asyncio.to_thread(load_config, path)
                except ConfigError as e:
                    raise GatewayError(400, "; ".join(e.problems), code="invalid_config") from None
                lifecycle.request_supervisor_reload()
                return _json(202, {"status": "reloading"}, rid)
            problems = await self.reload()
            if problems:
                raise GatewayError(400, "; ".join(problems), code="invalid_config")
        except GatewayError as e:
            return _err(e, rid)
        return _json(200, {"status": "reloaded", "summary": summary(self.config)}, rid)

    async def metrics_text(self, request: Request) -> Response:
        # Unauthenticated, like most exporters: keep the port off the public internet.
        assert self.metrics is not None
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)

    async def _failed(self, request: Request, exc: Exception) -> Response:
        rid = request_id_of(request)
        return _err(GatewayError(500, "The gateway failed to handle this request.", code="internal_error"), rid)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        rid = request_id_of(request)
        return _err(not_found_route(request.method, request.url.path), rid)

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        rid = request_id_of(request)
        return _err(
            GatewayError(
                405, f"Method {request.method} not allowed for {request.url.path}.", code="method_not_allowed"
            ),
            rid,
        )


def _freeze_startup_objects() -> None:
    """Move everything alive now (modules, config, clients) out of the collector's reach: full
    collections then walk only what requests create, which measurably cuts CPU per request."""
    gc.collect()
    gc.freeze()


def load_or_default(path: str | None) -> tuple[Config, bool]:
    """The config at ``path`` (or $SWITCHYARD_CONFIG), else the embedded default."""
    path = path or os.environ.get("SWITCHYARD_CONFIG") or None
    if path:
        return load_config(path), False
    return default_config(), True


def create_app(cfg: Config | None = None) -> Gateway:
    """App factory (uvicorn ``--factory``): reads $SWITCHYARD_CONFIG when no config is given."""
    if cfg is None:
        cfg, is_default = load_or_default(None)
        if is_default:
            log.warning(
                "no config given: serving the built-in mock provider with the demo key "
                "'sk-switchyard-demo' and an in-process usage store (not for production)"
            )
    return Gateway(cfg)
