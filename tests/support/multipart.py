"""Multipart request bodies for tests: encoded by httpx and aiohttp (not by us), and fed to a
``MultipartBody`` as ASGI ``receive`` would."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx

from gateway.wire.multipart import MultipartBody


def httpx_body(files_first: bool = False, **fields: Any) -> tuple[bytes, str]:
    """A multipart body as httpx (the OpenAI SDK's transport) encodes it."""
    data = {k: v for k, v in fields.items() if not isinstance(v, tuple)}
    files = {k: v for k, v in fields.items() if isinstance(v, tuple)}
    req = httpx.Request("POST", "http://x/v1/files", data=data, files=files)
    return req.read(), req.headers["content-type"]


def aiohttp_body(parts: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart body in the given part order, as aiohttp encodes it."""

    async def encode() -> tuple[bytes, str]:
        form = aiohttp.FormData(default_to_multipart=True)
        for name, value, filename in parts:
            if filename is None:
                form.add_field(name, value.decode())
            else:
                form.add_field(name, value, filename=filename, content_type="application/jsonl")
        payload = form()

        class Sink:
            def __init__(self) -> None:
                self.out = bytearray()

            async def write(self, b: bytes) -> None:
                self.out += b

        sink = Sink()
        await payload.write(sink)  # type: ignore[arg-type]
        return bytes(sink.out), payload.content_type

    return asyncio.run(encode())


def receiver(chunks: list[bytes], disconnect_after: int | None = None) -> Any:
    msgs = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if disconnect_after is not None:
        msgs = [*msgs[:disconnect_after], {"type": "http.disconnect"}]
    it = iter(msgs)

    async def receive() -> dict[str, Any]:
        return next(it)

    return receive


def split(body: bytes, n: int) -> list[bytes]:
    return [body[i : i + n] for i in range(0, len(body), n)]


async def drain(up: MultipartBody) -> tuple[list[bytes], list[bytes]]:
    head = await up.head()
    out = [c async for c in up.stream(head)]
    return head, out
