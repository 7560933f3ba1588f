"""The admin key API (README "Runtime keys and teams"): runtime keys created, listed, changed, rotated and
revoked without a reload, and the audit trail of those changes.

    POST   /admin/keys                 create; 201 with the key, shown this once
    GET    /admin/keys                 config keys (``"source": "config"``) and runtime keys
    GET    /admin/keys/{name}
    PATCH  /admin/keys/{name}          models, limits, team, expires_at, metadata, disabled, files_provider
    DELETE /admin/keys/{name}          revoke
    POST   /admin/keys/{name}/rotate   {"grace_seconds"}: a new key; the old one works for the grace period
    GET    /admin/audit                ?limit=&before=: changes, newest first

Admin keys only (403 ``permission_error``). Bodies are validated strictly (a string is not a number,
unknown fields are refused): 400 with ``param`` naming the field. Config keys are read-only here
(409: change the file). No answer ever holds a digest, nor a key except the one just made.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config import Limits, check_name
from gateway.errors import GatewayError, forbidden, invalid
from gateway.governance.keystore import KeyStore, RuntimeKey
from gateway.pipeline.auth import Principal
from gateway.pipeline.frame import CTX, RequestContext
from gateway.routes.common import json_response

MAX_BODY = 64 * 1024
MAX_MODELS = 256
MAX_GLOB = 256
MAX_METADATA = 16  # OpenAI's metadata rules: 16 pairs, keys up to 64 characters, values up to 512
MAX_GRACE = 30 * 86_400
MAX_AUDIT = 1000
LATEST_EXPIRY = 253_402_300_799  # 9999-12-31T23:59:59Z

M = TypeVar("M", bound=BaseModel)


def parse_time(v: Any) -> float | None:
    """``expires_at``: RFC 3339 with a time zone (``2027-06-30T00:00:00Z``) or unix seconds."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise ValueError("must be an RFC 3339 date-time or unix seconds")
    if isinstance(v, int | float):
        ts = float(v)
    else:
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            raise ValueError("must be an RFC 3339 date-time (e.g. 2027-06-30T00:00:00Z) or unix seconds") from None
        if dt.tzinfo is None or "T" not in v.upper():
            raise ValueError("must be an RFC 3339 date-time with a time zone, e.g. 2027-06-30T00:00:00Z")
        ts = dt.timestamp()
    if not 0 < ts <= LATEST_EXPIRY:
        raise ValueError("is out of range")
    if ts <= time.time():
        raise ValueError("is in the past")
    return ts


def _check_models(v: list[str]) -> list[str]:
    if not v:
        raise ValueError('must list at least one model pattern (use ["*"] for all)')
    if len(v) > MAX_MODELS:
        raise ValueError(f"may list at most {MAX_MODELS} patterns")
    for g in v:
        if not g or len(g) > MAX_GLOB:
            raise ValueError(f"patterns must be 1-{MAX_GLOB} characters")
    return v


def _check_metadata(v: dict[str, str]) -> dict[str, str]:
    if len(v) > MAX_METADATA:
        raise ValueError(f"may hold at most {MAX_METADATA} pairs")
    for k, val in v.items():
        if not k or len(k) > 64:
            raise ValueError("keys must be 1-64 characters")
        if len(val) > 512:
            raise ValueError("values must be at most 512 characters")
    return v


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class KeyCreate(_Body):
    name: str
    models: list[str] = ["*"]
    limits: Limits = Limits()
    team: str | None = None
    expires_at: int | float | str | None = None
    metadata: dict[str, str] = {}
    files_provider: str | None = None

    _name = field_validator("name")(check_name)
    _team = field_validator("team")(check_name)
    _models = field_validator("models")(_check_models)
    _metadata = field_validator("metadata")(_check_metadata)
    _expires = field_validator("expires_at")(parse_time)


class KeyPatch(_Body):
    models: list[str] | None = None
    limits: Limits | None = None
    team: str | None = None
    expires_at: int | float | str | None = None
    metadata: dict[str, str] | None = None
    disabled: bool | None = None
    files_provider: str | None = None

    _team = field_validator("team")(check_name)
    _expires = field_validator("expires_at")(parse_time)

    @field_validator("models", "limits", "metadata", "disabled")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("must not be null")
        return v

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        return _check_models(v)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_metadata(v)


class Rotate(_Body):
    grace_seconds: int = Field(default=0, ge=0, le=MAX_GRACE)


def _bad_input(e: ValidationError) -> GatewayError:
    err = e.errors()[0]
    param = ".".join(str(p) for p in err["loc"]) or None
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return GatewayError(400, f"Unknown field '{param}'.", param=param, code="unknown_parameter")
    if err["type"] == "missing":
        return GatewayError(400, f"Missing required field '{param}'.", param=param, code="missing_required_parameter")
    return GatewayError(400, f"Invalid '{param}': {msg}.", param=param, code="invalid_value")


def config_view(p: Principal) -> dict[str, Any]:
    """A config key as the admin API shows it (read-only; never its digest)."""
    return {
        "object": "key",
        "name": p.name,
        "source": "config",
        "status": "active",
        "admin": p.admin,
        "team": p.team,
        "models": list(p.globs),
        "limits": p.limits.model_dump(exclude_none=True),
        "expires_at": None,
        "disabled": False,
        "metadata": {},
        "files_provider": p.files_provider,
    }


def runtime_view(k: RuntimeKey, secret: str | None = None) -> dict[str, Any]:
    view = k.public()
    view["admin"] = False
    if secret is not None:
        view = {"object": "key", "name": k.name, "key": secret, **view}
    return view


