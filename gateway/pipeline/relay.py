"""Streams to the client: commit after the first event, relay, end properly or with an error event.

Three kinds of output share one pump: the chat form relayed as OpenAI chunks (``data:`` events
and ``[DONE]``), a chat stream translated into another client API's events (an ``Exchange``'s
encoder), and a native stream relayed as the upstream sent it (an ``Exchange``'s relay). Usage
comes from the translator, or from the native events.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import GatewayError
from gateway.wire.sse import SSE_HEADERS, SSEParser, frame

if TYPE_CHECKING:
    from gateway.apis.base import Exchange, NativeRelay, StreamEncoder
    from gateway.pipeline.frame import RequestContext
    from gateway.pipeline.routing import Deployment
    from providers.base import Adapter, CallContext, StreamTranslator


class ChatOut:
    """Upstream SSE -> the adapter's chat chunks -> ``data:`` frames (chat, completions)."""

    __slots__ = ("adapter", "done", "fast", "parser", "translator")

    def __init__(self, adapter: Adapter, translator: StreamTranslator, done: bytes) -> None:
        self.adapter = adapter
        self.translator = translator
        self.parser = SSEParser()
        self.done = done
        self.fast = translator.feed_chunk  # the dialect's whole-read path, if it has one

    @property
    def finished(self) -> bool:
        return self.translator.finished

    def _payloads(self, events: list[Any]) -> list[bytes]:
        out: list[bytes] = []
        for ev in events:
            out.extend(feed(self.translator, self.adapter, ev))
        return out

    def feed(self, chunk: bytes) -> bytes:
        if self.fast is not None and self.parser.idle:
            data = self.fast(chunk)
            if data is not None:
                return data
        payloads = self._payloads(self.parser.feed(chunk))
        return frame(payloads) if payloads else b""

    def close(self) -> bytes:
        payloads = self._payloads(self.parser.close())
        return frame(payloads) if payloads else b""

    def end(self) -> bytes:
        return self.done

    def fail(self, err: GatewayError) -> bytes:
        return err.sse_event()

    def settle(self, ctx: RequestContext) -> None:
        if not ctx.take_usage(self.translator.usage):
            ctx.estimated = True
            ctx.completion_tokens = self.translator.content_chunks


class TranslatedOut(ChatOut):
    """Upstream SSE -> chat chunks -> another client API's events (its ``StreamEncoder``)."""

    __slots__ = ("encoder",)

    def __init__(self, adapter: Adapter, translator: StreamTranslator, encoder: StreamEncoder) -> None:
        super().__init__(adapter, translator, b"")
        self.encoder = encoder

    def feed(self, chunk: bytes) -> bytes:
        if self.fast is not None and self.parser.idle:
            data = self.fast(chunk)
            if data is not None:
                # One-line ``data:`` events (JSON holds no raw newline): the payloads by one split.
                return self._encode(data[6:-2].split(b"\n\ndata: ")) if data else b""
        return self._encode(self._payloads(self.parser.feed(chunk)))

    def close(self) -> bytes:
        return self._encode(self._payloads(self.parser.close()))

    def _encode(self, payloads: list[Any]) -> bytes:
        if not payloads:
            return b""
        enc = self.encoder
        if type(payloads[0]) is dict:  # a translator that built its chunks handed them over as they are
            return b"".join([enc.feed(c) for c in payloads])
        # Relayed upstream bytes: one parse for the read's chunks (JSON objects join into one array).
        return b"".join([enc.feed(c) for c in orjson.loads(b"[" + b",".join(payloads) + b"]")])

    def end(self) -> bytes:
        return self.encoder.finish()

    def fail(self, err: GatewayError) -> bytes:
        return self.encoder.fail(err)


