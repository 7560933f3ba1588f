"""The generation handler: one pass per request for every generation API, inside the frame.

frame (id, key, errors, usage) -> parse -> validate -> resolve model -> admit -> fit context
    -> translate (adapter) -> send (wire) -> relay

It works on raw ASGI messages and plain dicts: the body is parsed once with orjson and only the
fields the gateway interprets are checked. A stream is committed to the client only after the
upstream's first event, so a failure before that is still a clean error (and, with several
deployments, a fallback).
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import GatewayError, model_not_allowed
from gateway.pipeline.budgets import reservation
from gateway.pipeline.overflow import PARAM as OVERFLOW_PARAM
from gateway.pipeline.overflow import budget_of, cap_budget, fit_async, overflow_error, parse_overflow
from gateway.pipeline.relay import ChatOut, NativeOut, OpenStream, Out, TranslatedOut, peek, pump
from gateway.pipeline.validate import model_of
from gateway.wire.asgi import STREAM_WATCH_AFTER, WATCH_AFTER, DisconnectWatch, Receive, Send, send_json
from gateway.wire.upstream import timed_out
from providers.base import CallContext

if TYPE_CHECKING:
    from gateway.apis.base import Endpoint, Exchange
    from gateway.pipeline.frame import RequestContext
    from gateway.pipeline.routing import Deployment, Route
    from gateway.pipeline.state import State
    from providers.base import Adapter

BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The API expects a JSON payload, but what was sent was not valid JSON.)"
)


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError(400, BAD_JSON, code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


class Exhausted(Exception):
    """Every attempt at one deployment failed with a retryable error: try the next one."""

    def __init__(self, last: GatewayError) -> None:
        super().__init__(last.message)
        self.last = last


class Call:
    """One generation request on its way through the attempts: what every step needs."""

    __slots__ = ("api", "body", "call", "ctx", "deadline", "endpoint", "route", "send")

    def __init__(self, ctx: RequestContext, send: Send, endpoint: Endpoint, body: dict[str, Any], route: Route) -> None:
        self.ctx = ctx
        self.send = send
        self.endpoint = endpoint
        self.body = body
        self.route = route
        opts = body.get("stream_options")
        self.call = CallContext(
            client_model=route.name,
            include_usage=ctx.stream and isinstance(opts, dict) and opts.get("include_usage") is True,
            request_id=ctx.request_id,
        )
        self.api: Exchange | None = None  # a client API that is not the chat form
        # The request's deadline for the upstream's first byte (loop time), set by its first attempt
        # from that deployment's ``timeout``: retries and fallbacks get what is left of it.
        self.deadline = 0.0


async def handle(ctx: RequestContext, receive: Receive, send: Send, endpoint: Endpoint) -> None:
    """The frame's handler for a generation route."""
    state = ctx.state
    raw = ctx.body  # read by the frame before the request took a concurrency slot
    body = parse_body(raw)
    model = model_of(body)
    if model is not None:
        ctx.model = model  # recorded as asked even when validation refuses the request
    ctx.stream = endpoint.streams and body.get("stream") is True
    endpoint.validate(body)
    model = ctx.model
    route = state.router.resolve(model)
    principal = ctx.who
    if not principal.allows(model):
        raise model_not_allowed(model)
    # A cheap prompt estimate for token limits; settled with the real usage afterwards.
    ctx.prompt_estimate = len(raw) // 4
    team = state.keys.team_of(principal)
    if principal.limited or team is not None:
        # A money budget reserves the most the request can cost; settled with the real cost afterwards.
        budgeted = principal.limits.budget_usd or (team is not None and team.limits.budget_usd)
        cost = reservation(endpoint, body, route, ctx.prompt_estimate) if budgeted else 0
        ctx.admission = await state.limiter.admit(
            principal.name, principal.limits, ctx.prompt_estimate, cost, team=team
        )
        ctx.headers = ctx.admission.headers
    c = Call(ctx, send, endpoint, body, route)
    if endpoint.exchange is not None:
        c.api = endpoint.exchange(ctx, body)
        c.call.include_usage = ctx.stream  # the encoder needs the upstream's usage chunk
        c.call.chunk_dicts = True  # and reads each chunk as a dict
        await c.api.prepare()
    task = asyncio.current_task()
    # Streams are watched almost from the start (a client that leaves one mid-way is the common
    # case and must be recorded as 499): after STREAM_WATCH_AFTER, so the many streams that are
    # over sooner cost a timer, not a task; other requests once they have lasted WATCH_AFTER.
    watcher = DisconnectWatch(receive, task, ctx, STREAM_WATCH_AFTER if ctx.stream else WATCH_AFTER)
    try:
        await _attempts(c)
    except asyncio.CancelledError:
        if not watcher.client_left():
            raise
        ctx.status = 499
    finally:
        watcher.stop()


