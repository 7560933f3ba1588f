"""A ``multipart/form-data`` request body (RFC 7578) followed as it streams past, never held.

``MultipartScanner`` reads the part headers and the small fields' values, keeping no file
content; ``MultipartBody`` reads an ASGI request body chunk by chunk, bounded, scanned and handed
on as it arrives, so an upload can be forwarded with its own boundary and length while the form
is checked. What the form must hold is the caller's to say (``MultipartBody``'s hooks): the wire
knows no API.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from gateway.errors import GatewayError
from gateway.wire.asgi import ClientGone, Receive, too_large

HEAD_MAX = 1024 * 1024  # body bytes held back while waiting for the fields that decide the request
MAX_FIELD = 64 * 1024  # a small form field's value kept by the scanner
MAX_PART_HEADERS = 16 * 1024

_BOUNDARY_RE = re.compile(r'boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', re.IGNORECASE)
_PARAM_RE = re.compile(r';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_SEEK, _AFTER_DELIMITER, _HEADERS, _DONE = range(4)


def multipart_boundary(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` content type, else None."""
    if content_type.partition(";")[0].strip().lower() != "multipart/form-data":
        return None
    m = _BOUNDARY_RE.search(content_type)
    return (m.group(1) or m.group(2)).encode("latin-1") if m else None


def _malformed(why: str) -> GatewayError:
    return GatewayError(400, f"The multipart/form-data body is malformed: {why}.", code="invalid_multipart")


def _disposition(head: bytes) -> dict[str, str]:
    """The Content-Disposition parameters of one part's header block (names lowercased)."""
    for line in head.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-disposition":
            rest = value.decode("utf-8", "replace").partition(";")[2]
            return {k.lower(): v.strip().strip('"') for k, v in _PARAM_RE.findall(";" + rest)}
    raise _malformed("a part has no Content-Disposition header")


class MultipartScanner:
    """Follows a multipart/form-data body as it streams past, keeping no file content.

    ``feed`` takes the body chunk by chunk; between chunks it keeps at most one delimiter's worth
    of bytes, plus the value of the current small field (up to ``MAX_FIELD``). It records each
    non-file field's value in ``fields`` and the names of file parts in ``file_parts``.
    """

    def __init__(self, boundary: bytes) -> None:
        self.delimiter = b"\r\n--" + boundary
        self._buf = b"\r\n"  # so the first delimiter looks like every other one
        self._state = _SEEK
        self._field: str | None = None  # the current part's name when it is a small field
        self._value = bytearray()
        self.fields: dict[str, bytes] = {}
        self.file_parts: list[str] = []

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, chunk: bytes) -> None:
        buf = self._buf + chunk
        while buf and self._state != _DONE:
            if self._state == _SEEK:
                i = buf.find(self.delimiter)
                if i < 0:
                    keep = len(self.delimiter) - 1  # a delimiter may start in the tail
                    if len(buf) > keep:
                        self._take(buf, len(buf) - keep)
                        buf = buf[-keep:]
                    break
                self._take(buf, i)
                self._end_part()
                buf = buf[i + len(self.delimiter) :]
                self._state = _AFTER_DELIMITER
            elif self._state == _AFTER_DELIMITER:
                buf = buf.lstrip(b" \t")  # transport padding
                if len(buf) < 2:
                    break
                if buf[:2] == b"--":
                    self._state = _DONE
                elif buf[:2] == b"\r\n":
                    buf = buf[2:]
                    self._state = _HEADERS
                else:
                    raise _malformed("a boundary is followed by neither CRLF nor '--'")
            else:
                if buf[:2] == b"\r\n":
                    head, buf = b"", buf[2:]
                else:
                    j = buf.find(b"\r\n\r\n")
                    if j < 0:
                        if len(buf) > MAX_PART_HEADERS:
                            raise _malformed("a part's headers are too long")
                        break
                    head, buf = buf[:j], buf[j + 4 :]
                self._begin_part(head)
                self._state = _SEEK
        self._buf = b"" if self._state == _DONE else buf

    def finish(self) -> None:
        """The body ended: it must have been a complete multipart body."""
        if not self.done:
            raise _malformed("it ended before its closing boundary")

    def _begin_part(self, head: bytes) -> None:
        params = _disposition(head)
        name = params.get("name", "")
        if "filename" in params or "filename*" in params:
            self.file_parts.append(name)
            self._field = None
        else:
            self._field = name
            self._value.clear()

    def _take(self, buf: bytes, end: int) -> None:
        """``buf[:end]`` belongs to the current part: kept for a small field, dropped for a file."""
        if self._field is not None and len(self._value) <= MAX_FIELD:
            self._value += buf[: min(end, MAX_FIELD + 1 - len(self._value))]

    def _end_part(self) -> None:
        if self._field is not None:
            self.fields.setdefault(self._field, bytes(self._value))
            self._field = None


class MultipartBody:
    """A multipart request body read from ASGI, bounded (413 past ``limit``, reading no further) and
    scanned as it is forwarded.

    What the form must hold is checked by the hooks a subclass overrides: ``inspect`` after every
    chunk (a bad field fails the stream before the body's last bytes are forwarded), ``complete``
    once the whole body has arrived, ``ready`` when the head need be held back no longer.
    """

    def __init__(self, receive: Receive, boundary: bytes, limit: int) -> None:
        self.receive = receive
        self.scanner = MultipartScanner(boundary)
        self.limit = limit
        self.size = 0
        self.ended = False
        # Why the stream stopped, kept here because the upstream client reports a failed body as its own.
        self.failure: GatewayError | ClientGone | None = None

    def inspect(self) -> None:
        """Checks the fields scanned so far; called after every chunk."""

    def complete(self) -> None:
        """Checks the whole form; called once the body has ended, complete."""

    def ready(self) -> bool:
        """Whether the fields that decide the request are known (``head`` stops holding back)."""
        return False

    async def next_chunk(self) -> bytes:
        msg = await self.receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone()
        chunk: bytes = msg.get("body", b"")
        self.size += len(chunk)
        if self.size > self.limit:
            raise too_large(self.limit)
        self.scanner.feed(chunk)
        self.inspect()
        if not msg.get("more_body", False):
            self.ended = True
            self.scanner.finish()
            self.complete()
        return chunk

    async def head(self) -> list[bytes]:
        """Read until ``ready``, a file part began, the body ended or HEAD_MAX is held."""
        chunks: list[bytes] = []
        held = 0
        while not self.ended and not self.ready() and not self.scanner.file_parts and held < HEAD_MAX:
            chunks.append(await self.next_chunk())
            held += len(chunks[-1])
        return chunks

    async def stream(self, head: list[bytes]) -> AsyncIterator[bytes]:
        """``head``, then the rest of the body as it arrives; a failure is kept in ``failure``."""
        try:
            for chunk in head:
                yield chunk
            while not self.ended:
                chunk = await self.next_chunk()
                if chunk:
                    yield chunk
        except (GatewayError, ClientGone) as e:
            self.failure = e
            raise
