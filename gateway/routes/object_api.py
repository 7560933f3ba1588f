"""What the files, fine-tuning jobs and batches routes share (docs/reference.md "Files, fine-tuning jobs and batches").

The routes are OpenAI's (``routes/files.py``, ``routes/jobs.py``, ``routes/batches.py``), so the
official SDK's ``files``, ``fine_tuning.jobs`` and ``batches`` work unchanged. This module is their
common ground: the provider's API (``FilesTarget``), one request's facts (``Call``), and
``ObjectAPI``, which admits a call, sends JSON upstream, checks ownership and filters lists.

Where a call goes: an upload to the key's ``files_provider``, else to the first provider flagged
``files: true``; a job to the provider of its ``model`` (for an alias, its deployment on the
training file's provider); a batch to its input file's provider; anything named by an id to the
provider inside the id (routes/objects.py). A list goes to the provider of its ``after`` cursor,
else of the ``provider`` query parameter (a gateway extension), else to the key's files provider.
Kinds ``openai`` (OpenAI and compatible servers) and ``azure`` have these APIs; any other kind is
a 400 naming the provider (Fireworks, for one, keeps data in account-scoped datasets and batch
inference jobs of its own shape, https://docs.fireworks.ai/api-reference/create-dataset).

Access: a key sees the objects it made through the gateway and the files made for them; admin
keys see all. Another key's object is 404; lists are filtered to the caller's objects, scanning at
most ``MAX_SCAN_PAGES`` upstream pages per call.

Accounting: one usage record per request with tokens 0, ``endpoint`` the route family
(``/v1/files``, ``/v1/fine_tuning/jobs`` or ``/v1/batches``), so ``switchyard_requests_total``
counts them; bytes go to ``switchyard_file_bytes_total{key,provider,direction}`` (``upload`` or
``download``). These requests count toward a key's ``rpm``, not its token budgets.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.accounting.usage.redis_store import RedisStore
from gateway.config import Limits, ProviderConfig
from gateway.errors import GatewayError, invalid, missing
from gateway.pipeline.frame import CTX, check_json_type
from gateway.pipeline.generation import parse_body
from gateway.pipeline.limits import TeamLimits
from gateway.pipeline.validate import type_error
from gateway.routes.objects import FILE, Kind, MemoryOwners, Owners, RedisOwners, decode_id, encode_id, not_found
from gateway.wire.asgi import ClientGone, dumps, read_body
from providers.base import Adapter, UpstreamRequest, load_json
from providers.registry import make_adapter

if TYPE_CHECKING:
    from gateway.pipeline.auth import Principal
    from gateway.pipeline.frame import RequestContext
    from gateway.pipeline.state import State
    from gateway.wire.upstream import UpstreamResponse

MAX_SCAN_PAGES = 10  # upstream pages one filtered list call may read
SCAN_PAGE = 100  # objects per upstream page when filtering jobs and batches (the batches API's maximum)

Rewrite = Callable[[dict[str, Any], str], list[str]]


@dataclass(frozen=True, slots=True)
class Collection:
    """One relayed collection: its kind of object, its upstream path, how its objects are rewritten
    for the client (routes/objects.py) and how many a list returns when the caller gives no ``limit``."""

    kind: Kind
    path: str
    rewrite: Rewrite
    page_size: int


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

    def upstream_failed(self, provider: str, err: GatewayError) -> GatewayError:
        """``err``, the upstream's fault, counted against ``provider`` (``upstream_errors_total``)."""
        self.state.accountant.upstream_error(provider, err.reason)
        return err

    async def open(
        self, target: FilesTarget, req: UpstreamRequest, body: AsyncIterable[bytes] | None = None
    ) -> UpstreamResponse:
        """Send ``req`` (or stream ``body``) to the target and wait for the response head."""
        cfg = target.cfg
        return await self.state.upstream.send(
            req, target.name, cfg.connect_timeout, cfg.timeout, body=body, max_duration=cfg.max_duration
        )


@dataclass(slots=True)
class PageRequest:
    """One upstream list page: the caller's other parameters, the cursor, the page size."""

    params: list[tuple[str, str]]
    after: str | None
    limit: int | None

    def query(self) -> list[tuple[str, str]]:
        q = list(self.params)
        if self.after:
            q.append(("after", self.after))
        if self.limit:
            q.append(("limit", str(self.limit)))
        return q