class NativeOut:
    """Upstream bytes relayed by the client API's own relay (ids and model rewritten); an error
    event the upstream sends is relayed without the provider's configured secrets."""

    __slots__ = ("adapter", "relay")

    def __init__(self, relay: NativeRelay, adapter: Adapter) -> None:
        self.relay = relay
        self.adapter = adapter

    @property
    def finished(self) -> bool:
        return self.relay.finished

    def feed(self, chunk: bytes) -> bytes:
        return self._clean(self.relay.feed(chunk))

    def close(self) -> bytes:
        return self._clean(self.relay.close())

    def _clean(self, data: bytes) -> bytes:
        if b'"error"' in data and self.adapter.secrets:
            for secret in self.adapter.secrets:
                data = data.replace(secret.encode(), b"[redacted]")
        return data

    def end(self) -> bytes:
        return b""  # the upstream's own terminal event has been relayed

    def fail(self, err: GatewayError) -> bytes:
        return self.relay.fail(err)

    def settle(self, ctx: RequestContext) -> None:
        if not ctx.prompt_tokens and not ctx.completion_tokens:
            ctx.estimated = True


Out = ChatOut | NativeOut


def feed(translator: StreamTranslator, adapter: Adapter, ev: Any) -> list[bytes]:
    """One upstream event through the translator; an event of an unexpected shape is the
    upstream's fault (502), not a gateway crash."""
    try:
        return translator.feed(ev)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise adapter.bad_response(f"a stream event of unexpected shape ({type(e).__name__})") from None


class OpenStream:
    """An upstream stream whose first event has been read (nothing sent to the client yet)."""

    __slots__ = ("chunks", "out", "pending", "resp")

    def __init__(self, resp: Any, out: Out, chunks: Any, pending: bytes) -> None:
        self.resp = resp
        self.out = out
        self.chunks = chunks
        self.pending = pending


async def peek(resp: Any, out: Out, adapter: Adapter) -> OpenStream:
    """Read up to the first event the client will see, so a failure before it can still fall back."""
    chunks = resp.chunks()
    pending = b""
    try:
        async for chunk in chunks:
            pending += out.feed(chunk)
            if pending or out.finished:
                break
        else:
            pending += out.close()
            if not pending and not out.finished:
                raise adapter.bad_response("the stream ended before its first event")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise adapter.bad_response(f"a stream event of unexpected shape ({type(e).__name__})") from None
    return OpenStream(resp, out, chunks, pending)


async def pump(
    ctx: RequestContext, send: Any, dep: Deployment, st: OpenStream, api: Exchange | None, call: CallContext
) -> None:
    """Commit the stream to the client and relay it; the end is sent only after ``api.keep()`` and
    after the thought signatures the answer handed out are kept, so what the answer names is
    readable the moment the client has it."""
    out = st.out
    try:
        ctx.committed = True
        headers = [*SSE_HEADERS, (b"x-request-id", ctx.request_id.encode()), *ctx.headers]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        ctx.status = 200
        ctx.ttft = time.perf_counter()
        data = st.pending
        if not out.finished:
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
                data = b""
            try:
                async for chunk in st.chunks:
                    data = out.feed(chunk)
                    if out.finished:
                        break
                    if data:
                        await send({"type": "http.response.body", "body": data, "more_body": True})
                else:
                    data = out.close()
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
                raise dep.adapter.bad_response(f"a stream event of unexpected shape ({type(e).__name__})") from None
        if not out.finished:
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            raise GatewayError(
                502,
                f"{dep.provider}: the upstream stream ended before its end marker",
                code="upstream_stream_truncated",
                reason="stream_truncated",
            )
        data += out.end()
        if api is not None:
            await api.keep()
        if call.signatures and ctx.state.signatures is not None:
            ctx.state.signatures.remember(call.signatures)  # never waits: Redis is written by a task
        ctx.done = True
        await send({"type": "http.response.body", "body": data, "more_body": False})
    except GatewayError as e:
        # Mid-stream failure: an error event and the end, never a clean end marker.
        dep.adapter.redact(e)
        ctx.status = e.status if e.status >= 500 else 502
        ctx.state.accountant.upstream_error(dep.provider, e.reason)
        ctx.done = True
        await send({"type": "http.response.body", "body": out.fail(e), "more_body": False})
    finally:
        st.resp.close()
        out.settle(ctx)
