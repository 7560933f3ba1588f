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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.accounting.usage.record import MAX_TOKENS, UsageRecord
from gateway.apis.base import OPENAI_ERRORS, ErrorShape
from gateway.errors import GatewayError
from gateway.governance.cost import Pricing, cost_of
from gateway.wire.asgi import TIMED_OUT, ClientGone, Receive, Scope, Send, clean_request_id, read_body, send_json

if TYPE_CHECKING:
    from gateway.pipeline.auth import Principal
    from gateway.pipeline.limits import Admission
    from gateway.pipeline.state import State

log = logging.getLogger("switchyard")

# Whether a route needs a key: REQUIRED answers 401 without one; OPTIONAL records the request
# under the key when one is valid (unknown routes) and goes on without one; NONE never looks.
REQUIRED, OPTIONAL, NONE = 2, 1, 0
# Who reads the request body: the handler as it goes (uploads stream), or the frame before the
# request takes a concurrency slot, into ``ctx.body`` (JSON routes) or replayed to the handler
# (Starlette routes): a slow body then holds a connection, never a slot.
HANDLER_READS, BODY, REPLAY = 0, 1, 2

CTX = "switchyard.ctx"  # the scope key under which Starlette routes find their RequestContext


class RequestContext:
    """One request as the frame and its handler see it; becomes the usage record at the end."""

    __slots__ = (
        "admission",
        "anthropic_beta",
        "anthropic_version",
        "authorization",
        "body",
        "cache_read",
        "cache_write",
        "committed",
        "completion_tokens",
        "content_type",
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
        auth = xkey = rid = version = beta = ctype = None
        declared: int | None = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v
            elif k == b"x-api-key":
                xkey = v
            elif k == b"content-type":
                ctype = v
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
        self.content_type: bytes | None = ctype
        self.body = b""  # read by the frame for JSON routes
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

    def clamp_tokens(self) -> None:
        """Upstream counts into 0..MAX_TOKENS before they reach limits and usage: a negative count
        would refund a budget, a huge one break Redis' 64-bit counters."""
        if not 0 <= self.prompt_tokens <= MAX_TOKENS:
            self.prompt_tokens = min(max(self.prompt_tokens, 0), MAX_TOKENS)
        if not 0 <= self.completion_tokens <= MAX_TOKENS:
            self.completion_tokens = min(max(self.completion_tokens, 0), MAX_TOKENS)

    def record(self, routed: bool = True) -> UsageRecord:
        """The usage record; ``routed`` False for a model name that never reached a provider (it is
        then counted under a placeholder in the usage hashes, as in the metrics)."""
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
            routed=routed or not self.model,
        )


