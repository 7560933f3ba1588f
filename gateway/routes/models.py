"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models a key may use.

Called with an ``anthropic-version`` header (Claude Code's gateway model discovery), the list
answers in Anthropic's shape.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import model_not_found
from gateway.pipeline.frame import CTX, RequestContext
from gateway.routes.common import json_response


class ModelsRoutes:
    def __init__(self, started: float) -> None:
        self.started = int(started)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.get_model, methods=["GET"]),
        ]

    def models_for(self, ctx: RequestContext) -> list[dict[str, Any]]:
        p, cfg = ctx.who, ctx.state.config
        data = []
        for m in cfg.models:
            if p.allows(m.name):
                owner = m.name.split("/", 1)[0] if "/" in m.name else "switchyard"
                data.append({"id": m.name, "object": "model", "created": self.started, "owned_by": owner})
        for vendor in cfg.providers:
            if p.may_reach_vendor(vendor):
                data.append({"id": f"{vendor}/*", "object": "model", "created": self.started, "owned_by": vendor})
        return data

    async def list_models(self, request: Request) -> Response:
        ctx: RequestContext = request.scope[CTX]
        data = self.models_for(ctx)
        if ctx.anthropic_version is not None:
            return json_response(ctx, 200, anthropic_list(data, self.started))
        return json_response(ctx, 200, {"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        ctx: RequestContext = request.scope[CTX]
        name = request.path_params["model"]
        route = ctx.state.router.resolve(name)
        if not ctx.who.allows(name):
            raise model_not_found(name)
        owner = route.deployments[0].provider if "/" in name else "switchyard"
        return json_response(ctx, 200, {"id": name, "object": "model", "created": self.started, "owned_by": owner})


def anthropic_list(data: list[dict[str, Any]], created: int) -> dict[str, Any]:
    """Anthropic's model list shape; wildcard entries (``vendor/*``) name no model and are left out."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
    models = [
        {"type": "model", "id": m["id"], "display_name": m["id"], "created_at": stamp}
        for m in data
        if not m["id"].endswith("/*")
    ]
    return {
        "data": models,
        "has_more": False,
        "first_id": models[0]["id"] if models else None,
        "last_id": models[-1]["id"] if models else None,
    }
