"""``GET|DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``.

An id is the gateway's own (``resp_sy…``, owned by the key that created it; another key's is 404).
A natively served response is fetched from its provider with the upstream id; a translated one is
read from the response store.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.apis.responses import owned_record
from gateway.errors import GatewayError
from gateway.pipeline.frame import CTX, RequestContext
from gateway.routes.common import json_response
from providers.base import load_json

ROUTE = "/v1/responses"
_LIST_PARAMS = ("after", "before", "limit", "order", "include")


class ResponsesRoutes:
    def routes(self) -> list[Route]:
        return [
            Route(ROUTE + "/{id}", self.get, methods=["GET"]),
            Route(ROUTE + "/{id}", self.delete, methods=["DELETE"]),
            Route(ROUTE + "/{id}/input_items", self.input_items, methods=["GET"]),
        ]

    async def get(self, request: Request) -> Response:
        ctx, rid = _begin(request)
        rec, provider, upstream = await owned_record(ctx, rid)
        if rec.get("native"):
            obj = await _relay(ctx, provider, "GET", upstream)
            obj["id"] = rid
            if "model" in obj and rec.get("model"):
                obj["model"] = rec["model"]
            return json_response(ctx, 200, obj)
        return json_response(ctx, 200, rec["response"])

    async def delete(self, request: Request) -> Response:
        ctx, rid = _begin(request)
        rec, provider, upstream = await owned_record(ctx, rid)
        if rec.get("native"):
            await _relay(ctx, provider, "DELETE", upstream)
        await ctx.state.responses.delete(rid)
        return json_response(ctx, 200, {"id": rid, "object": "response.deleted", "deleted": True})

    async def input_items(self, request: Request) -> Response:
        ctx, rid = _begin(request)
        rec, provider, upstream = await owned_record(ctx, rid)
        q = request.query_params
        if rec.get("native"):
            query = urlencode([(k, v) for k, v in q.multi_items() if k in _LIST_PARAMS])
            return json_response(ctx, 200, await _relay(ctx, provider, "GET", upstream, "/input_items", query))
        return json_response(ctx, 200, _page(rec.get("input") or [], q))


def _begin(request: Request) -> tuple[RequestContext, str]:
    ctx: RequestContext = request.scope[CTX]
    ctx.route = ROUTE  # one bounded label for every id
    return ctx, request.path_params["id"]


async def _relay(
    ctx: RequestContext, provider: str, method: str, upstream: str, suffix: str = "", query: str = ""
) -> Any:
    adapter = ctx.state.router.adapters[provider]
    ctx.provider = provider
    ureq = adapter.response_object_request(method, upstream, suffix, query)
    cfg = adapter.cfg
    resp = await ctx.state.upstream.send(
        ureq, provider, cfg.connect_timeout, cfg.timeout, max_duration=cfg.max_duration
    )
    try:
        data = await resp.read()
    finally:
        resp.close()
    if resp.status >= 300:
        raise adapter.parse_error(resp.status, data)
    obj = load_json(data, adapter)
    if not isinstance(obj, dict):
        raise adapter.bad_response("not a JSON object")
    return obj


def _page(items: list[dict[str, Any]], q: Any) -> dict[str, Any]:
    """A page of stored input items as OpenAI lists them: ``order`` desc by default, ``after``, ``limit`` 1-100."""
    try:
        limit = int(q.get("limit") or 20)
    except ValueError:
        raise GatewayError(400, "Invalid 'limit': expected an integer.", param="limit", code="invalid_value") from None
    if not 1 <= limit <= 100:
        raise GatewayError(400, "Invalid 'limit': expected 1 to 100.", param="limit", code="invalid_value")
    order = q.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise GatewayError(400, "Invalid 'order': expected 'asc' or 'desc'.", param="order", code="invalid_value")
    seq = items if order == "asc" else items[::-1]
    after = q.get("after")
    if after:
        ids = [i.get("id") for i in seq]
        seq = seq[ids.index(after) + 1 :] if after in ids else []
    page = seq[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0].get("id") if page else None,
        "last_id": page[-1].get("id") if page else None,
        "has_more": len(seq) > limit,
    }
