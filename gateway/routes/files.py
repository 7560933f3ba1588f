"""Files, fine-tuning jobs and batches, relayed to the providers that have them (docs/reference.md "Files, fine-tuning jobs and batches").

The routes are OpenAI's, so the official SDK's ``files``, ``fine_tuning.jobs`` and ``batches``
work unchanged::

    POST, GET    /v1/files                      upload (multipart, streamed through), list
    GET, DELETE  /v1/files/{id}                 retrieve, delete
    GET          /v1/files/{id}/content         the bytes, streamed back
    POST, GET    /v1/fine_tuning/jobs           create, list
    GET          /v1/fine_tuning/jobs/{id}      and .../events, .../checkpoints;
    POST         .../{id}/cancel, /pause, /resume
    POST, GET    /v1/batches                    create, list
    GET          /v1/batches/{id}               and POST .../{id}/cancel

Where a call goes: an upload to the key's ``files_provider``, else to the first provider flagged
``files: true``; a job to the provider of its ``model`` (for an alias, its deployment on the
training file's provider); a batch to its input file's provider; anything named by an id to the
provider inside the id (gateway/objects.py). A list goes to the provider of its ``after`` cursor,
else of the ``provider`` query parameter (a gateway extension), else to the key's files provider.
Kinds ``openai`` (OpenAI and compatible servers) and ``azure`` have these APIs; any other kind is
a 400 naming the provider (Fireworks, for one, keeps data in account-scoped datasets and batch
inference jobs of its own shape, https://docs.fireworks.ai/api-reference/create-dataset).

Access: a key sees the objects it made through the gateway and the files made for them; admin
keys see all. Another key's object is 404; lists are filtered to the caller's objects, scanning at
most ``MAX_SCAN_PAGES`` upstream pages per call.

Uploads stream: the client's multipart body goes upstream as it arrives, with its own boundary and
length, while ``MultipartScanner`` reads the part headers and the small fields to validate
``purpose`` and find the ``file`` part; the file is never held. The head of the body is held back
(at most ``HEAD_MAX``) until ``purpose`` is known, and the OpenAI SDK sends it first, so a bad
purpose costs no upstream call; a purpose sent after the file is checked before the body's last
bytes are forwarded, and a bad one aborts the upstream request. ``server.max_upload_bytes`` bounds
uploads (413, reading no further), ``server.max_body_bytes`` the JSON bodies.

Accounting: one usage record per request with tokens 0, ``endpoint`` the route family
(``/v1/files``, ``/v1/fine_tuning/jobs`` or ``/v1/batches``), so ``switchyard_requests_total``
counts them; bytes go to ``switchyard_file_bytes_total{key,provider,direction}`` (``upload`` or
``download``). These requests count toward a key's ``rpm``, not its token budgets.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.accounting.usage.redis_store import RedisStore
from gateway.config import Limits, ProviderConfig
from gateway.errors import GatewayError, invalid, model_not_allowed
from gateway.pipeline.frame import CTX, check_json_type
from gateway.pipeline.generation import parse_body
from gateway.pipeline.limits import TeamLimits
from gateway.pipeline.validate import integer, model_of, type_error
from gateway.routes.objects import (
    BATCH,
    FILE,
    JOB,
    Kind,
    MemoryOwners,
    Owners,
    RedisOwners,
    decode_id,
    encode_id,
    not_found,
    rewrite_batch,
    rewrite_checkpoint,
    rewrite_event,
    rewrite_file,
    rewrite_job,
)
from gateway.wire.asgi import (
    ClientGone,
    DisconnectWatch,
    Receive,
    Scope,
    Send,
    dumps,
    read_body,
    too_large,
)
from providers.base import Adapter, UpstreamRequest, load_json
from providers.registry import make_adapter

if TYPE_CHECKING:
    from gateway.pipeline.auth import Principal
    from gateway.pipeline.frame import RequestContext
    from gateway.pipeline.state import State

FILES = "/v1/files"
JOBS = "/v1/fine_tuning/jobs"
BATCHES = "/v1/batches"

PURPOSES = ("assistants", "batch", "fine-tune", "vision")  # the purposes OpenAI's files API accepts
MAX_SCAN_PAGES = 10  # upstream pages one filtered list call may read
SCAN_PAGE = 100  # objects per upstream page when filtering jobs and batches (the batches API's maximum)
HEAD_MAX = 1024 * 1024  # upload bytes held back while looking for `purpose`
MAX_FIELD = 64 * 1024  # a small form field's value (purpose...) kept by the scanner
MAX_PART_HEADERS = 16 * 1024
SUFFIX_MAX = 64
SEED_MAX = 2147483647

Rewrite = Callable[[dict[str, Any], str], list[str]]


# -- multipart ------------------------------------------------------------------------------------
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
    """Follows a multipart/form-data body as it streams past (RFC 7578), keeping no file content.

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