async def _attempts(c: Call) -> None:
    """Deployments in order, each retried on retryable failures, until one answers.

    Retries and fallback happen only before the client got a byte: a stream is opened
    (headers and first event) inside the loop and relayed after it.
    """
    ctx, route = c.ctx, c.route
    balancer = ctx.state.balancer
    deps = balancer.order(route, route.least_in_flight)
    pinned = c.api.pinned if c.api is not None else None
    if pinned is not None and any(d.provider == pinned for d in deps):
        deps = [d for d in deps if d.provider == pinned]  # a follow-up goes back to the upstream that keeps the state
    last: GatewayError | None = None
    for dep in deps:
        if last is not None and asyncio.get_running_loop().time() >= c.deadline:
            break  # the request's deadline has passed: no fallback gets to start
        if not balancer.acquire(dep):
            continue  # circuit open
        try:
            opened = await _try_deployment(c, dep)
            if ctx.stream:
                await pump(ctx, c.send, dep, opened, c.api, c.call)
            else:
                data = opened if isinstance(opened, bytes) else orjson.dumps(opened)
                if c.api is not None:
                    await c.api.keep()
                ctx.status = 200
                ctx.done = ctx.committed = True
                if c.call.signatures and ctx.state.signatures is not None:
                    # Kept before the answer goes out, so a replay finds them; remember() never waits.
                    ctx.state.signatures.remember(c.call.signatures)
                await send_json(c.send, 200, data, ctx.request_id, ctx.headers)
            return
        except Exhausted as e:
            last = e.last
        finally:
            balancer.release(dep)
    if last is not None:
        raise last
    raise GatewayError(
        503,
        f"No deployment of '{route.name}' is available right now (circuit open); retry later.",
        code="upstream_unavailable",
        headers={"retry-after": str(balancer.retry_after(deps))},
        reason="circuit_open",
    )


async def _try_deployment(c: Call, dep: Deployment) -> Any:
    """One deployment, with its retries: the result (dict or open stream); ``Exhausted`` when
    every attempt failed retryably.

    The context window is fitted per deployment (windows differ); an upstream's own overflow
    error is answered in our exact shape, or, in truncate mode, retried once with the budget
    its numbers allow.
    """
    ctx, state, form = c.ctx, c.ctx.state, c.endpoint.form
    cfg = dep.adapter.cfg
    adapter = dep.adapter
    native_api = c.api is not None and c.endpoint.name in adapter.native_apis
    native = adapter.capabilities.native_overflow
    # Adapters and fitting change keys: the client's body stays as sent.
    fitted_body = {} if native_api and _fits_by_size(c, dep) else _chat_form(c, dep.provider, native_api)
    if adapter.capabilities.keeps_thought_signatures and state.signatures is not None and not native_api:
        # Replayed tool calls whose client dropped their signatures get the kept ones back.
        await state.signatures.restore_into(fitted_body)
    behaviour = fitted_body.get(OVERFLOW_PARAM) or dep.facts.overflow if fitted_body else "error"
    fitted = await fit_async(form, fitted_body, dep.facts, adapter.kind, native) if fitted_body else None
    if native:
        fitted_body.setdefault(OVERFLOW_PARAM, dep.facts.overflow)
    if fitted is not None:
        ctx.prompt_estimate = fitted.prompt_tokens
    attempt = 0
    corrected = False
    loop = asyncio.get_running_loop()
    per_try = min(cfg.attempt_timeout or cfg.timeout, cfg.timeout)
    while True:
        now = loop.time()
        first = not c.deadline  # the request's first attempt: its timeouts are the deadline's
        if first:
            c.deadline = now + cfg.timeout
        left = c.deadline - now
        if left <= 0:
            raise Exhausted(timed_out(dep.provider))
        wait = per_try if per_try <= left else left  # this attempt's wait for the first byte
        if native_api:
            assert c.api is not None
            ureq = adapter.native_request(c.endpoint.name, _native_body(c, dep, fitted_body), dep.target, ctx)
        else:
            ureq = adapter.build_request(form, dict(fitted_body), dep.target, c.call)
        ureq.headers["x-request-id"] = ctx.request_id
        ctx.provider = dep.provider
        ctx.pricing = dep.facts.pricing
        try:
            if ctx.stream and first and per_try == cfg.timeout:
                # Headers, then each piece, within ``timeout`` (the upstream client's read timeout): no timer.
                result: Any = await _open_stream(c, dep, ureq, native_api, wait)
            elif ctx.stream:
                # A retry or fallback (or a per-try timeout) bounds the wait for the first event
                # exactly; then ``timeout`` between pieces. A timer only where it is needed.
                try:
                    async with asyncio.timeout_at(now + wait):
                        result = await _open_stream(c, dep, ureq, native_api, wait)
                except TimeoutError:
                    raise timed_out(dep.provider) from None
            else:
                result = await _call_json(c, dep, ureq, native_api, wait)
        except GatewayError as e:
            dep.adapter.redact(e)  # errors a translator built from the upstream's words, too
            state.accountant.upstream_error(dep.provider, e.reason)  # once per failed attempt
            if e.status == 400 and (nums := parse_overflow(e.message, adapter)):
                window, prompt, completion = nums
                budget = budget_of(fitted_body)
                if behaviour == "truncate" and not corrected and budget is not None and window - prompt >= 1:
                    cap_budget(fitted_body, window - prompt)
                    corrected = True  # once: never loop on an upstream that keeps refusing
                    continue
                raise overflow_error(form, window, prompt, completion or budget) from None
            if not _retryable(e):
                raise
            if e.status >= 500:
                # Only the upstream's own failures count toward its circuit: a 429 or another
                # request-caused error must not let one key open a shared deployment for everyone.
                state.balancer.failure(dep)
            delay = _backoff(attempt, cfg.retry_backoff, e.headers.get("retry-after"), state.balancer.rng.random())
            if attempt >= cfg.retries or delay is None or loop.time() + delay >= c.deadline:
                raise Exhausted(e) from None
            attempt += 1
            await asyncio.sleep(delay)
            continue
        state.balancer.success(dep)
        return result


