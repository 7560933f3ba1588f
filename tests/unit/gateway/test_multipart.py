"""Unit tests of the streamed multipart reader (gateway/wire/multipart.py): the scanner in any chunking,
its bounds, and the body's hooks.

Multipart bodies are encoded by httpx and aiohttp, not by us (tests/support/multipart.py).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.wire.multipart import MAX_FIELD, MultipartBody, MultipartScanner, multipart_boundary
from tests.support.multipart import aiohttp_body, drain, httpx_body, receiver, split


def scan(body: bytes, content_type: str, step: int) -> MultipartScanner:
    boundary = multipart_boundary(content_type)
    assert boundary is not None
    s = MultipartScanner(boundary)
    for i in range(0, len(body), step):
        s.feed(body[i : i + step])
    s.finish()
    return s


@pytest.mark.parametrize("step", [1, 2, 7, 64, 1000, 1 << 20])
def test_scanner_reads_an_sdk_upload_in_any_chunking(step: int) -> None:
    content = b'{"messages": []}\r\n--not-the-boundary\r\n' * 50 + os.urandom(3000)
    body, ct = httpx_body(purpose="fine-tune", file=("mydata.jsonl", content, "application/jsonl"))
    s = scan(body, ct, step)
    assert s.fields == {"purpose": b"fine-tune"}
    assert s.file_parts == ["file"]
    assert s.done


@pytest.mark.parametrize("step", [1, 5, 333])
def test_scanner_finds_purpose_after_the_file(step: int) -> None:
    body, ct = aiohttp_body([("file", b"x" * 5000, "a.jsonl"), ("purpose", b"batch", None)])
    s = scan(body, ct, step)
    assert s.fields == {"purpose": b"batch"} and s.file_parts == ["file"]


def test_scanner_keeps_only_a_bounded_field_value() -> None:
    body, ct = httpx_body(purpose="p" * (MAX_FIELD * 3), file=("a", b"x", "text/plain"))
    s = scan(body, ct, 4096)
    assert len(s.fields["purpose"]) == MAX_FIELD + 1


def test_scanner_refuses_malformed_bodies() -> None:
    body, ct = httpx_body(purpose="batch", file=("a", b"x", "text/plain"))
    boundary = multipart_boundary(ct)
    assert boundary is not None
    cut = MultipartScanner(boundary)
    cut.feed(body[:-10])
    with pytest.raises(GatewayError) as e:
        cut.finish()
    assert e.value.status == 400 and e.value.code == "invalid_multipart"
    bad = MultipartScanner(boundary)
    with pytest.raises(GatewayError):
        bad.feed(b"--" + boundary + b"\r\nX-No-Disposition: 1\r\n\r\nv\r\n--" + boundary + b"--\r\n")
    garbage = MultipartScanner(boundary)
    with pytest.raises(GatewayError):
        garbage.feed(b"--" + boundary + b"XX" + b"y" * 10)
    huge_headers = MultipartScanner(boundary)
    with pytest.raises(GatewayError):
        huge_headers.feed(b"--" + boundary + b"\r\n" + b"h" * 20000)


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc", b"abc"),
        ('multipart/form-data; boundary="a b:c"', b"a b:c"),
        ("Multipart/Form-Data;charset=utf-8;BOUNDARY=xyz", b"xyz"),
        ("application/json", None),
        ("multipart/mixed; boundary=abc", None),
        ("multipart/form-data", None),
    ],
)
def test_boundary_from_content_type(content_type: str, boundary: bytes | None) -> None:
    assert multipart_boundary(content_type) == boundary


# -- the body: bounded, scanned and handed on as it arrives ----------------------------------------------
class Recording(MultipartBody):
    """Records when the hooks run; ready once ``note`` is known."""

    def __init__(self, receive: Any, boundary: bytes, limit: int) -> None:
        super().__init__(receive, boundary, limit)
        self.calls: list[str] = []

    def inspect(self) -> None:
        self.calls.append("inspect")

    def complete(self) -> None:
        self.calls.append("complete")

    def ready(self) -> bool:
        return "note" in self.scanner.fields


def test_a_plain_body_is_handed_on_whole_and_holds_back_until_a_file_part() -> None:
    body, ct = aiohttp_body([("a", b"1", None), ("file", b"z" * 10_000, "f.jsonl"), ("b", b"2", None)])
    up = MultipartBody(receiver(split(body, 100)), multipart_boundary(ct) or b"", 1 << 20)
    head, out = asyncio.run(drain(up))
    assert up.scanner.file_parts == ["file"] and 1 < len(head) < len(split(body, 100))
    assert b"".join(out) == body and up.size == len(body) and up.ended
    assert up.scanner.fields == {"a": b"1", "b": b"2"} and up.failure is None


def test_hooks_run_after_every_chunk_and_once_at_the_end() -> None:
    body, ct = httpx_body(note="n", file=("a", b"x" * 3000, "text/plain"))
    chunks = split(body, 1000)
    up = Recording(receiver(chunks), multipart_boundary(ct) or b"", 1 << 20)
    head, out = asyncio.run(drain(up))
    assert len(head) == 1  # ``note`` comes first: ready after one chunk
    assert up.calls == ["inspect"] * len(chunks) + ["complete"]
    assert b"".join(out) == body


def test_a_failing_hook_or_a_cut_body_stops_the_stream_and_is_kept() -> None:
    """Past the head, a failure is kept in ``failure`` (aiohttp wraps what a request body raises)."""

    class Refusing(MultipartBody):
        def complete(self) -> None:
            raise GatewayError(400, "no", param="file")

    body, ct = httpx_body(note="n", file=("a", b"x" * 3000, "text/plain"))
    boundary = multipart_boundary(ct) or b""
    refused = Refusing(receiver(split(body, 500)), boundary, 1 << 20)
    with pytest.raises(GatewayError):
        asyncio.run(drain(refused))
    assert isinstance(refused.failure, GatewayError) and refused.failure.param == "file"
    cut = MultipartBody(receiver(split(body[:-10], 500)), boundary, 1 << 20)
    with pytest.raises(GatewayError) as e:
        asyncio.run(drain(cut))
    assert e.value.code == "invalid_multipart" and cut.failure is e.value
