"""``GET /v1/usage``: a key's (or, for admins, any key's) totals for one UTC day; ``?team=T``: a team's."""

from __future__ import annotations

import re
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.accounting.usage.store import UsageStore, usage_body
from gateway.config import NAME_PATTERN
from gateway.errors import GatewayError, forbidden
from gateway.pipeline.frame import CTX, RequestContext
from gateway.routes.common import json_response

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


class UsageRoutes:
    def __init__(self, store: UsageStore) -> None:
        self.store = store

    def routes(self) -> list[Route]:
        return [Route("/v1/usage", self.get_usage, methods=["GET"])]

    async def get_usage(self, request: Request) -> Response:
        ctx: RequestContext = request.scope[CTX]
        p = ctx.who
        q = request.query_params
        team = q.get("team")
        if team is not None and q.get("key"):
            raise GatewayError(400, "Give either 'key' or 'team', not both.", param="team", code="invalid_value")
        if team is not None:
            if not re.fullmatch(NAME_PATTERN, team):
                raise GatewayError(400, "Invalid 'team': not a team name.", param="team", code="invalid_value")
            if team != p.team and not p.admin:
                raise forbidden("Reading a team's usage needs an admin key or a key of that team.")
        else:
            key = q.get("key") or p.name
            if key != p.name and not p.admin:
                raise forbidden("Reading another key's usage needs an admin key.")
        date = q.get("date") or time.strftime("%Y-%m-%d", time.gmtime())
        try:
            # Exactly YYYY-MM-DD: strptime alone takes 2026-1-2, which would be echoed as sent.
            if not _DATE.fullmatch(date):
                raise ValueError
            day = time.strftime("%Y%m%d", time.strptime(date, "%Y-%m-%d"))
        except ValueError:
            raise GatewayError(
                400, "Invalid 'date': expected YYYY-MM-DD.", param="date", code="invalid_value"
            ) from None
        if team is not None:
            totals, models = await self.store.team_usage(team, day)
            body = usage_body(team, date, totals, models)
            del body["key"]
            return json_response(ctx, 200, {"object": "usage", "team": team, **body})
        totals, models = await self.store.usage(key, day)
        return json_response(ctx, 200, usage_body(key, date, totals, models))
