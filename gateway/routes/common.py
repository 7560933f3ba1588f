"""What the Starlette routes share: a JSON answer carrying the request id."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from gateway.pipeline.frame import RequestContext
from gateway.wire.asgi import dumps


def json_response(ctx: RequestContext | None, status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    h = dict(headers or {})
    if ctx is not None:
        h["x-request-id"] = ctx.request_id
    return Response(dumps(obj), status_code=status, media_type="application/json", headers=h)
