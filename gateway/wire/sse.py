"""Server-sent events: an incremental parser for upstream bytes and the framing we write.

The parser follows the WHATWG rules that matter for LLM APIs: events end at a blank line,
``data:`` lines are joined with LF, ``event:`` names the event, ``:`` lines are comments,
one leading space after the colon is dropped, and CR, LF and CRLF all end lines, even when
a CRLF pair is split across two reads. An event larger than ``max_event_bytes`` is an error.
"""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.wire.types import DONE, SSEEvent

__all__ = ["DONE", "SSE_HEADERS", "SSEParser", "frame"]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def frame(payloads: list[bytes]) -> bytes:
    """``data: <payload>\\n\\n`` for each payload, as one buffer for one write."""
    if len(payloads) == 1:
        return b"data: " + payloads[0] + b"\n\n"
    return b"".join(b"data: " + p + b"\n\n" for p in payloads)


class SSEParser:
    __slots__ = ("_buf", "_max", "_pending_cr")

    def __init__(self, max_event_bytes: int = 8 * 1024 * 1024) -> None:
        self._buf = b""
        self._max = max_event_bytes
        self._pending_cr = False

    @property
    def idle(self) -> bool:
        """Nothing held back: the next read starts at an event boundary."""
        return not self._buf and not self._pending_cr

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if b"\r" in chunk or self._pending_cr:
            if self._pending_cr:
                chunk = b"\r" + chunk
                self._pending_cr = False
            if chunk.endswith(b"\r"):
                # The LF of a CRLF may be in the next read.
                chunk = chunk[:-1]
                self._pending_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + chunk if self._buf else chunk
        if b"\n\n" not in buf:
            if len(buf) > self._max:
                raise GatewayError(502, "upstream sent an oversized stream event", code="upstream_bad_response")
            self._buf = buf
            return []
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop()
        if len(self._buf) > self._max:
            raise GatewayError(502, "upstream sent an oversized stream event", code="upstream_bad_response")
        out = []
        for block in blocks:
            ev = _parse_block(block)
            if ev is not None:
                out.append(ev)
        return out

    def close(self) -> list[SSEEvent]:
        """Events left at end of input: a final event without its blank line still counts."""
        block, self._buf = self._buf, b""
        if self._pending_cr:
            self._pending_cr = False
        ev = _parse_block(block.rstrip(b"\n")) if block.strip() else None
        return [ev] if ev is not None else []


def _parse_block(block: bytes) -> SSEEvent | None:
    if block.startswith(b"data: ") and b"\n" not in block:
        return SSEEvent(None, block[6:])  # the common case: one data line
    if block.startswith(b"event: "):
        nl = block.find(b"\n")  # the other common one: a name, then one data line
        if block.startswith(b"data: ", nl + 1) and block.count(b"\n") == 1:
            return SSEEvent(block[7:nl].decode("utf-8", "replace"), block[nl + 7 :])
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line[:1] == b":":
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if not data and event is None:
        return None
    return SSEEvent(event, b"\n".join(data))