def check_purpose(raw: bytes) -> str:
    purpose = raw.decode("utf-8", "replace")
    if purpose not in PURPOSES:
        allowed = ", ".join(f"'{p}'" for p in PURPOSES)
        raise invalid(
            f"Invalid value for 'purpose': expected one of {allowed}, got {purpose[:64]!r}.", "purpose", "invalid_value"
        )
    return purpose


def _missing(param: str) -> GatewayError:
    return GatewayError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


class Upload:
    """The client's upload body: read from ASGI, bounded, scanned and validated as it is forwarded."""

    def __init__(self, receive: Receive, boundary: bytes, limit: int) -> None:
        self.receive = receive
        self.scanner = MultipartScanner(boundary)
        self.limit = limit
        self.size = 0
        self.ended = False
        self.purpose: str | None = None
        # Why the stream stopped, kept here because aiohttp wraps what a request body raises.
        self.failure: GatewayError | ClientGone | None = None

    async def next_chunk(self) -> bytes:
        msg = await self.receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone()
        chunk: bytes = msg.get("body", b"")
        self.size += len(chunk)
        if self.size > self.limit:
            raise too_large(self.limit)
        self.scanner.feed(chunk)
        if self.purpose is None and "purpose" in self.scanner.fields:
            self.purpose = check_purpose(self.scanner.fields["purpose"])
        if not msg.get("more_body", False):
            self.ended = True
            self.scanner.finish()
            if self.purpose is None:
                raise _missing("purpose")
            if "file" not in self.scanner.file_parts:
                raise _missing("file")
        return chunk

    async def head(self) -> list[bytes]:
        """Read until ``purpose`` is validated, a file part began, the body ended or HEAD_MAX is held."""
        chunks: list[bytes] = []
        held = 0
        while not self.ended and self.purpose is None and not self.scanner.file_parts and held < HEAD_MAX:
            chunks.append(await self.next_chunk())
            held += len(chunks[-1])
        return chunks

    async def stream(self, head: list[bytes]) -> AsyncIterator[bytes]:
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


# -- where a provider's files API lives ------------------------------------------------------------
class FilesTarget:
    """The URL and credentials of one provider's files, fine-tuning and batch APIs, as its adapter's
    ``files_api()`` gives them; a 400 for a provider that has none."""

    def __init__(self, name: str, cfg: ProviderConfig, adapter: Adapter | None = None) -> None:
        self.name = name
        self.cfg = cfg
        api = (adapter or make_adapter(name, cfg)).files_api()
        if api is None:
            raise GatewayError(
                400,
                f"Provider '{name}' ({cfg.kind}) does not support the files, fine-tuning and batch APIs.",
                code="unsupported_endpoint",
            )
        self.base = api.base
        self._headers = dict(api.headers)
        self._query = list(api.query)

    def url(self, path: str, params: list[tuple[str, str]] | None = None) -> str:
        query = [*(params or ()), *self._query]
        return self.base + path + ("?" + urlencode(query) if query else "")

    def headers(self, **extra: str) -> dict[str, str]:
        return {**self._headers, **{k.replace("_", "-"): v for k, v in extra.items()}}