async def fetch(state: State, adapter: Adapter, provider: str, ureq: Any, wait: float | None = None) -> bytes:
    """One upstream request answered whole: its body, or its error raised. ``wait`` is what is left
    of the request's deadline for the first byte (the provider's ``timeout`` when not given)."""
    cfg = adapter.cfg
    wait = cfg.timeout if wait is None else wait
    connect = cfg.connect_timeout if cfg.connect_timeout <= wait else wait
    resp = await state.upstream.send(ureq, provider, connect, wait, max_duration=cfg.max_duration)
    try:
        data = await resp.read()
    finally:
        resp.close()
    if resp.status >= 300:
        raise http_error(adapter, resp, data)
    return data


async def _call_json(c: Call, dep: Deployment, ureq: Any, native_api: bool, wait: float) -> dict[str, Any] | bytes:
    data = await fetch(c.ctx.state, dep.adapter, dep.provider, ureq, wait)
    try:
        if native_api:
            assert c.api is not None
            return c.api.native_answer(data, dep.provider)
        result = dep.adapter.parse_response(c.endpoint.form, data, c.call)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise dep.adapter.bad_response(f"unexpected shape ({type(e).__name__})") from None
    if not c.ctx.take_usage(result.get("usage")) or c.call.usage_estimated:
        c.ctx.estimated = True
    if c.api is None:
        return result
    try:
        # Translated here, where a chat answer no translator can read (tool calls that are not
        # objects, say) is still the upstream's bad response: retried or passed to a fallback.
        return c.api.answer(result, dep.provider)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise dep.adapter.bad_response(f"unexpected shape ({type(e).__name__})") from None


async def _open_stream(c: Call, dep: Deployment, ureq: Any, native_api: bool, wait: float) -> OpenStream:
    """Send, check the status, and read up to the first event for the client (nothing sent yet)."""
    cfg = dep.adapter.cfg
    adapter = dep.adapter
    connect = cfg.connect_timeout if cfg.connect_timeout <= wait else wait
    resp = await c.ctx.state.upstream.send(ureq, dep.provider, connect, cfg.timeout, max_duration=cfg.max_duration)
    ok = False
    try:
        if resp.status >= 300:
            raise http_error(dep.adapter, resp, await resp.read())
        out: Out
        if native_api:
            assert c.api is not None
            out = NativeOut(c.api.native_relay(dep.provider), adapter)
        else:
            translator = adapter.stream_translator(c.endpoint.form, c.call)
            if c.api is not None:
                out = TranslatedOut(adapter, translator, c.api.encoder(dep.provider, c.ctx.prompt_estimate))
            else:
                out = ChatOut(adapter, translator, c.endpoint.done or b"")
        opened = await peek(resp, out, adapter)
        ok = True
        return opened
    finally:
        if not ok:
            resp.close()


