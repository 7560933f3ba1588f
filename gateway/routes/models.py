"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models a key may use.

Called with an ``anthropic-version`` header (Claude Code's gateway model discovery, Anthropic's
SDK), both answer in Anthropic's shape (``ModelInfo``; the list paged by ``limit``, ``after_id``
and ``before_id``). ``GET /v1/models/{id}`` adds the facts the gateway uses for the model's first
deployment (config over catalog): ``context_window``, ``max_output_tokens``, ``tokenizer`` and
``pricing`` (USD per million tokens), each absent when unknown; in Anthropic's shape the window and
the output cap are ``max_input_tokens`` and ``max_tokens``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
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
            return json_response(ctx, 200, anthropic_list(data, self.started, request.query_params))
        return json_response(ctx, 200, {"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        ctx: RequestContext = request.scope[CTX]
        name = request.path_params["model"]
        route = ctx.state.router.resolve(name)
        if not ctx.who.allows(name):
            raise model_not_found(name)
        facts = route.deployments[0].facts
        if ctx.anthropic_version is not None:
            info = anthropic_model(name, self.started)
            info["max_input_tokens"] = facts.context_window
            info["max_tokens"] = facts.max_output_tokens
            return json_response(ctx, 200, info)
        owner = route.deployments[0].provider if "/" in name else "switchyard"
        body = {"id": name, "object": "model", "created": self.started, "owned_by": owner}
        body.update(model_facts(facts))
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


def anthropic_model(name: str, created: int) -> dict[str, Any]:
    """One model in Anthropic's ``ModelInfo`` shape (the gateway's start as its date)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
    return {"type": "model", "id": name, "display_name": name, "created_at": stamp, "lifecycle": "active"}


ANTHROPIC_PAGE = 20  # Anthropic's default ``limit`` (1 to 1000)


def anthropic_list(data: list[dict[str, Any]], created: int, query: Mapping[str, str]) -> dict[str, Any]:
    """Anthropic's model list shape, one page of it; wildcard entries (``vendor/*``) name no model
    and are left out. A ``limit`` out of range or not a number is taken as the nearest valid one or
    the default; an ``after_id``/``before_id`` the list does not hold gives an empty page."""
    models = [anthropic_model(m["id"], created) for m in data if not m["id"].endswith("/*")]
    try:
        limit = min(max(int(query.get("limit", ANTHROPIC_PAGE)), 1), 1000)
    except ValueError:
        limit = ANTHROPIC_PAGE
    ids = [m["id"] for m in models]
    after, before = query.get("after_id"), query.get("before_id")
    if before is not None:
        end = ids.index(before) if before in ids else 0
        page, more = models[max(end - limit, 0) : end], end - limit > 0
    else:
        start = (ids.index(after) + 1 if after in ids else len(ids)) if after is not None else 0
        page, more = models[start : start + limit], start + limit < len(models)
    return {
        "data": page,
        "has_more": more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }
