"""The pipeline (DESIGN §2), one pass per request for every generation endpoint:

ingress -> authenticate -> resolve model -> admit -> fit context -> translate -> send -> relay
                                                                                     -> account

It works on raw ASGI messages and plain dicts: the body is parsed once with orjson and
only the fields the gateway interprets are checked. A stream is committed to the client
only after the upstream's first event, so a failure before that is still a clean JSON
error (and, with several deployments, a fallback).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from gateway.accounting.usage.record import UsageRecord
from gateway.errors import GatewayError, model_not_allowed
from gateway.pipeline.overflow import PARAM as OVERFLOW_PARAM
from gateway.pipeline.overflow import budget_of, cap_budget, fit_async, overflow_error, parse_overflow
from gateway.pipeline.validate import CHECKS
from gateway.wire.asgi import (
    WATCH_AFTER,
    ClientGone,
    DisconnectWatch,
    Receive,
    Scope,
    Send,
    clean_request_id,
    read_body,
    send_error,
    send_json,
)
from gateway.wire.sse import DONE, SSE_HEADERS, SSEParser, frame
from providers.base import EMBEDDINGS, CallContext

if TYPE_CHECKING:
    from gateway.pipeline.routing import Deployment, Route
    from gateway.pipeline.state import State

log = logging.getLogger("switchyard")

_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The API expects a JSON payload, but what was sent was not valid JSON.)"
)


class Outcome:
    """What the relay learned, for the usage record."""

    __slots__ = (
        "committed",
        "completion_tokens",
        "done",
        "estimated",
        "gone",
        "headers",
        "prompt_estimate",
        "prompt_tokens",
        "provider",
        "status",
        "ttft",
    )

    def __init__(self) -> None:
        self.committed = False  # the response has started: errors can no longer be a JSON body
        self.done = False  # the last response message is being sent: a disconnect now is normal
        self.gone = False  # the client disconnected before the answer was complete
        self.headers: list[tuple[bytes, bytes]] = []  # rate-limit headers for every response
        self.prompt_estimate = 0  # the gateway's own prompt count, used when the upstream gives none
        self.status = 500
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.ttft: float | None = None
        self.estimated = False
        self.provider = ""


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError(400, _BAD_JSON, code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def _take_usage(out: Outcome, usage: Any) -> bool:
    if isinstance(usage, dict):
        p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(p, int):
            out.prompt_tokens = p
            out.completion_tokens = c if isinstance(c, int) else 0
            return True
    return False


class Pipeline:
    """One instance per app; reads the current State once per request (reload-safe)."""

    def __init__(self, app: Any) -> None:
        self.app = app  # holds ``.state``, swapped atomically on reload
        self.in_flight = 0  # this worker's requests in the pipeline (bounded by max_concurrent_requests)

    async def handle(self, scope: Scope, receive: Receive, send: Send, endpoint: str) -> None:
        t0 = time.perf_counter()
        state: State = self.app.state
        auth = xkey = rid = None
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
        request_id = clean_request_id(rid)
        path = scope["path"]
        out = Outcome()
        principal = None
        model = ""
        stream = False
        admission = None
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
            principal = state.keys.authenticate(auth, xkey)
            raw = await read_body(receive, state.max_body, declared)
            body = _parse_body(raw)
            if isinstance(body.get("model"), str):
                model = body["model"]  # recorded as asked even when validation refuses the request
            stream = endpoint != EMBEDDINGS and body.get("stream") is True  # embeddings never stream
            CHECKS[endpoint](body)
            route = state.router.resolve(model)
            if not principal.allows(model):
                raise model_not_allowed(model)
            # A cheap prompt estimate for token limits; settled with the real usage afterwards.
            out.prompt_estimate = len(raw) // 4
            if principal.limited:
                admission = await state.limiter.admit(principal.name, principal.limits, out.prompt_estimate)
                out.headers = admission.headers
            await self._serve(state, scope, receive, send, endpoint, body, route, request_id, stream, out)
        except GatewayError as e:
            out.status = e.status
            await send_error(send, e, request_id, close=e.status == 413, more=out.headers)
        except ClientGone:
            out.status = 499
        except Exception as e:  # a bug must still answer in OpenAI's shape, and log no traceback
            out.status = 500
            log.error("unexpected %s on %s (request %s): %.200s", type(e).__name__, path, request_id, e)
            err = GatewayError(500, "The gateway failed to handle this request.", code="internal_error")
            if not out.committed:
                await send_error(send, err, request_id, more=out.headers)
            elif not out.done:
                await send({"type": "http.response.body", "body": err.sse_event(), "more_body": False})
        finally:
            self.in_flight -= 1
            if out.estimated and not out.prompt_tokens:
                out.prompt_tokens = out.prompt_estimate
            if admission is not None:
                state.limiter.settle(admission, out.prompt_tokens + out.completion_tokens)
            state.accountant.finish(
                principal.name if principal else None,
                UsageRecord(
                    id=request_id,
                    key=principal.name if principal else "",
                    model=model,
                    provider=out.provider,
                    endpoint=path,
                    status=out.status,
                    stream=stream,
                    prompt_tokens=out.prompt_tokens,
                    completion_tokens=out.completion_tokens,
                    latency_ms=(time.perf_counter() - t0) * 1000.0,
                    ttft_ms=None if out.ttft is None else (out.ttft - t0) * 1000.0,
                    estimated=out.estimated,
                ),
                state.router.routes.get(model) is not None,
            )

    async def _serve(
        self,
        state: State,
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: str,
        body: dict[str, Any],
        route: Route,
        request_id: str,
        stream: bool,
        out: Outcome,
    ) -> None:
        # Admission (limits) and context fitting slot in here, before any upstream call.
        opts = body.get("stream_options")
        ctx = CallContext(
            client_model=route.name,
            include_usage=stream and isinstance(opts, dict) and opts.get("include_usage") is True,
            request_id=request_id,
        )
        task = asyncio.current_task()
        # Streams are watched from the start (a client that leaves one mid-way is the common case
        # and must be recorded as 499); other requests only once they have lasted WATCH_AFTER.
        watcher = DisconnectWatch(receive, task, out, 0.0 if stream else WATCH_AFTER)
        try:
            await self._attempts(state, send, endpoint, body, route, ctx, stream, out)
        except asyncio.CancelledError:
            if not out.gone:
                raise
            if task is not None:
                task.uncancel()
            out.status = 499
        finally:
            watcher.stop()

    async def _attempts(
        self,
        state: State,
        send: Send,
        endpoint: str,
        body: dict[str, Any],
        route: Route,
        ctx: CallContext,
        stream: bool,
        out: Outcome,
    ) -> None:
        """Deployments in order, each retried on retryable failures, until one answers.

        Retries and fallback happen only before the client got a byte: a stream is opened
        (headers and first event) inside the loop and relayed after it.
        """
        balancer = state.balancer
        deps = balancer.order(route, route.least_in_flight)
        last: GatewayError | None = None
        for dep in deps:
            if not balancer.acquire(dep):
                continue  # circuit open
            try:
                opened = await self._try_deployment(state, dep, endpoint, body, ctx, stream, out)
                if isinstance(opened, GatewayError):
                    last = opened
                    continue
                if stream:
                    await self._pump(state, send, dep, opened, ctx, out)
                else:
                    out.status = 200
                    out.done = out.committed = True
                    await send_json(send, 200, orjson.dumps(opened), ctx.request_id, out.headers)
                return
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

    async def _try_deployment(
        self,
        state: State,
        dep: Deployment,
        endpoint: str,
        body: dict[str, Any],
        ctx: CallContext,
        stream: bool,
        out: Outcome,
    ) -> Any:
        """One deployment, with its retries: the result (dict or open stream), or the last retryable error.

        The context window is fitted per deployment (windows differ); an upstream's own overflow
        error is answered in our exact shape, or, in truncate mode, retried once with the budget
        its numbers allow.
        """
        cfg = dep.adapter.cfg
        adapter = dep.adapter
        native = adapter.capabilities.native_overflow
        fitted_body = dict(body)  # adapters and fitting change keys; the client's body stays as sent
        behaviour = fitted_body.get(OVERFLOW_PARAM) or dep.facts.overflow
        fitted = await fit_async(endpoint, fitted_body, dep.facts, adapter.kind, native)
        if native:
            fitted_body.setdefault(OVERFLOW_PARAM, dep.facts.overflow)
        if fitted is not None:
            out.prompt_estimate = fitted.prompt_tokens
        attempt = 0
        corrected = False
        while True:
            ureq = adapter.build_request(endpoint, dict(fitted_body), dep.target, ctx)
            ureq.headers["x-request-id"] = ctx.request_id
            out.provider = dep.provider
            try:
                if stream:
                    result: Any = await self._open_stream(state, dep, ureq, endpoint, ctx)
                else:
                    result = await self._call_json(state, dep, ureq, endpoint, ctx, out)
            except GatewayError as e:
                state.accountant.upstream_error(dep.provider, e.reason)  # once per failed attempt
                if e.status == 400 and (nums := parse_overflow(e.message)):
                    window, prompt, completion = nums
                    budget = budget_of(fitted_body)
                    if behaviour == "truncate" and not corrected and budget is not None and window - prompt >= 1:
                        cap_budget(fitted_body, window - prompt)
                        corrected = True  # once: never loop on an upstream that keeps refusing
                        continue
                    raise overflow_error(endpoint, window, prompt, completion or budget) from None
                if not _retryable(e):
                    raise
                state.balancer.failure(dep)
                delay = _backoff(attempt, cfg.retry_backoff, e.headers.get("retry-after"), state.balancer.rng.random())
                if attempt >= cfg.retries or delay is None:
                    return e
                attempt += 1
                await asyncio.sleep(delay)
                continue
            state.balancer.success(dep)
            return result

    async def _call_json(
        self, state: State, dep: Deployment, ureq: Any, endpoint: str, ctx: CallContext, out: Outcome
    ) -> dict[str, Any]:
        cfg = dep.adapter.cfg
        resp = await state.upstream.send(ureq, dep.provider, cfg.connect_timeout, cfg.timeout)
        try:
            data = await resp.read()
        finally:
            resp.close()
        if resp.status >= 300:
            raise _http_error(dep, resp, data)
        try:
            result = dep.adapter.parse_response(endpoint, data, ctx)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise dep.adapter.bad_response(f"unexpected shape ({type(e).__name__})") from None
        if not _take_usage(out, result.get("usage")) or ctx.usage_estimated:
            out.estimated = True
        return result

    async def _open_stream(
        self, state: State, dep: Deployment, ureq: Any, endpoint: str, ctx: CallContext
    ) -> _OpenStream:
        """Send, check the status, and read up to the first translated event (nothing sent to the client yet)."""
        cfg = dep.adapter.cfg
        adapter = dep.adapter
        resp = await state.upstream.send(ureq, dep.provider, cfg.connect_timeout, cfg.timeout)
        ok = False
        try:
            if resp.status >= 300:
                raise _http_error(dep, resp, await resp.read())
            translator = adapter.stream_translator(endpoint, ctx)
            parser = SSEParser()
            chunks = resp.chunks()
            pending: list[bytes] = []
            async for chunk in chunks:
                for ev in parser.feed(chunk):
                    pending.extend(_feed(translator, adapter, ev))
                if pending or translator.finished:
                    break
            else:
                for ev in parser.close():
                    pending.extend(_feed(translator, adapter, ev))
                if not pending and not translator.finished:
                    raise adapter.bad_response("the stream ended before its first event")
            ok = True
            return _OpenStream(resp, translator, parser, chunks, pending)
        finally:
            if not ok:
                resp.close()

    async def _pump(
        self, state: State, send: Send, dep: Deployment, st: _OpenStream, ctx: CallContext, out: Outcome
    ) -> None:
        """Commit the stream to the client and relay it event by event."""
        translator, parser = st.translator, st.parser
        try:
            out.committed = True
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*SSE_HEADERS, (b"x-request-id", ctx.request_id.encode()), *out.headers],
                }
            )
            out.status = 200
            out.ttft = time.perf_counter()
            if st.pending:
                await send({"type": "http.response.body", "body": frame(st.pending), "more_body": True})
            if not translator.finished:
                async for chunk in st.chunks:
                    payloads: list[bytes] = []
                    for ev in parser.feed(chunk):
                        payloads.extend(_feed(translator, dep.adapter, ev))
                    if payloads:
                        await send({"type": "http.response.body", "body": frame(payloads), "more_body": True})
                    if translator.finished:
                        break
                else:
                    tail: list[bytes] = []
                    for ev in parser.close():
                        tail.extend(_feed(translator, dep.adapter, ev))
                    if tail:
                        await send({"type": "http.response.body", "body": frame(tail), "more_body": True})
            if not translator.finished:
                raise GatewayError(
                    502,
                    f"{dep.provider}: the upstream stream ended before its end marker",
                    code="upstream_stream_truncated",
                    reason="stream_truncated",
                )
            out.done = True
            await send({"type": "http.response.body", "body": DONE, "more_body": False})
        except GatewayError as e:
            # Mid-stream failure: an SSE error event and the end, never a clean [DONE].
            out.status = e.status if e.status >= 500 else 502
            state.accountant.upstream_error(dep.provider, e.reason)
            out.done = True
            await send({"type": "http.response.body", "body": e.sse_event(), "more_body": False})
        finally:
            st.resp.close()
            if not _take_usage(out, translator.usage):
                out.estimated = True
                out.completion_tokens = translator.content_chunks


def _feed(translator: Any, adapter: Any, ev: Any) -> list[bytes]:
    """One upstream event through the translator; an event of an unexpected shape is the
    upstream's fault (502), not a gateway crash."""
    try:
        return translator.feed(ev)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise adapter.bad_response(f"a stream event of unexpected shape ({type(e).__name__})") from None