def object_path(collection: str, upstream_id: str, action: str = "") -> str:
    """``/files/{id}[/action]`` with the id quoted into its own path segment."""
    return f"{collection}/{quote(upstream_id, safe='')}{action}"


# -- one request -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Call:
    """One request's files-side facts, handed back to the frame's context by ``sync``."""

    ctx: RequestContext
    state: State
    request_id: str
    family: str
    principal: Principal | None = None
    provider: str = ""
    model: str = ""
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)  # x-request-id and rate-limit headers

    @property
    def who(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def sync(self) -> None:
        """What the usage record says: the collection path (a bounded label), model, provider, status."""
        ctx = self.ctx
        ctx.route, ctx.model, ctx.provider, ctx.status = self.family, self.model, self.provider, self.status


@functools.lru_cache(maxsize=256)
def _rpm_only(rpm: int | None) -> Limits:
    return Limits(rpm=rpm)


Handler = Callable[[Call, Request], Awaitable[Response]]


class FilesAPI:
    """The routes and their state: the ownership store and the bytes counter."""

    def __init__(self, gateway: Any) -> None:
        self.gw = gateway  # ``.state`` (swapped on reload), ``._principal``, ``.store``, ``.metrics``
        self.owners: Owners = RedisOwners(gateway.store) if isinstance(gateway.store, RedisStore) else MemoryOwners()
        self._targets: dict[str, FilesTarget] = {}
        self._targets_of: State | None = None

    def routes(self) -> list[Route]:
        r = self._route
        return [
            r(FILES, FILES, {"POST": self.upload, "GET": self.list_files}),
            r(FILES + "/{id}", FILES, {"GET": self.get_file, "DELETE": self.delete_file}),
            r(FILES + "/{id}/content", FILES, {"GET": self.file_content}),
            r(JOBS, JOBS, {"POST": self.create_job, "GET": self.list_jobs}),
            r(JOBS + "/{id}", JOBS, {"GET": self.get_job}),
            *(r(f"{JOBS}/{{id}}/{a}", JOBS, {"POST": self.job_action}) for a in ("cancel", "pause", "resume")),
            r(JOBS + "/{id}/events", JOBS, {"GET": self.job_events}),
            r(JOBS + "/{id}/checkpoints", JOBS, {"GET": self.job_checkpoints}),
            r(BATCHES, BATCHES, {"POST": self.create_batch, "GET": self.list_batches}),
            r(BATCHES + "/{id}", BATCHES, {"GET": self.get_batch}),
            r(BATCHES + "/{id}/cancel", BATCHES, {"POST": self.cancel_batch}),
        ]

    def _route(self, path: str, family: str, handlers: dict[str, Handler]) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self._serve(request, family, handlers.get(request.method) or handlers["GET"])

        return Route(path, endpoint, methods=list(handlers))

    # -- inside the frame: admission by rpm, then the handler ----------------------------------------
    async def _serve(self, request: Request, family: str, handler: Handler) -> Response:
        ctx: RequestContext = request.scope[CTX]
        rid = ctx.request_id
        call = Call(ctx, ctx.state, rid, family, ctx.principal, headers={"x-request-id": rid})
        try:
            p = call.who
            team = ctx.state.keys.team_of(p)
            team_rpm = TeamLimits(team.name, _rpm_only(team.limits.rpm)) if team is not None else None
            admission = await ctx.state.limiter.admit(p.name, _rpm_only(p.limits.rpm), 0, team=team_rpm)
            call.headers.update((k.decode(), v.decode()) for k, v in admission.headers)
            response = await handler(call, request)
            call.status = response.status_code
            return response
        except GatewayError as e:
            call.status = e.status
            headers = {**call.headers, **e.headers}
            return Response(e.to_bytes(), e.status, headers=headers, media_type="application/json")
        except ClientGone:
            call.status = 499
            return Response(b"", 499, headers={"connection": "close"})
        finally:
            call.sync()

    def _json(self, call: Call, obj: Any) -> Response:
        return Response(dumps(obj), 200, headers=call.headers, media_type="application/json")

    def count_bytes(self, call: Call, direction: str, n: int) -> None:
        if self.gw.metrics is not None and n:
            self.gw.metrics.file_bytes(call.who.name, call.provider, direction, n)

    # -- providers ---------------------------------------------------------------------------------
    def _target(self, call: Call, provider: str) -> FilesTarget:
        state = call.state
        if self._targets_of is not state:  # a reload: providers may have changed
            self._targets, self._targets_of = {}, state
        t = self._targets.get(provider)
        if t is None:
            cfg = state.config.providers[provider]
            t = self._targets[provider] = FilesTarget(provider, cfg, state.router.adapters[provider])
        call.provider = provider
        return t

    def _files_provider(self, call: Call) -> str:
        """Where the caller's uploads (and lists without a cursor) go."""
        if call.who.files_provider:
            return call.who.files_provider
        for name, cfg in call.state.config.providers.items():
            if cfg.files:
                return name
        raise GatewayError(
            400,
            "No provider is configured for files: flag one with 'files: true' or give this key a 'files_provider'.",
            code="files_not_configured",
        )

    async def _send(
        self,
        call: Call,
        target: FilesTarget,
        method: str,
        path: str,
        params: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One JSON call upstream; an upstream error keeps its status and message (docs/errors.md)."""
        headers = target.headers(x_request_id=call.request_id, accept="application/json")
        if body is not None:
            headers["content-type"] = "application/json"
        req = UpstreamRequest(method, target.url(path, params), headers, dumps(body) if body is not None else None)
        cfg = target.cfg
        try:
            resp = await call.state.upstream.send(
                req, target.name, cfg.connect_timeout, cfg.timeout, max_duration=cfg.max_duration
            )
            try:
                data = await resp.read()
            finally:
                resp.close()
        except GatewayError as e:
            call.state.accountant.upstream_error(target.name, e.reason)
            raise
        return self._payload(call, target, resp.status, data)

    def _payload(self, call: Call, target: FilesTarget, status: int, data: bytes) -> dict[str, Any]:
        adapter = call.state.router.adapters[target.name]
        if status >= 300:
            err = adapter.parse_error(status, data) if status >= 400 else adapter.bad_response(f"HTTP {status}")
            call.state.accountant.upstream_error(target.name, err.reason)
            raise err
        obj = load_json(data, adapter)
        if not isinstance(obj, dict):
            raise adapter.bad_response("the body is not a JSON object")
        return obj

    # -- ownership ---------------------------------------------------------------------------------
    async def _owned(self, call: Call, kind: Kind, client_id: str) -> tuple[FilesTarget, str, str | None]:
        """The target, upstream id and owner of an object the caller may reach; 404 otherwise."""
        decoded = decode_id(kind, client_id, call.state.config.providers)
        if decoded is None:
            raise not_found(kind, client_id)
        owner = (await self.owners.owners([client_id]))[0]
        if owner != call.who.name and not call.who.admin:
            raise not_found(kind, client_id)
        provider, upstream_id = decoded
        return self._target(call, provider), upstream_id, owner

    async def _relay(self, call: Call, obj: dict[str, Any], rewrite: Rewrite, owner: str | None) -> Response:
        made = rewrite(obj, call.provider)
        if made and owner:
            await self.owners.claim(((f, owner) for f in made), keep_existing=True)
        return self._json(call, obj)

    async def _created(self, call: Call, obj: dict[str, Any], rewrite: Rewrite) -> Response:
        made = rewrite(obj, call.provider)
        if not isinstance(obj.get("id"), str):
            raise call.state.router.adapters[call.provider].bad_response("the new object has no id")
        await self.owners.claim([(obj["id"], call.who.name), *((f, call.who.name) for f in made)])
        return self._json(call, obj)

    # -- files -------------------------------------------------------------------------------------
    async def upload(self, call: Call, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        boundary = multipart_boundary(content_type)
        if boundary is None:
            raise GatewayError(
                400,
                "Uploads must be multipart/form-data (with a boundary) holding the fields 'purpose' and 'file'.",
                code="invalid_content_type",
            )
        target = self._target(call, self._files_provider(call))
        limit = call.state.config.server.max_upload_bytes
        declared = _declared_length(request)
        if declared is not None and declared > limit:
            raise too_large(limit)
        body = Upload(request.receive, boundary, limit)
        try:
            status, data = await self._stream_upload(call, target, body, content_type, declared)
        except GatewayError as e:
            if not body.ended:  # answering before the body's end: don't read the rest
                e.headers = {**e.headers, "connection": "close"}
            raise
        finally:
            self.count_bytes(call, "upload", body.size)
        return await self._created(call, self._payload(call, target, status, data), rewrite_file)

    async def _stream_upload(
        self, call: Call, target: FilesTarget, body: Upload, content_type: str, declared: int | None
    ) -> tuple[int, bytes]:
        """Forward the multipart body as it arrives; the upstream's status and body."""
        head = await body.head()
        headers = target.headers(content_type=content_type, x_request_id=call.request_id, accept="application/json")
        if declared is not None:
            headers["content-length"] = str(declared)  # the same bytes go on, so the same length
        req = UpstreamRequest("POST", target.url("/files"), headers, None)
        cfg = target.cfg
        try:
            resp = await call.state.upstream.send(
                req,
                target.name,
                cfg.connect_timeout,
                cfg.timeout,
                body=body.stream(head),
                max_duration=cfg.max_duration,
            )
            data = await resp.read()
        except GatewayError as e:
            if body.failure is not None:
                raise body.failure from None
            call.state.accountant.upstream_error(target.name, e.reason)
            raise
        if body.failure is not None:
            raise body.failure
        return resp.status, data

    async def list_files(self, call: Call, request: Request) -> Response:
        return await self._list(call, request, FILE, "/files", rewrite_file, 10000)

    async def get_file(self, call: Call, request: Request) -> Response:
        target, upstream_id, owner = await self._owned(call, FILE, request.path_params["id"])
        obj = await self._send(call, target, "GET", object_path("/files", upstream_id))
        return await self._relay(call, obj, rewrite_file, owner)

    async def delete_file(self, call: Call, request: Request) -> Response:
        client_id = request.path_params["id"]
        target, upstream_id, _ = await self._owned(call, FILE, client_id)
        obj = await self._send(call, target, "DELETE", object_path("/files", upstream_id))
        if obj.get("deleted") is True:
            await self.owners.forget(client_id)
        obj["id"] = client_id
        return self._json(call, obj)

    async def file_content(self, call: Call, request: Request) -> Response:
        target, upstream_id, _ = await self._owned(call, FILE, request.path_params["id"])
        req = UpstreamRequest(
            "GET",
            target.url(object_path("/files", upstream_id, "/content")),
            target.headers(x_request_id=call.request_id),
            None,
        )
        cfg = target.cfg
        try:
            resp = await call.state.upstream.send(
                req, target.name, cfg.connect_timeout, cfg.timeout, max_duration=cfg.max_duration
            )
        except GatewayError as e:
            call.state.accountant.upstream_error(target.name, e.reason)
            raise
        if resp.status >= 300:
            try:
                data = await resp.read()
            finally:
                resp.close()
            self._payload(call, target, resp.status, data)  # raises the upstream's error
        return ContentRelay(self, call, resp)

    # -- fine-tuning jobs --------------------------------------------------------------------------
    async def create_job(self, call: Call, request: Request) -> Response:
        body = await _json_body(call, request)
        model_of(body)  # a model name longer than any is refused before it is recorded
        model = _required_str(body, "model")
        call.model = model
        training = _required_str(body, "training_file")
        validation = body.get("validation_file")
        if validation is not None and not isinstance(validation, str):
            raise type_error("validation_file", "a string", validation)
        check_job_params(body)
        route = call.state.router.resolve(model)
        if not call.who.allows(model):
            raise model_not_allowed(model)
        provider, body["training_file"] = await self._input_file(call, training, "training_file")
        dep = next((d for d in route.deployments if d.provider == provider), None)
        if dep is None:
            served = ", ".join(sorted({d.provider for d in route.deployments}))
            raise invalid(
                f"The training file is stored on provider '{provider}', but the model '{model}' is served by "
                f"{served}: upload the file to the provider that will train the model.",
                "training_file",
                "file_provider_mismatch",
            )
        if validation is not None:
            vprovider, body["validation_file"] = await self._input_file(call, validation, "validation_file")
            if vprovider != provider:
                raise invalid(
                    f"The validation file is stored on provider '{vprovider}', the training file on '{provider}'.",
                    "validation_file",
                    "file_provider_mismatch",
                )
        body["model"] = dep.target.upstream_model
        target = self._target(call, provider)
        return await self._created(
            call, await self._send(call, target, "POST", "/fine_tuning/jobs", body=body), rewrite_job
        )

    async def list_jobs(self, call: Call, request: Request) -> Response:
        return await self._list(call, request, JOB, "/fine_tuning/jobs", rewrite_job, 20)

    async def get_job(self, call: Call, request: Request) -> Response:
        target, upstream_id, owner = await self._owned(call, JOB, request.path_params["id"])
        obj = await self._send(call, target, "GET", object_path("/fine_tuning/jobs", upstream_id))
        return await self._relay(call, obj, rewrite_job, owner)

    async def job_action(self, call: Call, request: Request) -> Response:
        action = request.url.path.rsplit("/", 1)[1]
        target, upstream_id, owner = await self._owned(call, JOB, request.path_params["id"])
        obj = await self._send(call, target, "POST", object_path("/fine_tuning/jobs", upstream_id, "/" + action))
        return await self._relay(call, obj, rewrite_job, owner)

    async def job_events(self, call: Call, request: Request) -> Response:
        return await self._job_list(call, request, "/events", rewrite_event)

    async def job_checkpoints(self, call: Call, request: Request) -> Response:
        return await self._job_list(call, request, "/checkpoints", rewrite_checkpoint)

    async def _job_list(self, call: Call, request: Request, sub: str, rewrite: Rewrite) -> Response:
        target, upstream_id, _ = await self._owned(call, JOB, request.path_params["id"])
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "api-version"]
        page = await self._send(call, target, "GET", object_path("/fine_tuning/jobs", upstream_id, sub), params)
        for item in _page_data(call, target, page):
            if isinstance(item, dict):
                rewrite(item, target.name)
        return self._json(call, page)

    # -- batches -----------------------------------------------------------------------------------
    async def create_batch(self, call: Call, request: Request) -> Response:
        body = await _json_body(call, request)
        provider, body["input_file_id"] = await self._input_file(
            call, _required_str(body, "input_file_id"), "input_file_id"
        )
        if not call.who.admin and not call.who.may_reach_vendor(provider):
            raise GatewayError(
                403,
                f"This API key may not use provider '{provider}', where the input file is stored.",
                param="input_file_id",
                code="provider_not_allowed",
            )
        target = self._target(call, provider)
        return await self._created(call, await self._send(call, target, "POST", "/batches", body=body), rewrite_batch)

    async def list_batches(self, call: Call, request: Request) -> Response:
        return await self._list(call, request, BATCH, "/batches", rewrite_batch, 20)

    async def get_batch(self, call: Call, request: Request) -> Response:
        target, upstream_id, owner = await self._owned(call, BATCH, request.path_params["id"])
        obj = await self._send(call, target, "GET", object_path("/batches", upstream_id))
        return await self._relay(call, obj, rewrite_batch, owner)

    async def cancel_batch(self, call: Call, request: Request) -> Response:
        target, upstream_id, owner = await self._owned(call, BATCH, request.path_params["id"])
        obj = await self._send(call, target, "POST", object_path("/batches", upstream_id, "/cancel"))
        return await self._relay(call, obj, rewrite_batch, owner)

    async def _input_file(self, call: Call, client_id: str, param: str) -> tuple[str, str]:
        """(provider, upstream id) of a file the caller may use as a job's or batch's input; 400 otherwise."""
        try:
            target, upstream_id, _ = await self._owned(call, FILE, client_id)
        except GatewayError as e:
            if e.status != 404:
                raise
            raise invalid(
                f"Invalid '{param}': no file '{client_id}' was uploaded through this gateway with this key.",
                param,
                "invalid_file_id",
            ) from None
        return target.name, upstream_id

    # -- lists -------------------------------------------------------------------------------------
    async def _list(
        self, call: Call, request: Request, kind: Kind, path: str, rewrite: Rewrite, default_limit: int
    ) -> Response:
        provider, cursor = self._list_provider(call, request, kind)
        target = self._target(call, provider)
        q = request.query_params
        params = [(k, v) for k, v in q.multi_items() if k not in ("provider", "after", "limit", "api-version")]
        limit = _positive_int(q.get("limit"), "limit")
        if call.who.admin:
            page = await self._send(call, target, "GET", path, _page_params(params, cursor, limit))
            data = [i for i in _page_data(call, target, page) if isinstance(i, dict) and isinstance(i.get("id"), str)]
            owners = await self.owners.owners([encode_id(kind, provider, i["id"]) for i in data])
        else:
            scan = None if kind is FILE else max(SCAN_PAGE, limit or 0)  # files: the upstream's default (10,000)
            data, page = await self._owned_page(call, target, kind, path, params, cursor, limit or default_limit, scan)
            owners = [call.who.name] * len(data)
        made = [(f, owner) for item, owner in zip(data, owners, strict=True) for f in rewrite(item, provider) if owner]
        if made:
            await self.owners.claim(made, keep_existing=True)
        return self._json(call, _list_body(page, data))

    async def _owned_page(
        self,
        call: Call,
        target: FilesTarget,
        kind: Kind,
        path: str,
        params: list[tuple[str, str]],
        cursor: str | None,
        limit: int,
        scan: int | None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Up to ``limit`` of the caller's objects, reading pages of ``scan`` until enough or MAX_SCAN_PAGES."""
        kept: list[dict[str, Any]] = []
        page: dict[str, Any] = {}
        for _ in range(MAX_SCAN_PAGES):
            page = await self._send(call, target, "GET", path, _page_params(params, cursor, scan))
            items = [i for i in _page_data(call, target, page) if isinstance(i, dict) and isinstance(i.get("id"), str)]
            owners = await self.owners.owners([encode_id(kind, target.name, i["id"]) for i in items])
            for n, (item, owner) in enumerate(zip(items, owners, strict=True)):
                if owner == call.who.name:
                    kept.append(item)
                    if len(kept) == limit:
                        page["has_more"] = n + 1 < len(items) or page.get("has_more") is True
                        return kept, page
            if page.get("has_more") is not True or not items:
                break
            cursor = items[-1]["id"]
        return kept, page

    def _list_provider(self, call: Call, request: Request, kind: Kind) -> tuple[str, str | None]:
        """The provider a list reads and its upstream cursor: from ``after``, ``provider`` or the key."""
        providers = call.state.config.providers
        after = request.query_params.get("after")
        named = request.query_params.get("provider")
        if after:
            decoded = decode_id(kind, after, providers)
            if decoded is None:
                raise invalid(f"Invalid 'after': '{after}' is not a {kind.name} id issued by this gateway.", "after")
            if named and named != decoded[0]:
                raise invalid(f"'after' belongs to provider '{decoded[0]}', not '{named}'.", "provider")
            return decoded
        if named:
            if named not in providers or not (call.who.admin or call.who.may_reach_vendor(named)):
                raise invalid(f"Unknown provider '{named}'.", "provider", "unknown_provider")
            return named, None
        return self._files_provider(call), None


class ContentRelay(Response):
    """A file's bytes streamed from the upstream to the client, chunk by chunk, then accounted.

    A client that goes away stops the relay at once (and the upstream read with it): 499. An
    upstream that fails mid-body makes the response end abruptly (an error escapes to the server,
    which drops the connection), so the client can never take a truncated file for a whole one.
    """

    def __init__(self, api: FilesAPI, call: Call, resp: Any) -> None:
        super().__init__(status_code=200)
        self.api = api
        self.call = call
        self.upstream = resp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call, resp = self.call, self.upstream
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in call.headers.items()]
        # aiohttp decompresses an encoded body, so its length is only the upstream's when unencoded.
        names = (
            "content-type",
            "content-disposition",
            *(() if resp.headers.get("content-encoding") else ("content-length",)),
        )
        for name in names:
            value = resp.headers.get(name)
            if value:
                headers.append((name.encode(), value.encode("latin-1")))
        task = asyncio.current_task()
        watcher = DisconnectWatch(receive, task)
        sent = 0
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for chunk in resp.chunks():
                sent += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            call.status = 200
        except asyncio.CancelledError:
            if not watcher.gone:
                raise
            if task is not None:
                task.uncancel()
            call.status = 499
        except GatewayError as e:
            call.status = 502
            call.state.accountant.upstream_error(call.provider, e.reason)
            raise
        finally:
            watcher.stop()
            resp.close()
            self.api.count_bytes(call, "download", sent)
            call.sync()


# -- request bodies and parameters -----------------------------------------------------------------
def _declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def _json_body(call: Call, request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type")
    if ctype is not None:
        check_json_type(ctype.encode("latin-1"))
    return parse_body(await read_body(request.receive, call.state.max_body, _declared_length(request)))


def _required_str(body: dict[str, Any], param: str) -> str:
    v = body.get(param)
    if v is None:
        raise _missing(param)
    if not isinstance(v, str) or not v:
        raise type_error(param, "a non-empty string", v)
    return v


def check_job_params(body: dict[str, Any]) -> None:
    """Seed 004's ranges: ``suffix`` 1..64 characters, ``seed`` 0..2147483647."""
    suffix = body.get("suffix")
    if suffix is not None:
        if not isinstance(suffix, str):
            raise type_error("suffix", "a string", suffix)
        if not 1 <= len(suffix) <= SUFFIX_MAX:
            raise invalid(
                f"Invalid 'suffix': string {'too long' if suffix else 'too short'}. Expected a string with "
                f"{'maximum' if suffix else 'minimum'} length {SUFFIX_MAX if suffix else 1}, but got a string "
                f"with length {len(suffix)} instead.",
                "suffix",
                "string_above_max_length" if suffix else "string_below_min_length",
            )
    integer(body, "seed", 0, SEED_MAX)


def _positive_int(raw: str | None, param: str) -> int | None:
    if raw is None:
        return None
    try:
        v = int(raw)
    except ValueError:
        v = 0
    if v < 1:
        raise invalid(f"Invalid '{param}': expected a positive integer, got '{raw}'.", param)
    return v


def _page_data(call: Call, target: FilesTarget, page: dict[str, Any]) -> list[Any]:
    """A list page's ``data``: a list (an absent one is empty); anything else is the upstream's
    fault, 502, never relayed as an empty 200."""
    data = page.get("data")
    if data is None:
        return []
    if not isinstance(data, list):
        err = call.state.router.adapters[target.name].bad_response("a list whose 'data' is not an array")
        call.state.accountant.upstream_error(target.name, err.reason)
        raise err
    return data


def _page_params(params: list[tuple[str, str]], cursor: str | None, limit: int | None) -> list[tuple[str, str]]:
    return [*params, *((("after", cursor),) if cursor else ()), *((("limit", str(limit)),) if limit else ())]


def _list_body(page: dict[str, Any], data: list[dict[str, Any]]) -> dict[str, Any]:
    """An OpenAI list of ``data`` (already rewritten), keeping the upstream page's other fields."""
    out = {**page, "object": page.get("object") or "list", "data": data}
    out["has_more"] = page.get("has_more") is True
    if "first_id" in page or "last_id" in page:
        out["first_id"] = data[0].get("id") if data else None
        out["last_id"] = data[-1].get("id") if data else None
    return out


def routes(gateway: Any) -> list[Route]:
    """The routes to mount in the gateway's router."""
    return FilesAPI(gateway).routes()
