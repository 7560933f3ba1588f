"""Files, relayed to the providers that have them (docs/reference.md "Files, fine-tuning jobs and batches").

    POST, GET    /v1/files                      upload (multipart, streamed through), list
    GET, DELETE  /v1/files/{id}                 retrieve, delete
    GET          /v1/files/{id}/content         the bytes, streamed back

Where they go, who sees them and how they are accounted: ``routes/object_api.py``.

Uploads stream: the client's multipart body goes upstream as it arrives, with its own boundary and
length, while the wire's ``MultipartScanner`` reads the part headers and the small fields to
validate ``purpose`` and find the ``file`` part; the file is never held. The head of the body is
held back (at most ``HEAD_MAX``) until ``purpose`` is known, and the OpenAI SDK sends it first, so
a bad purpose costs no upstream call; a purpose sent after the file is checked before the body's
last bytes are forwarded, and a bad one aborts the upstream request. ``server.max_upload_bytes``
bounds uploads (413, reading no further), ``server.max_body_bytes`` the JSON bodies.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import GatewayError, invalid, missing
from gateway.routes.object_api import Call, Collection, FilesTarget, ObjectAPI, declared_length, object_path
from gateway.routes.objects import FILE, rewrite_file
from gateway.wire.asgi import DisconnectWatch, Receive, Scope, Send, too_large
from gateway.wire.multipart import MultipartBody, multipart_boundary
from providers.base import UpstreamRequest

FILES = "/v1/files"
COLLECTION = Collection(FILE, "/files", rewrite_file, 10000)
PURPOSES = ("assistants", "batch", "fine-tune", "vision")  # the purposes OpenAI's files API accepts


def check_purpose(raw: bytes) -> str:
    purpose = raw.decode("utf-8", "replace")
    if purpose not in PURPOSES:
        allowed = ", ".join(f"'{p}'" for p in PURPOSES)
        raise invalid(
            f"Invalid value for 'purpose': expected one of {allowed}, got {purpose[:64]!r}.", "purpose", "invalid_value"
        )
    return purpose


class Upload(MultipartBody):
    """The client's upload body: ``purpose`` validated as soon as it arrives, ``purpose`` and a
    ``file`` part required by the body's end."""

    def __init__(self, receive: Receive, boundary: bytes, limit: int) -> None:
        super().__init__(receive, boundary, limit)
        self.purpose: str | None = None

    def inspect(self) -> None:
        if self.purpose is None and "purpose" in self.scanner.fields:
            self.purpose = check_purpose(self.scanner.fields["purpose"])

    def complete(self) -> None:
        if self.purpose is None:
            raise missing("purpose")
        if "file" not in self.scanner.file_parts:
            raise missing("file")

    def ready(self) -> bool:
        return self.purpose is not None


async def upload(api: ObjectAPI, call: Call, request: Request) -> Response:
    content_type = request.headers.get("content-type", "")
    boundary = multipart_boundary(content_type)
    if boundary is None:
        raise GatewayError(
            400,
            "Uploads must be multipart/form-data (with a boundary) holding the fields 'purpose' and 'file'.",
            code="invalid_content_type",
        )
    target = api.target(call, api.files_provider(call))
    limit = call.state.config.server.max_upload_bytes
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise too_large(limit)
    body = Upload(request.receive, boundary, limit)
    try:
        status, data = await _stream_upload(call, target, body, content_type, declared)
    except GatewayError as e:
        if not body.ended:  # answering before the body's end: don't read the rest
            e.headers = {**e.headers, "connection": "close"}
        raise
    finally:
        api.count_bytes(call, "upload", body.size)
    return await api.created(call, api.payload(call, target, status, data), rewrite_file)


async def _stream_upload(
    call: Call, target: FilesTarget, body: Upload, content_type: str, declared: int | None
) -> tuple[int, bytes]:
    """Forward the multipart body as it arrives; the upstream's status and body."""
    head = await body.head()
    headers = target.headers(content_type=content_type, x_request_id=call.request_id, accept="application/json")
    if declared is not None:
        headers["content-length"] = str(declared)  # the same bytes go on, so the same length
    req = UpstreamRequest("POST", target.url(COLLECTION.path), headers, None)
    try:
        resp = await call.open(target, req, body.stream(head))
        data = await resp.read()
    except GatewayError as e:
        if body.failure is not None:
            raise body.failure from None
        call.upstream_failed(target.name, e)
        raise
    if body.failure is not None:
        raise body.failure
    return resp.status, data


async def delete_file(api: ObjectAPI, call: Call, request: Request) -> Response:
    client_id = request.path_params["id"]
    target, upstream_id, _ = await api.owned(call, FILE, client_id)
    obj = await api.send(call, target, "DELETE", object_path(COLLECTION.path, upstream_id))
    if obj.get("deleted") is True:
        await api.owners.forget(client_id)
    obj["id"] = client_id
    return api.json(call, obj)


async def file_content(api: ObjectAPI, call: Call, request: Request) -> Response:
    target, upstream_id, _ = await api.owned(call, FILE, request.path_params["id"])
    url = target.url(object_path(COLLECTION.path, upstream_id, "/content"))
    req = UpstreamRequest("GET", url, target.headers(x_request_id=call.request_id), None)
    try:
        resp = await call.open(target, req)
    except GatewayError as e:
        call.upstream_failed(target.name, e)
        raise
    if resp.status >= 300:
        try:
            data = await resp.read()
        finally:
            resp.close()
        api.payload(call, target, resp.status, data)  # raises the upstream's error
    return ContentRelay(api, call, resp)


class ContentRelay(Response):
    """A file's bytes streamed from the upstream to the client, chunk by chunk, then accounted.

    A client that goes away stops the relay at once (and the upstream read with it): 499. An
    upstream that fails mid-body makes the response end abruptly (an error escapes to the server,
    which drops the connection), so the client can never take a truncated file for a whole one.
    """

    def __init__(self, api: ObjectAPI, call: Call, resp: Any) -> None:
        super().__init__(status_code=200)
        self.api = api
        self.call = call
        self.upstream = resp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call, resp = self.call, self.upstream
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in call.headers.items()]
        # The upstream client inflates an encoded body, so its length is only the upstream's when unencoded.
        names = (
            "content-type",
            "content-disposition",
            *(() if resp.headers.get("content-encoding") else ("content-length",)),
        )
        for name in names:
            value = resp.headers.get(name)
            if value:
                headers.append((name.encode(), value.encode("latin-1")))
        watcher = DisconnectWatch(receive, asyncio.current_task())
        sent = 0
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for chunk in resp.chunks():
                sent += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            call.status = 200
        except asyncio.CancelledError:
            if not watcher.client_left():
                raise
            call.status = 499
        except GatewayError as e:
            call.status = 502
            call.upstream_failed(call.provider, e)
            raise
        finally:
            watcher.stop()
            resp.close()
            self.api.count_bytes(call, "download", sent)
            call.sync()


def routes(api: ObjectAPI) -> list[Route]:
    return [
        api.route(FILES, FILES, {"POST": partial(upload, api), "GET": partial(api.list_objects, coll=COLLECTION)}),
        api.route(
            FILES + "/{id}", FILES, {"GET": partial(api.relay, coll=COLLECTION), "DELETE": partial(delete_file, api)}
        ),
        api.route(FILES + "/{id}/content", FILES, {"GET": partial(file_content, api)}),
    ]
