"""The one per-request frame every route runs in, hot or not.

It owns what every request shares: the request id, the in-flight count and load shedding,
authentication, the error answer in the client API's shape (or the event that ends a started
stream), settling admission, and the usage record and metrics. A route supplies only its handler,
which fills in the ``RequestContext`` (model, provider, tokens, status) as it learns them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.accounting.usage.record import UsageRecord
from gateway.apis.base import OPENAI_ERRORS, ErrorShape
from gateway.errors import GatewayError
from gateway.governance.cost import Pricing, cost_of
from gateway.wire.asgi import JSON_CT, ClientGone, Receive, Scope, Send, clean_request_id

if TYPE_CHECKING:
    from gateway.pipeline.auth import Principal
    from gateway.pipeline.limits import Admission
    from gateway.pipeline.state import State

log = logging.getLogger("switchyard")

# Whether a route needs a key: REQUIRED answers 401 without one; OPTIONAL records the request
# under the key when one is valid (unknown routes) and goes on without one; NONE never looks.
REQUIRED, OPTIONAL, NONE = 2, 1, 0

CTX = "switchyard.ctx"  # the scope key under which Starlette routes find their RequestContext


class RequestContext:
    """One request as the frame and its handler see it; becomes the usage record at the end."""

    __slots__ = (
        "admission",
        "anthropic_beta",
        "anthropic_version",
        "authorization",
        "cache_read",
        "cache_write",
        "committed",
        "completion_tokens",
        "cost",
        "declared",
        "done",
        "estimated",
        "gone",
        "headers",
        "model",
        "priced",
        "pricing",
        "principal",
        "prompt_estimate",
        "prompt_tokens",
        "provider",
        "request_id",
        "route",
        "scope",
        "state",
        "status",
        "stream",
        "t0",
        "ttft",
        "x_api_key",
    )

    def __init__(self, state: State, scope: Scope) -> None:
        self.t0 = time.perf_counter()
        self.state = state
        self.scope = scope
        auth = xkey = rid = version = beta = None
        declared: int | None = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v
            elif k == b"x-api-key":
                xkey = v
            elif k == b"x-request-id":
                rid = v
            elif k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = None
            elif k == b"anthropic-version":
                version = v
            elif k == b"anthropic-beta":
                beta = v
        self.authorization: bytes | None = auth
        self.x_api_key: bytes | None = xkey
        self.anthropic_version: bytes | None = version  # forwarded to a native Anthropic upstream
        self.anthropic_beta: bytes | None = beta
        self.declared = declared  # the body's declared length, to refuse an oversized one unread
        self.request_id = clean_request_id(rid)
        self.route: str = scope["path"]  # the usage record's ``endpoint``: the route path
        self.principal: Principal | None = None
        self.admission: Admission | None = None
        self.model = ""  # as the client asked for it, recorded even when it is refused
        self.provider = ""
        self.stream = False
        self.status = 500
        self.committed = False  # the response has started: errors can no longer be a JSON body
        self.done = False  # the last response message is being sent: a disconnect now is normal
        self.gone = False  # the client disconnected before the answer was complete
        self.headers: list[tuple[bytes, bytes]] = []  # rate-limit headers for every response
        self.prompt_estimate = 0  # the gateway's own prompt count, used when the upstream gives none
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cache_read = 0  # prompt tokens read from the upstream's prompt cache
        self.cache_write = 0  # prompt tokens written to it
        self.pricing: Pricing | None = None  # the answering deployment's prices (set with ``provider``)
        self.cost = 0  # micro-dollars, from the tokens above once the request is done
        self.priced = True
        self.ttft: float | None = None
        self.estimated = False  # tokens counted by the gateway, not reported by the upstream

    @property
    def who(self) -> Principal:
        assert self.principal is not None, "the route needs a key"
        return self.principal

    def take_usage(self, usage: Any) -> bool:
        """The upstream's chat-form usage (``prompt_tokens``/``completion_tokens``, and the prompt-cache
        reads and writes in ``prompt_tokens_details``); False when absent."""
        if isinstance(usage, dict):
            p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(p, int):
                self.prompt_tokens = p
                self.completion_tokens = c if isinstance(c, int) else 0
                details = usage.get("prompt_tokens_details")
                if isinstance(details, dict):
                    read, write = details.get("cached_tokens"), details.get("cache_write_tokens")
                    self.cache_read = read if isinstance(read, int) and read > 0 else 0
                    self.cache_write = write if isinstance(write, int) and write > 0 else 0
                return True
        return False

    def settle_cost(self) -> None:
        """The request's cost from its recorded tokens at the answering deployment's prices."""
        self.cost, self.priced = cost_of(
            self.pricing, self.prompt_tokens, self.completion_tokens, self.cache_read, self.cache_write
        )

    def record(self) -> UsageRecord:
        p = self.principal
        return UsageRecord(
            id=self.request_id,
            key=p.name if p else "",
            model=self.model,
            provider=self.provider,
            endpoint=self.route,
            status=self.status,
            stream=self.stream,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            latency_ms=(time.perf_counter() - self.t0) * 1000.0,
            ttft_ms=None if self.ttft is None else (self.ttft - self.t0) * 1000.0,
            estimated=self.estimated,
            team=(p.team or "") if p else "",
            cost_micro_usd=self.cost,
            priced=self.priced,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
        )


Handler = Callable[[RequestContext, Receive, Send], Awaitable[None]]


class Frame:
    """One per app; reads the current State once per request (reload-safe)."""

    def __init__(self, app: Any) -> None:
        self.app = app  # holds ``.state``, swapped atomically on reload
        self.in_flight = 0  # this worker's requests in the frame (bounded by max_concurrent_requests)

    async def run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        handler: Handler,
        auth: int = REQUIRED,
        errors: ErrorShape = OPENAI_ERRORS,
    ) -> None:
        state: State = self.app.state
        ctx = RequestContext(state, scope)
        self.in_flight += 1
        state.accountant.begin()
        try:
            if self.in_flight > state.config.server.max_concurrent_requests:
                # Shed load rather than queue without bound; clients retry after a second.
                raise GatewayError(
                    503,
                    "The gateway is at capacity; retry shortly.",
                    code="overloaded",
                    headers={"retry-after": "1"},
                    reason="overloaded",
                )
            if auth == REQUIRED:
                # A known key never waits; an unknown one may be a runtime key made a moment ago.
                keys = state.keys
                ctx.principal = keys.authenticate(ctx.authorization, ctx.x_api_key) or await keys.look_up(
                    ctx.authorization, ctx.x_api_key
                )
            elif auth == OPTIONAL and (ctx.authorization or ctx.x_api_key):
                try:
                    keys = state.keys
                    ctx.principal = keys.authenticate(ctx.authorization, ctx.x_api_key) or await keys.look_up(
                        ctx.authorization, ctx.x_api_key
                    )
                except GatewayError:
                    ctx.principal = None
            await handler(ctx, receive, send)
        except GatewayError as e:
            ctx.status = e.status
            await _answer_error(send, ctx, e, errors)
        except ClientGone:
            ctx.status = 499
        except Exception as e:  # a bug must still answer in the API's shape, and log no traceback
            ctx.status = 500
            log.error("unexpected %s on %s (request %s): %.200s", type(e).__name__, ctx.route, ctx.request_id, e)
            await _answer_error(
                send,
                ctx,
                GatewayError(500, "The gateway failed to handle this request.", code="internal_error"),
                errors,
            )
        finally:
            self.in_flight -= 1
            if ctx.estimated and not ctx.prompt_tokens:
                ctx.prompt_tokens = ctx.prompt_estimate
            ctx.settle_cost()
            if ctx.admission is not None:
                state.limiter.settle(ctx.admission, ctx.prompt_tokens + ctx.completion_tokens, ctx.cost)
            p = ctx.principal
            state.accountant.finish(p.name if p else None, ctx.record(), state.router.routes.get(ctx.model) is not None)


async def _answer_error(send: Send, ctx: RequestContext, err: GatewayError, errors: ErrorShape) -> None:
    if not ctx.committed:
        status, body = errors.answer(err)
        ctx.status = status
        headers = [JSON_CT, (b"content-length", str(len(body)).encode()), (b"x-request-id", ctx.request_id.encode())]
        names = set()
        for k, v in err.headers.items():
            name = k.lower().encode()
            names.add(name)
            headers.append((name, str(v).encode()))
        headers.extend(h for h in ctx.headers if h[0] not in names)
        if status == 413:
            headers.append((b"connection", b"close"))  # the rest of the body is not read
        ctx.committed = True
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
    elif not ctx.done:
        ctx.done = True
        await send({"type": "http.response.body", "body": errors.event(err), "more_body": False})