class KeysRoutes:
    def __init__(self, gw: Any) -> None:
        self.gw = gw  # the composition root: ``keystore``, ``state`` (config keys, providers)

    def routes(self) -> list[Route]:
        return [
            Route("/admin/keys", self.collection, methods=["GET", "POST"]),
            Route("/admin/keys/{name}", self.item, methods=["GET", "PATCH", "DELETE"]),
            Route("/admin/keys/{name}/rotate", self.rotate, methods=["POST"]),
            Route("/admin/audit", self.audit, methods=["GET"]),
        ]

    @property
    def store(self) -> KeyStore:
        return self.gw.keystore

    def _config_keys(self) -> dict[str, Principal]:
        return self.gw.state.keys.by_name

    # -- routes -------------------------------------------------------------------------------
    async def collection(self, request: Request) -> Response:
        ctx = _admin(request)
        if request.method == "POST":
            return await self._create(ctx, request)
        team = request.query_params.get("team")
        config = self._config_keys()
        data = [config_view(p) for p in config.values()]
        for k in self.store.entries():
            view = runtime_view(k)
            if k.name in config:
                view["status"] = "shadowed"  # a config key took its name after it was made: it cannot authenticate
            data.append(view)
        if team is not None:
            data = [d for d in data if d["team"] == team]
        return json_response(ctx, 200, {"object": "list", "data": data})

    async def item(self, request: Request) -> Response:
        ctx = _admin(request)
        name = request.path_params["name"]
        config = self._config_keys().get(name)
        if request.method == "GET":
            if config is not None:
                return json_response(ctx, 200, config_view(config))
            key = self.store.get(name)
            if key is None:
                raise _no_key(name)
            return json_response(ctx, 200, runtime_view(key))
        if request.method == "DELETE":
            # A runtime key shadowed by a config key of the same name may still be removed.
            if config is not None and self.store.get(name) is None:
                raise _config_key(name)
            await self.store.revoke(name, ctx.who.name)
            return json_response(ctx, 200, {"object": "key.deleted", "name": name, "deleted": True})
        if config is not None:
            raise _config_key(name)
        patch = _validated(KeyPatch, await _body(request))
        changes = {f: getattr(patch, f) for f in patch.model_fields_set}
        if not changes:
            raise GatewayError(400, "Give at least one field to change.", code="invalid_value")
        if "models" in changes:
            changes["models"] = tuple(changes["models"])
        self._check_provider(changes.get("files_provider"))
        key = await self.store.update(name, changes, ctx.who.name)
        return json_response(ctx, 200, runtime_view(key))

    async def _create(self, ctx: RequestContext, request: Request) -> Response:
        spec = _validated(KeyCreate, await _body(request))
        if spec.name in self._config_keys():
            raise GatewayError(
                409, f"A config key is named '{spec.name}'; choose another name.", param="name", code="key_exists"
            )
        self._check_provider(spec.files_provider)
        draft = RuntimeKey(
            name=spec.name,
            digest="",
            models=tuple(spec.models),
            limits=spec.limits,
            team=spec.team,
            expires_at=spec.expires_at if isinstance(spec.expires_at, float) else None,  # parse_time made it
            metadata=spec.metadata,
            files_provider=spec.files_provider,
        )
        key, secret = await self.store.create(draft, ctx.who.name)
        return json_response(ctx, 201, runtime_view(key, secret), {"cache-control": "no-store"})

    async def rotate(self, request: Request) -> Response:
        ctx = _admin(request)
        name = request.path_params["name"]
        if name in self._config_keys():
            raise _config_key(name)
        raw = await _body(request)
        spec = _validated(Rotate, raw) if raw.strip() else Rotate()
        key, secret = await self.store.rotate(name, spec.grace_seconds, ctx.who.name)
        return json_response(ctx, 200, runtime_view(key, secret), {"cache-control": "no-store"})

    async def audit(self, request: Request) -> Response:
        ctx = _admin(request)
        q = request.query_params
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_AUDIT:
            raise GatewayError(400, f"'limit' must be 1-{MAX_AUDIT}.", param="limit", code="invalid_value")
        before = q.get("before")
        if before is not None and not re.fullmatch(r"\d{1,20}-\d{1,20}", before):
            raise GatewayError(400, "'before' must be an audit entry id.", param="before", code="invalid_value")
        rows, more = await self.store.audit(limit, before)
        return json_response(ctx, 200, {"object": "list", "data": rows, "has_more": more})

    def _check_provider(self, name: str | None) -> None:
        if name is not None and name not in self.gw.state.config.providers:
            raise invalid(f"Invalid 'files_provider': unknown provider '{name}'.", "files_provider", "invalid_value")


def _admin(request: Request) -> RequestContext:
    ctx: RequestContext = request.scope[CTX]
    if not ctx.who.admin:
        raise forbidden("Managing keys needs an admin key.")
    return ctx


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise GatewayError(413, f"The body is larger than {MAX_BODY} bytes.", code="request_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise GatewayError(413, f"The body is larger than {MAX_BODY} bytes.", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _validated(model: type[M], raw: bytes) -> M:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError(400, "The body must be a JSON object.", code="invalid_json") from None
    if not isinstance(obj, dict):
        raise GatewayError(400, "The body must be a JSON object.", code="invalid_json")
    try:
        return model.model_validate(obj, strict=True)
    except ValidationError as e:
        raise _bad_input(e) from None


def _no_key(name: str) -> GatewayError:
    return GatewayError(404, f"No key named '{name}'.", param="name", code="key_not_found")


def _config_key(name: str) -> GatewayError:
    why = f"Key '{name}' is defined in the config file; change it there (and reload)."
    return GatewayError(409, why, param="name", code="config_key")
