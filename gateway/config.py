"""YAML configuration: ``${VAR}`` expansion, then validation into frozen pydantic objects.

Every problem is reported with its dotted path (``keys.0.sha256: ...``) so an operator can
fix a file in one pass; unknown fields are errors because a typo in a limit or a key list
must never pass silently.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from gateway.governance.cost import amount
from providers.registry import KINDS, RESERVED_KINDS, capabilities, kinds_with

DEMO_KEY = "sk-switchyard-demo"
# The longest model name a client may send (400 beyond): names end up in logs, Redis and metrics.
MAX_MODEL_NAME = 256

# The kinds the provider registry knows, and the reserved ones (refused below with a clear message).
ProviderKind = Literal[(*KINDS, *RESERVED_KINDS)]  # type: ignore[valid-type]
OverflowBehavior = Literal["truncate", "error"]
# Runtime key and team names: what usage, metrics and Redis key names show.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_NAME_HELP = "1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"


def check_name(v: str | None) -> str | None:
    """A team or runtime key name (README "Runtime keys and teams"); raises ValueError with the rule."""
    if v is not None and not re.fullmatch(NAME_PATTERN, v):
        raise ValueError(f"must be {_NAME_HELP}")
    return v


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _usd(v: Any, places: str) -> Any:
    """Money in the config: a number >= 0 with at most 6 decimals (whole micro-dollars / pico-dollars)."""
    if v is None:
        return v
    d = amount(v)
    if d != d.quantize(Decimal("0.000001"), rounding=ROUND_DOWN):
        raise ValueError(f"at most 6 decimal places ({places})")
    return d


class BudgetUSD(_Frozen):
    """Spending limits in US dollars per UTC day and per UTC month (README "Model catalog, cost and budgets")."""

    day: Decimal | None = None
    month: Decimal | None = None

    @field_validator("day", "month", mode="before")
    @classmethod
    def _money(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool) and v <= 0:
            raise ValueError("must be greater than 0")
        d = _usd(v, "USD")
        if d is not None and d <= 0:
            raise ValueError("must be greater than 0")
        return d

    @model_validator(mode="after")
    def _some(self) -> BudgetUSD:
        if self.day is None and self.month is None:
            raise ValueError("give 'day', 'month' or both")
        return self


class Limits(_Frozen):
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    tokens_per_day: int | None = Field(default=None, ge=1)
    budget_usd: BudgetUSD | None = None


class PricingConfig(_Frozen):
    """USD per million tokens; each given price overrides the catalog's (README "Model catalog, cost and budgets")."""

    input: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    output: Decimal | None = None

    @field_validator("input", "cached_input", "cache_write", "output", mode="before")
    @classmethod
    def _price(cls, v: Any) -> Any:
        return _usd(v, "USD per million tokens")


class KeyConfig(_Frozen):
    name: str = Field(min_length=1, max_length=128)
    key: SecretStr | None = None
    sha256: str | None = None
    models: tuple[str, ...] = ("*",)
    limits: Limits = Limits()
    admin: bool = False
    files_provider: str | None = None
    team: str | None = None  # usage is also kept per team; ``teams:`` may give it shared limits

    _team_name = field_validator("team")(check_name)

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            raise ValueError("must be a sha256 hex digest (64 hex characters); see `switchyard hash-key`")
        return v.lower() if v else v

    @field_validator("key")
    @classmethod
    def _non_empty_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value():
            raise ValueError("must not be empty")
        return v

    @model_validator(mode="after")
    def _one_secret(self) -> KeyConfig:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of 'key' or 'sha256'")
        return self

    def digest(self) -> str:
        if self.sha256:
            return self.sha256
        assert self.key is not None
        return hashlib.sha256(self.key.get_secret_value().encode()).hexdigest()


class CircuitBreaker(_Frozen):
    failures: int = Field(default=5, ge=1)
    cooldown: float = Field(default=30, gt=0)