@functools.lru_cache(maxsize=256)
def _rpm_only(rpm: int | None) -> Limits:
    return Limits(rpm=rpm)


Handler = Callable[[Call, Request], Awaitable[Response]]


class ObjectAPI:
    """The routes' shared state (the ownership store, the providers' targets) and steps."""

    def __init__(self, gateway: Any) -> None:
        self.gw = gateway  # ``.state`` (swapped on reload), ``._principal``, ``.store``, ``.metrics``
        self.owners: Owners = RedisOwners(gateway.store) if isinstance(gateway.store, RedisStore) else MemoryOwners()
        self._targets: dict[str, FilesTarget] = {}
        self._targets_of: State | None = None

    def route(self, path: str, family: str, handlers: dict[str, Handler]) -> Route:
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

    def json(self, call: Call, obj: Any) -> Response:
        return Response(dumps(obj), 200, headers=call.headers, media_type="application/json")

    def count_bytes(self, call: Call, direction: str, n: int) -> None:
        if self.gw.metrics is not None and n:
            self.gw.metrics.file_bytes(call.who.name, call.provider, direction, n)

    # -- providers ---------------------------------------------------------------------------------
    def target(self, call: Call, provider: str) -> FilesTarget:
        state = call.state
        if self._targets_of is not state:  # a reload: providers may have changed
            self._targets, self._targets_of = {}, state
        t = self._targets.get(provider)
        if t is None:
            cfg = state.config.providers[provider]
            t = self._targets[provider] = FilesTarget(provider, cfg, state.router.adapters[provider])
        call.provider = provider
        return t

    def files_provider(self, call: Call) -> str:
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

    async def send(
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
        try:
            resp = await call.open(target, req)
            try:
                data = await resp.read()
            finally:
                resp.close()
        except GatewayError as e:
            call.upstream_failed(target.name, e)
            raise
        return self.payload(call, target, resp.status, data)

    def payload(self, call: Call, target: FilesTarget, status: int, data: bytes) -> dict[str, Any]:
        adapter = call.state.router.adapters[target.name]
        if status >= 300:
            err = adapter.parse_error(status, data) if status >= 400 else adapter.bad_response(f"HTTP {status}")
            raise call.upstream_failed(target.name, err)
        obj = load_json(data, adapter)
        if not isinstance(obj, dict):
            raise adapter.bad_response("the body is not a JSON object")
        return obj

    # -- ownership ---------------------------------------------------------------------------------
    async def owned(self, call: Call, kind: Kind, client_id: str) -> tuple[FilesTarget, str, str | None]:
        """The target, upstream id and owner of an object the caller may reach; 404 otherwise."""
        decoded = decode_id(kind, client_id, call.state.config.providers)
        if decoded is None:
            raise not_found(kind, client_id)
        owner = (await self.owners.owners([client_id]))[0]
        if owner != call.who.name and not call.who.admin:
            raise not_found(kind, client_id)
        provider, upstream_id = decoded
        return self.target(call, provider), upstream_id, owner

    async def relay(
        self, call: Call, request: Request, coll: Collection, method: str = "GET", action: str = ""
    ) -> Response:
        """``method`` on the object the path names (or its ``action``), relayed rewritten; the files the
        answer names are claimed for the object's owner."""
        target, upstream_id, owner = await self.owned(call, coll.kind, request.path_params["id"])
        obj = await self.send(call, target, method, object_path(coll.path, upstream_id, action))
        made = coll.rewrite(obj, call.provider)
        if made and owner:
            await self.owners.claim(((f, owner) for f in made), keep_existing=True)
        return self.json(call, obj)

    async def created(self, call: Call, obj: dict[str, Any], rewrite: Rewrite) -> Response:
        made = rewrite(obj, call.provider)
        if not isinstance(obj.get("id"), str):
            raise call.state.router.adapters[call.provider].bad_response("the new object has no id")
        await self.owners.claim([(obj["id"], call.who.name), *((f, call.who.name) for f in made)])
        return self.json(call, obj)

    async def input_file(self, call: Call, client_id: str, param: str) -> tuple[str, str]:
        """(provider, upstream id) of a file the caller may use as a job's or batch's input; 400 otherwise."""
        try:
            target, upstream_id, _ = await self.owned(call, FILE, client_id)
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
    async def list_objects(self, call: Call, request: Request, coll: Collection) -> Response:
        provider, cursor = self._list_provider(call, request, coll.kind)
        target = self.target(call, provider)
        q = request.query_params
        params = [(k, v) for k, v in q.multi_items() if k not in ("provider", "after", "limit", "api-version")]
        limit = _positive_int(q.get("limit"), "limit")
        if call.who.admin:
            page = await self.send(call, target, "GET", coll.path, PageRequest(params, cursor, limit).query())
            data, owners = await self._with_owners(call, target, coll.kind, page)
        else:
            scan = None if coll.kind is FILE else max(SCAN_PAGE, limit or 0)  # files: the upstream's default (10,000)
            scan_from = PageRequest(params, cursor, scan)
            data, page = await self._owned_page(call, target, coll, scan_from, limit or coll.page_size)
            owners = [call.who.name] * len(data)
        made = [
            (f, owner) for item, owner in zip(data, owners, strict=True) for f in coll.rewrite(item, provider) if owner
        ]
        if made:
            await self.owners.claim(made, keep_existing=True)
        return self.json(call, _list_body(page, data))

    async def _owned_page(
        self, call: Call, target: FilesTarget, coll: Collection, scan: PageRequest, limit: int
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Up to ``limit`` of the caller's objects, reading pages from ``scan`` until enough or MAX_SCAN_PAGES."""
        kept: list[dict[str, Any]] = []
        page: dict[str, Any] = {}
        for _ in range(MAX_SCAN_PAGES):
            page = await self.send(call, target, "GET", coll.path, scan.query())
            items, owners = await self._with_owners(call, target, coll.kind, page)
            for n, (item, owner) in enumerate(zip(items, owners, strict=True)):
                if owner == call.who.name:
                    kept.append(item)
                    if len(kept) == limit:
                        page["has_more"] = n + 1 < len(items) or page.get("has_more") is True
                        return kept, page
            if page.get("has_more") is not True or not items:
                break
            scan.after = items[-1]["id"]
        return kept, page

    async def _with_owners(
        self, call: Call, target: FilesTarget, kind: Kind, page: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[str | None]]:
        """A list page's objects (those with an id) and the owner of each."""
        items = [i for i in page_data(call, target, page) if isinstance(i, dict) and isinstance(i.get("id"), str)]
        return items, await self.owners.owners([encode_id(kind, target.name, i["id"]) for i in items])

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
        return self.files_provider(call), None


# -- request bodies and parameters -----------------------------------------------------------------
def declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def json_body(call: Call, request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type")
    if ctype is not None:
        check_json_type(ctype.encode("latin-1"))
    return parse_body(await read_body(request.receive, call.state.max_body, declared_length(request)))


def required_str(body: dict[str, Any], param: str) -> str:
    v = body.get(param)
    if v is None:
        raise missing(param)
    if not isinstance(v, str) or not v:
        raise type_error(param, "a non-empty string", v)
    return v


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


def page_data(call: Call, target: FilesTarget, page: dict[str, Any]) -> list[Any]:
    """A list page's ``data``: a list (an absent one is empty); anything else is the upstream's
    fault, 502, never relayed as an empty 200."""
    data = page.get("data")
    if data is None:
        return []
    if not isinstance(data, list):
        err = call.state.router.adapters[target.name].bad_response("a list whose 'data' is not an array")
        raise call.upstream_failed(target.name, err)
    return data


def _list_body(page: dict[str, Any], data: list[dict[str, Any]]) -> dict[str, Any]:
    """An OpenAI list of ``data`` (already rewritten), keeping the upstream page's other fields."""
    out = {**page, "object": page.get("object") or "list", "data": data}
    out["has_more"] = page.get("has_more") is True
    if "first_id" in page or "last_id" in page:
        out["first_id"] = data[0].get("id") if data else None
        out["last_id"] = data[-1].get("id") if data else None
    return out