class _OpenStream:
    __slots__ = ("chunks", "parser", "pending", "resp", "translator")

    def __init__(self, resp: Any, translator: Any, parser: SSEParser, chunks: Any, pending: list[bytes]) -> None:
        self.resp = resp
        self.translator = translator
        self.parser = parser
        self.chunks = chunks
        self.pending = pending


_RETRYABLE = frozenset({408, 409, 429})
_MAX_RETRY_AFTER = 30.0  # longer upstream Retry-After: move on to the next deployment instead


def _retryable(e: GatewayError) -> bool:
    return e.status in _RETRYABLE or e.status >= 500


def _backoff(attempt: int, base: float, retry_after: str | None, u: float) -> float | None:
    """Exponential backoff with jitter, or the upstream's Retry-After; None when that is too long."""
    if retry_after:
        try:
            ra = float(retry_after)
        except ValueError:
            ra = None
        if ra is not None:
            return None if ra > _MAX_RETRY_AFTER else max(ra, 0.0)
    step = min(base * (2**attempt), 8.0)
    return step / 2 + u * step / 2


def _http_error(dep: Deployment, resp: Any, data: bytes) -> GatewayError:
    if resp.status < 400:
        return dep.adapter.bad_response(f"HTTP {resp.status}")
    err = dep.adapter.parse_error(resp.status, data)
    ra = resp.headers.get("retry-after") if resp.headers is not None else None
    if ra and (resp.status in (429, 503, 529) or err.status in (429, 503)):
        err.headers = {**err.headers, "retry-after": ra}
    return err
