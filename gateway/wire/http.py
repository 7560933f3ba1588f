"""The HTTP/1.1 protocol the gateway is served with: uvicorn's httptools protocol plus the bounds it lacks.

uvicorn with httptools puts no limit on a request's head, no deadline on a head or a body, answers a
malformed request in plain text, and closes idle keep-alive connections the moment a worker stops
(a client sending on one just then sees a reset). This subclass adds, per connection and without
per-request timers on the common path (a request whose head and body arrive together arms none):

- ``server.max_header_bytes``: the request line and headers together; beyond it 431, having fed the
  parser no more than the bound (httptools' parsing of an unterminated head is quadratic).
- ``server.header_timeout``: a head that started must be complete within it (408); a connection
  that never sends a byte is closed silently after it.
- ``server.body_timeout``: the longest wait for the next piece of a request body (408, as nginx's
  ``client_body_timeout``); not counted while the gateway itself has paused reading.
- Errors in OpenAI's shape (the route's shape for a body timeout), then a lingering close: the
  client gets to read the answer before the connection goes.
- Draining (SIGTERM, a rolling reload): every response says ``connection: close`` and an idle
  connection is left to its idle timer instead of being closed under a request that may be on
  its way, so a restart resets no connection.

The limits are read from the app's ``config.server`` when it has one (the gateway), per connection,
so a reload applies to new connections. Tests and ``switchyard serve`` pass this class as uvicorn's
``http``; it is a module-level class so it pickles into the workers of ``--workers N``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.errors import GatewayError
from gateway.wire.asgi import TIMED_OUT

MAX_HEAD_BYTES = 64 * 1024
HEADER_TIMEOUT = 30.0
BODY_TIMEOUT = 60.0
LINGER_SECONDS = 2.0  # after an error answer, input is read and dropped this long at most...
LINGER_BYTES = 1024 * 1024  # ...or this much, so the client reads the answer, not a reset

_HEAD, _BODY = 0, 1


def _gateway_of(app: Any) -> Any:
    """The app below uvicorn's wrappers (proxy headers, trace logging), if it is the gateway."""
    for _ in range(4):
        if hasattr(app, "config") and hasattr(app, "draining"):
            return app
        app = getattr(app, "app", None)
        if app is None:
            break
    return None


class GatewayHTTPProtocol(HttpToolsProtocol):
    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        gw = _gateway_of(self.app)
        srv = getattr(getattr(gw, "config", None), "server", None)
        self.gateway = gw
        self.max_head: int = getattr(srv, "max_header_bytes", MAX_HEAD_BYTES)
        self.header_timeout: float = getattr(srv, "header_timeout", HEADER_TIMEOUT)
        self.body_timeout: float = getattr(srv, "body_timeout", BODY_TIMEOUT)
        self._phase = _HEAD  # reading a head (or waiting for one), or a body
        self._head = 0  # bytes fed to the parser while the head was incomplete
        self._began = False  # a head has started and is not complete
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._draining = False
        self._lingering = False
        self._dropped = 0

    # -- input ---------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        # Never feed the parser more than the bound while a head is incomplete: a head may end
        # inside the allowed part, and the rest is then body (or the next request).
        while self._phase == _HEAD and len(data) > self.max_head - self._head:
            room = self.max_head - self._head
            part, data = data[:room], data[room:]
            self._head = self.max_head
            super().data_received(part)
            if self._lingering or self.transport.is_closing():
                return
            if self._phase == _HEAD and self._began:
                self._refuse(
                    431,
                    f"The request line and headers are larger than {self.max_head} bytes.",
                    "request_header_fields_too_large",
                )
                return
        if self._phase == _HEAD:
            self._head += len(data)
        super().data_received(data)
        if self._lingering:
            return
        if self._phase == _BODY:
            self._arm(self.body_timeout)  # the wait for the next piece starts now
        elif self._began and self._timer is None:
            self._arm(self.header_timeout)  # a head arrived in pieces: its deadline

    # -- parser callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._began = True

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase = _BODY
        self._began = False
        self._head = 0
        if (self._draining or (self.gateway is not None and self.gateway.draining)) and self.cycle is not None:
            self.cycle.keep_alive = False  # the answer says connection: close; nobody reuses it

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = _HEAD  # what follows is the next request's head

    # -- timers --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)  # a connection that never sends is closed after it

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._deadline = when = self.loop.time() + seconds
        t = self._timer
        if t is not None and t.when() > when:
            t.cancel()
            t = None
        if t is None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self._phase == _BODY and self.flow.read_paused:
            self._deadline = now + self.body_timeout  # the gateway itself holds the body back
        if now < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        cycle = self.cycle
        idle = cycle is None or cycle.response_complete
        if self._phase == _BODY:
            self._body_timed_out()
        elif self._began:
            if idle:
                self._refuse(408, f"The request headers did not arrive within {self.header_timeout:g} seconds.")
            else:
                self.transport.close()  # a pipelined head that stalled behind a running request
        elif cycle is None:
            self.transport.close()  # connected, never sent a byte: nothing to answer
        # Otherwise a request is being served (its own timeouts apply) or the connection idles
        # between requests (uvicorn's keep-alive timer closes it).

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        cycle.scope[TIMED_OUT] = True  # type: ignore[literal-required]  # the usage record says 408
        if cycle.response_started:
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.close()
            return
        err = GatewayError(
            408, f"The request body stopped arriving for {self.body_timeout:g} seconds.", code="request_timeout"
        )
        shape = getattr(self.gateway, "errors_for", None)
        status, body = shape(cycle.scope["path"]).answer(err) if shape is not None else (408, err.to_bytes())
        # The app sees a disconnect; its own answer would come too late and is dropped.
        cycle.disconnected = True
        cycle.message_event.set()
        self._write_and_linger(status, body)

    # -- answers on the protocol level -----------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """httptools refused the bytes (uvicorn's answer is plain text): OpenAI's shape instead."""
        self._refuse(400, "Invalid HTTP request received.", "invalid_http_request")

    def _refuse(self, status: int, message: str, code: str | None = None) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A request is still being answered on this connection: it cannot take a second answer.
            cycle.keep_alive = False
            self._lingering = True
            return
        self._write_and_linger(status, GatewayError(status, message, code=code).to_bytes())

    def _write_and_linger(self, status: int, body: bytes) -> None:
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        # Half-close and drop what still comes for a moment: closing with unread input would send
        # a reset, which can destroy the answer before the client reads it.
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    # -- draining --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """The server is stopping: finish what is in flight and let idle connections go by their
        timers, never closing one under a request that may be on its way."""
        self._draining = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
        elif cycle is None and not self._began:
            # Connected but silent: a request normally follows at once; give it the keep-alive time.
            self._arm(min(self.header_timeout, float(self.config.timeout_keep_alive)))
        # A head on its way is answered with connection: close (on_headers_complete); an idle
        # keep-alive connection is closed by uvicorn's keep-alive timer.

    def eof_received(self) -> bool | None:  # type: ignore[override]
        if self._lingering:
            self.transport.close()
        return None