Handler = Callable[[RequestContext, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Handling:
    """How the frame serves a kind of route, made once per route: its handler, whether it needs a
    key, how its errors are spelled, and whether the frame or the handler reads the body."""

    handler: Handler
    auth: int = REQUIRED
    errors: ErrorShape = OPENAI_ERRORS
    body: int = HANDLER_READS


class Frame:
    """One per app; reads the current State once per request (reload-safe)."""

    def __init__(self, app: Any) -> None:
        self.app = app  # holds ``.state``, swapped atomically on reload
        self.in_flight = 0  # this worker's requests in the frame (bounded by max_concurrent_requests)

    async def run(self, scope: Scope, receive: Receive, send: Send, how: Handling) -> None:
        auth, body = how.auth, how.body
        state: State = self.app.state
        ctx = RequestContext(state, scope)
        state.accountant.begin()
        slot = False
        try:
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
            if body != HANDLER_READS:
                if body == BODY and ctx.content_type is not None and ctx.content_type != b"application/json":
                    check_json_type(ctx.content_type)
                ctx.body = await read_body(receive, state.max_body, ctx.declared)
                if body == REPLAY:
                    receive = _replay(ctx.body, receive)
            self.in_flight += 1
            slot = True
            if self.in_flight > state.config.server.max_concurrent_requests:
                # Shed load rather than queue without bound; clients retry after a second.
                raise GatewayError(
                    503,
                    "The gateway is at capacity; retry shortly.",
                    code="overloaded",
                    headers={"retry-after": "1"},
                    reason="overloaded",
                )
            await how.handler(ctx, receive, send)
        except GatewayError as e:
            ctx.status = e.status
            await _answer_error(send, ctx, e, how.errors)
        except ClientGone:
            # The protocol answered 408 itself when the body stopped arriving (wire/http.py).
            ctx.status = 408 if scope.get(TIMED_OUT) else 499
        except Exception as e:  # a bug must still answer in the API's shape, and log no traceback
            err = unexpected(e)
            ctx.status = err.status
            if err.status == 500:
                log.error("unexpected %s on %s (request %s): %.200s", type(e).__name__, ctx.route, ctx.request_id, e)
            await _answer_error(send, ctx, err, how.errors)
        finally:
            if slot:
                self.in_flight -= 1
            if ctx.estimated and not ctx.prompt_tokens:
                ctx.prompt_tokens = ctx.prompt_estimate
            ctx.clamp_tokens()
            ctx.settle_cost()
            if ctx.admission is not None:
                state.limiter.settle(ctx.admission, ctx.prompt_tokens + ctx.completion_tokens, ctx.cost)
            p = ctx.principal
            configured = state.router.routes.get(ctx.model) is not None
            state.accountant.finish(p.name if p else None, ctx.record(configured or bool(ctx.provider)), configured)


def unexpected(e: Exception) -> GatewayError:
    """The answer for an exception no step turned into a GatewayError: a 500, except for a body
    orjson parsed but cannot write back (nested deeper than its 254 levels, an integer beyond 64
    bits), which is the request's fault: checking every body's depth up front would cost every
    request a walk of its JSON, while serialising it fails for free. (orjson raises a plain
    TypeError for these: only its own messages are taken for them.)"""
    if type(e) is TypeError and str(e) in _UNWRITABLE:
        return GatewayError(
            400,
            f"The request body cannot be forwarded: {e}. Nest arrays and objects at most 254 levels deep "
            "and keep integers within 64 bits.",
            code="invalid_json",
        )
    return GatewayError(500, "The gateway failed to handle this request.", code="internal_error")


_UNWRITABLE = frozenset({"Recursion limit reached", "Integer exceeds 64-bit range"})


def check_json_type(ctype: bytes) -> None:
    """A JSON route's ``content-type``, when given, must be JSON (``application/json``, with
    parameters such as ``charset``, or a ``+json`` type): 400 in OpenAI's words otherwise."""
    media = ctype.partition(b";")[0].strip().lower()
    if media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json")):
        return
    shown = ctype.decode("latin-1")[:200]
    raise GatewayError(
        400,
        f"Unsupported content type: '{shown}'. This API method only accepts 'application/json' requests, "
        f"but you specified the header 'Content-Type: {shown}'. Please try again with a supported content type.",
        code="unsupported_content_type",
    )


def _replay(raw: bytes, receive: Receive) -> Receive:
    """A receive that gives the body the frame already read, then defers to the connection's."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay


async def _answer_error(send: Send, ctx: RequestContext, err: GatewayError, errors: ErrorShape) -> None:
    if not ctx.committed:
        status, body = errors.answer(err)
        ctx.status = status
        extra = [(k.lower().encode(), str(v).encode()) for k, v in err.headers.items()]
        names = {k for k, _ in extra}
        extra.extend(h for h in ctx.headers if h[0] not in names)
        if status in (408, 413):
            extra.append((b"connection", b"close"))  # the rest of the body is not read
        ctx.committed = True
        await send_json(send, status, body, ctx.request_id, extra)
    elif not ctx.done:
        ctx.done = True
        await send({"type": "http.response.body", "body": errors.event(err), "more_body": False})