def _chat_form(c: Call, provider: str, native_api: bool) -> dict[str, Any]:
    """The request in the chat form, to fit and translate. For a native API only to measure: a body
    that has no chat form (a hosted tool) is then sent unmeasured rather than refused."""
    if c.api is None:
        return dict(c.body)
    if not native_api:
        return c.api.chat_body(provider)
    try:
        return c.api.chat_body(provider)
    except GatewayError:
        return {}


# What may count for more tokens than its bytes in a native body: images, files, audio, tool
# definitions (rendered before counting). A body naming none of them is plain text and structure.
_SIZE_UNSAFE = (b'"image', b'"document', b'"file', b'"input_audio"', b'"tools"')
_PRIMING = 16  # tokens a chat form adds beyond its messages' bytes, with room to spare


def _fits_by_size(c: Call, dep: Deployment) -> bool:
    """A native body that surely fits the window without its chat form: with no window to fit, or
    when its byte size plus its budget leaves room (a byte-level token is at least one byte and
    escaping only adds bytes, so the body's size bounds its prompt, message overheads included)."""
    window = dep.facts.context_window
    if window is None:
        return True
    raw = c.ctx.body
    budget = c.body.get(c.endpoint.overflow_param)
    budget = budget if type(budget) is int else 0
    cap = dep.facts.max_output_tokens
    if (cap is not None and budget > cap) or len(raw) + budget + _PRIMING >= window:
        return False  # truncation may have to lower the budget: the careful count decides
    return not any(marker in raw for marker in _SIZE_UNSAFE)


def _native_body(c: Call, dep: Deployment, fitted: dict[str, Any]) -> bytes:
    """The client's body for a native provider, with the completion budget fitting may have lowered."""
    assert c.api is not None
    body = c.api.native_body(dep.provider, dep.target.upstream_model)
    budget = budget_of(fitted) if fitted else None
    param = c.endpoint.overflow_param
    if budget is not None and c.body.get(param) != budget:
        body[param] = budget
    return orjson.dumps(body)


_RETRYABLE = frozenset({408, 409, 429})
_MAX_RETRY_AFTER = 30.0  # longer upstream Retry-After: move on to the next deployment instead


def _retryable(e: GatewayError) -> bool:
    return e.status in _RETRYABLE or e.status >= 500


def retry_after_seconds(value: str | None) -> float | None:
    """An upstream's ``Retry-After`` in seconds; None when absent or not a finite number >= 0
    (``nan``, ``inf``, a date: the backoff decides then)."""
    if not value:
        return None
    try:
        ra = float(value)
    except ValueError:
        return None
    return ra if math.isfinite(ra) and ra >= 0 else None


def _backoff(attempt: int, base: float, retry_after: str | None, u: float) -> float | None:
    """Exponential backoff with jitter, or the upstream's Retry-After; None when that is too long."""
    ra = retry_after_seconds(retry_after)
    if ra is not None:
        return None if ra > _MAX_RETRY_AFTER else ra
    if retry_after and retry_after.strip().lower() in ("inf", "+inf", "infinity"):
        return None
    step = min(base * (2**attempt), 8.0)
    return step / 2 + u * step / 2


def http_error(adapter: Adapter, resp: Any, data: bytes) -> GatewayError:
    """An upstream's non-2xx answer as the error to give the client (its status and message kept)."""
    if resp.status < 400:
        return adapter.bad_response(f"HTTP {resp.status}")
    err = adapter.parse_error(resp.status, data)
    ra = retry_after_seconds(resp.headers.get("retry-after") if resp.headers is not None else None)
    if ra is not None and (resp.status in (429, 503, 529) or err.status in (429, 503)):
        # Relayed as whole seconds, as clients expect; a value that is no number is not relayed.
        err.headers = {**err.headers, "retry-after": str(math.ceil(ra))}
    elif "retry-after" in err.headers and retry_after_seconds(err.headers["retry-after"]) is None:
        err.headers = {k: v for k, v in err.headers.items() if k != "retry-after"}
    return err