class ProviderConfig(_Frozen):
    kind: ProviderKind
    base_url: str | None = None
    api_key: SecretStr | None = None
    # Azure: api-version query value; Anthropic: anthropic-version header value.
    api_version: str | None = None
    # The request's deadline for the upstream's first byte, across retries and fallbacks; then the
    # longest wait between two pieces of the body (README "Limits and timeouts").
    timeout: float = Field(default=600, gt=0)
    # One attempt's share of it (Envoy's per-try timeout); unset: the whole ``timeout``.
    attempt_timeout: float | None = Field(default=None, gt=0)
    # The longest a whole answer may take, first byte to last: an upstream trickling bytes
    # never holds a request forever.
    max_duration: float = Field(default=3600, gt=0)
    connect_timeout: float = Field(default=5, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    retry_backoff: float = Field(default=0.25, gt=0, le=60)  # first backoff (s); doubles, with jitter
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    context_length_exceeded_behavior: OverflowBehavior | None = None
    files: bool = False
    # The Responses API: served by the upstream itself (OpenAI, Azure) or translated through chat.
    responses: Literal["native", "translate"] | None = None
    # Extra static headers for the upstream (e.g. OpenAI-Organization); never client headers.
    headers: dict[str, str] = {}
    # AWS (bedrock) settings.
    region: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None:
            if not re.match(r"^https?://[^\s/]+", v):
                raise ValueError("must be an http:// or https:// URL")
            v = v.rstrip("/")
        return v

    @model_validator(mode="after")
    def _needs_url(self) -> ProviderConfig:
        if self.kind in RESERVED_KINDS:
            # Reserved by the design; refusing it here beats failing at start-up.
            raise ValueError(f"kind '{self.kind}' is not available in this version of Switchyard")
        caps = capabilities(self.kind)  # the per-kind rules are the adapter's own facts
        if self.files and not caps.files:
            raise ValueError(
                f"files: true needs a provider with OpenAI's files API ({', '.join(kinds_with('files'))}), "
                f"not '{self.kind}'"
            )
        if caps.needs_base_url and not self.base_url:
            raise ValueError(f"kind '{self.kind}' needs a base_url")
        return self


class DeploymentConfig(_Frozen):
    provider: str
    upstream: str = Field(min_length=1)
    weight: float = Field(default=1, gt=0)
    rank: int | None = None


class ModelConfig(_Frozen):
    name: str = Field(min_length=1, max_length=MAX_MODEL_NAME)
    upstream: str | None = None
    deployments: tuple[DeploymentConfig, ...] | None = None
    context_window: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    # Used when a provider requires max_tokens (Anthropic) and the request gave none.
    default_max_tokens: int | None = Field(default=None, ge=1)
    tokenizer: str | None = None
    context_length_exceeded_behavior: OverflowBehavior | None = None
    # How deployments of equal rank share load: by weight, or to the one with fewest in flight.
    strategy: Literal["weighted", "least_in_flight"] = "weighted"
    pricing: PricingConfig | None = None

    @model_validator(mode="after")
    def _shape(self) -> ModelConfig:
        if self.deployments is not None:
            if not self.deployments:
                raise ValueError("deployments must not be empty")
            if self.upstream is not None:
                raise ValueError("give either 'upstream' or 'deployments', not both")
        elif "/" not in self.name:
            raise ValueError("a name without 'vendor/' needs 'deployments' (it is an alias)")
        return self


class ServerConfig(_Frozen):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    max_concurrent_requests: int = Field(default=10000, ge=1)
    shutdown_grace: float = Field(default=30, ge=0)
    # After SIGTERM: seconds of answering /readyz with 503 (while still serving) before
    # the listener closes, so load balancers notice; the drain then takes up to shutdown_grace.
    drain_delay: float = Field(default=1.0, ge=0, le=60)
    limits_when_redis_down: Literal["allow", "deny"] = "allow"
    access_log: bool = True
    # The request line and headers together (431 beyond), and how long they may take to arrive
    # (408); then the longest wait between two pieces of a request body (408).
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    header_timeout: float = Field(default=30, gt=0)
    body_timeout: float = Field(default=60, gt=0)


class UsageConfig(_Frozen):
    redis_url: str = ""
    prefix: str = "sy:"
    buffer_size: int = Field(default=100_000, ge=1)
    log_max_len: int = Field(default=1_000_000, ge=1)
    flush_interval: float = Field(default=0.2, gt=0)
    batch_size: int = Field(default=500, ge=1)


class MetricsConfig(_Frozen):
    enabled: bool = True
    # Distinct passthrough model names given their own label before the rest become "other".
    max_passthrough_models: int = Field(default=50, ge=0)


class ResponsesConfig(_Frozen):
    # How long a stored response (``store: true``) stays readable and nameable by previous_response_id.
    ttl: int = Field(default=30 * 86400, ge=60)


class TeamConfig(_Frozen):
    limits: Limits = Limits()  # shared by every key (config or runtime) naming the team


class Config(_Frozen):
    server: ServerConfig = ServerConfig()
    keys: tuple[KeyConfig, ...]
    providers: dict[str, ProviderConfig]
    models: tuple[ModelConfig, ...] = ()
    usage: UsageConfig = UsageConfig()
    metrics: MetricsConfig = MetricsConfig()
    responses: ResponsesConfig = ResponsesConfig()
    teams: dict[str, TeamConfig] = {}

    @field_validator("keys", "providers")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if not v:
            raise ValueError("must list at least one entry")
        return v


class ConfigError(Exception):
    """Raised with every problem found, each as ``PATH: dotted.field: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(node: Any, path: str, env: dict[str, str], problems: list[str], unset: set[str]) -> Any:
    """Expand ``${VAR}`` in string values only, so YAML structure can't be injected.

    A variable that is not set is a problem at its path (kept in ``unset``) and expands to "", so
    validation still runs and reports every other problem of the file in the same pass.
    """
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in env:
                return env[var]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {var} is not set (set it, or write ${{{var}:-default}})")
            unset.add(path)
            return ""

        return _VAR.sub(sub, node)
    if isinstance(node, dict):
        return {k: _expand(v, f"{path}.{k}" if path else str(k), env, problems, unset) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, f"{path}.{i}" if path else str(i), env, problems, unset) for i, v in enumerate(node)]
    return node


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model a location points into (``("keys", 0, "limits")`` -> ``Limits``), if any."""
    t: Any = Config
    for step in (*loc, None):
        while get_origin(t) in (Union, UnionType):  # ``X | None`` -> X
            args = [a for a in get_args(t) if a is not type(None)]
            t = args[0] if len(args) == 1 else None
        if step is None:
            break
        if get_origin(t) is tuple and isinstance(step, int):
            t = get_args(t)[0]
        elif get_origin(t) is dict:
            t = get_args(t)[1]
        elif isinstance(t, type) and issubclass(t, BaseModel) and step in t.model_fields:
            t = t.model_fields[step].annotation
        else:
            return None
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _unknown_field(loc: tuple[Any, ...]) -> str:
    """The message for an unknown field, naming the nearest known one when there is a close one."""
    model = _model_at(loc[:-1])
    known = list(model.model_fields) if model is not None else []
    near = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f"unknown field; did you mean `{near[0]}`?" if near else "unknown field (check the spelling)"


def _validation_problems(e: ValidationError, unset: set[str]) -> list[str]:
    out = []
    for err in e.errors():
        loc = _loc(err["loc"])
        if loc in unset and err["type"] != "extra_forbidden":
            continue  # the unset variable is the problem there, already reported
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = _unknown_field(err["loc"])
        elif err["type"] == "literal_error" and isinstance(err.get("input"), str):
            choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
            near = difflib.get_close_matches(err["input"], choices, n=1, cutoff=0.6)
            msg += f"; did you mean `{near[0]}`?" if near else ""
        out.append(f"{loc}: {msg}" if loc else msg)
    return out


def _reference_problems(data: dict[str, Any]) -> list[str]:
    """Problems between sections (unknown providers, duplicates), checked on the raw data so they
    are found in the same pass as field problems, even when other parts of the file are broken."""
    providers = data.get("providers") if isinstance(data.get("providers"), dict) else {}
    problems: list[str] = []
    for name in providers:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
            problems.append(f"providers.{name}: provider names may hold only letters, digits, '_', '.', '-'")
    teams = data.get("teams") if isinstance(data.get("teams"), dict) else {}
    for name in teams:
        if not re.fullmatch(NAME_PATTERN, str(name)):
            problems.append(f"teams.{name}: team names must be {_NAME_HELP}")
    seen_keys: set[str] = set()
    seen_digests: set[str] = set()
    keys = data.get("keys") if isinstance(data.get("keys"), list) else []
    for i, k in enumerate(keys):
        if not isinstance(k, dict):
            continue
        name = k.get("name")
        if isinstance(name, str) and name:
            if name in seen_keys:
                problems.append(f"keys.{i}.name: duplicate key name '{name}'")
            seen_keys.add(name)
        secret, digest = k.get("key"), k.get("sha256")
        if isinstance(digest, str) and re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            d = digest.lower()
        elif isinstance(secret, str) and secret:
            d = hashlib.sha256(secret.encode()).hexdigest()
        else:
            d = None  # no usable secret: a field problem reported elsewhere
        if d is not None:
            if d in seen_digests:
                problems.append(f"keys.{i}: the same key is configured twice")
            seen_digests.add(d)
        fp = k.get("files_provider")
        if isinstance(fp, str) and fp and fp not in providers:
            problems.append(f"keys.{i}.files_provider: unknown provider '{fp}'")
    seen_models: set[str] = set()
    models = data.get("models") if isinstance(data.get("models"), list) else []
    for i, m in enumerate(models):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not m["name"]:
            continue
        name = m["name"]
        if name in seen_models:
            problems.append(f"models.{i}.name: duplicate model '{name}'")
        seen_models.add(name)
        deployments = m.get("deployments")
        if deployments is None:
            vendor = name.split("/", 1)[0]
            if "/" in name and vendor not in providers:
                problems.append(f"models.{i}.name: unknown provider '{vendor}'")
        elif isinstance(deployments, list):
            for j, d in enumerate(deployments):
                p = d.get("provider") if isinstance(d, dict) else None
                if isinstance(p, str) and p and p not in providers:
                    problems.append(f"models.{i}.deployments.{j}.provider: unknown provider '{p}'")
    return problems


def parse_config(data: Any, source: str = "<config>", env: dict[str, str] | None = None) -> Config:
    """Validate already-parsed YAML data; raise ConfigError listing every problem of it at once."""
    env = dict(os.environ) if env is None else env
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: (root): the config must be a YAML mapping"])
    problems: list[str] = []
    unset: set[str] = set()
    data = _expand(data, "", env, problems, unset)
    cfg: Config | None = None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        problems += _validation_problems(e, unset)
    problems += [p for p in _reference_problems(data) if p not in problems]
    if problems:
        # In the file's order of sections, so the report reads top to bottom.
        order = {str(k): i for i, k in enumerate(data)}
        problems.sort(key=lambda p: order.get(p.split(".", 1)[0].split(":", 1)[0], len(order)))
        raise ConfigError([f"{source}: {p}" for p in problems])
    assert cfg is not None
    return cfg


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{p}: (file): cannot read: {e.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError([f"{p}: {where}: invalid YAML: {getattr(e, 'problem', None) or e}"]) from None
    return parse_config(data, str(p), env)


DEMO_HOST = "127.0.0.1"  # the demo's key is published: it listens on loopback unless --host says otherwise
DEMO_ALIAS = "echo"  # a slash-free name for mock/echo, for clients that split model names on "/"


def default_config() -> Config:
    """The embedded default: the built-in mock provider and one demo key, on loopback."""
    return parse_config(
        {
            "server": {"host": DEMO_HOST},
            "keys": [{"name": "demo", "key": DEMO_KEY}],
            "providers": {"mock": {"kind": "mock", "files": True}},
            "models": [
                {"name": "mock/echo", "context_window": 32768},
                {"name": "mock/embed"},
                {
                    "name": DEMO_ALIAS,
                    "context_window": 32768,
                    "deployments": [{"provider": "mock", "upstream": "echo"}],
                },
            ],
        },
        "<default>",
        env={},
    )


def summary(cfg: Config) -> str:
    return (
        f"ok: {len(cfg.keys)} keys, {len(cfg.providers)} providers "
        f"({', '.join(sorted(cfg.providers))}), {len(cfg.models)} models, "
        f"usage store: {'redis' if cfg.usage.redis_url else 'in-process'}"
    )
