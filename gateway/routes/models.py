"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models a key may use.

Called with an ``anthropic-version`` header (Claude Code's gateway model discovery), the list
answers in Anthropic's shape. ``GET /v1/models/{id}`` adds the facts the gateway uses for the
model's first deployment (config over catalog): ``context_window``, ``max_output_tokens``,
``tokenizer`` and ``pricing`` (USD per million tokens), each absent when unknown.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import model_not_found
from gateway.pipeline.frame import CTX, RequestContext
from gateway.pipeline.routing import ModelFacts
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
        body = {"id": name, "object": "model", "created": self.started, "owned_by": owner}
        body.update(model_facts(route.deployments[0].facts))
        return json_response(ctx, 200, body)


def model_facts(facts: ModelFacts) -> dict[str, Any]:
    """The facts in use, each only when known; ``pricing_source`` says where list prices came from."""
    out: dict[str, Any] = {}
    if facts.context_window:
        out["context_window"] = facts.context_window
    if facts.max_output_tokens:
        out["max_output_tokens"] = facts.max_output_tokens
    if facts.tokenizer:
        out["tokenizer"] = facts.tokenizer
    if facts.pricing is not None:
        out["pricing"] = facts.pricing.to_json()
        row = facts.catalog
        if row is not None and row.pricing is not None and facts.pricing.base == row.pricing.base:
            out["pricing_source"] = {"url": row.source, "date": row.date}
        else:
            out["pricing_source"] = {"config": True}
    return out


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
