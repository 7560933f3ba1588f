"""YAML configuration: ``${VAR}`` expansion, then validation into frozen pydantic objects.

Every problem is reported with its dotted path (``keys.0.sha256: ...``) so an operator can
fix a file in one pass; unknown fields are errors because a typo in a limit or a key list
must never pass silently.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

DEMO_KEY = "sk-switchyard-demo"
# The longest model name a client may send (400 beyond): names end up in logs, Redis and metrics.
MAX_MODEL_NAME = 256

ProviderKind = Literal["openai", "azure", "fireworks", "anthropic", "gemini", "cohere", "bedrock", "mock"]
OverflowBehavior = Literal["truncate", "error"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Frozen):
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    tokens_per_day: int | None = Field(default=None, ge=1)


class KeyConfig(_Frozen):
    name: str = Field(min_length=1, max_length=128)
    key: SecretStr | None = None
    sha256: str | None = None
    models: tuple[str, ...] = ("*",)
    limits: Limits = Limits()
    admin: bool = False
    files_provider: str | None = None

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
    # longest wait between two pieces of the body (DESIGN "Provider timeouts").
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
        if self.kind == "bedrock":
            # Reserved by the design; refusing it here beats failing at start-up.
            raise ValueError("kind 'bedrock' is not available in this version of Switchyard")
        if self.files and self.kind not in ("openai", "azure", "mock"):
            raise ValueError(
                f"files: true needs a provider with OpenAI's files API (openai, azure, mock), not '{self.kind}'"
            )
        if self.kind in ("openai", "azure") and not self.base_url:
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


class Config(_Frozen):
    server: ServerConfig = ServerConfig()
    keys: tuple[KeyConfig, ...]
    providers: dict[str, ProviderConfig]
    models: tuple[ModelConfig, ...] = ()
    usage: UsageConfig = UsageConfig()
    metrics: MetricsConfig = MetricsConfig()
    responses: ResponsesConfig = ResponsesConfig()

    @field_validator("keys", "providers")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if not v:
            raise ValueError("must list at least one entry")
        return v

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[str] = []
        for name in self.providers:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                problems.append(f"providers.{name}: provider names may hold only letters, digits, '_', '.', '-'")
        seen_keys: set[str] = set()
        seen_digests: set[str] = set()
        for i, k in enumerate(self.keys):
            if k.name in seen_keys:
                problems.append(f"keys.{i}.name: duplicate key name '{k.name}'")
            seen_keys.add(k.name)
            d = k.digest()
            if d in seen_digests:
                problems.append(f"keys.{i}: the same key is configured twice")
            seen_digests.add(d)
            if k.files_provider is not None and k.files_provider not in self.providers:
                problems.append(f"keys.{i}.files_provider: unknown provider '{k.files_provider}'")
        seen_models: set[str] = set()
        for i, m in enumerate(self.models):
            if m.name in seen_models:
                problems.append(f"models.{i}.name: duplicate model '{m.name}'")
            seen_models.add(m.name)
            if m.deployments is None:
                vendor = m.name.split("/", 1)[0]
                if vendor not in self.providers:
                    problems.append(f"models.{i}.name: unknown provider '{vendor}'")
            else:
                for j, d in enumerate(m.deployments):
                    if d.provider not in self.providers:
                        problems.append(f"models.{i}.deployments.{j}.provider: unknown provider '{d.provider}'")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class ConfigError(Exception):
    """Raised with every problem found, each as ``PATH: dotted.field: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(node: Any, path: str, env: dict[str, str], problems: list[str]) -> Any:
    """Expand ``${VAR}`` in string values only, so YAML structure can't be injected."""
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in env:
                return env[var]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {var} is not set")
            return ""

        return _VAR.sub(sub, node)
    if isinstance(node, dict):
        return {k: _expand(v, f"{path}.{k}" if path else str(k), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, f"{path}.{i}" if path else str(i), env, problems) for i, v in enumerate(node)]
    return node


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_config(data: Any, source: str = "<config>", env: dict[str, str] | None = None) -> Config:
    """Validate already-parsed YAML data; raise ConfigError listing every problem."""
    env = dict(os.environ) if env is None else env
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: (root): the config must be a YAML mapping"])
    problems: list[str] = []
    data = _expand(data, "", env, problems)
    if problems:
        raise ConfigError([f"{source}: {p}" for p in problems])
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        out = []
        for err in e.errors():
            loc = _loc(err["loc"])
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling)"
            for line in msg.split("\n"):
                # Root-level (cross-reference) problems already carry their own path.
                out.append(f"{source}: {line}" if not loc else f"{source}: {loc}: {line}")
        raise ConfigError(out) from None


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


def default_config() -> Config:
    """The embedded default: the built-in mock provider and one demo key."""
    return parse_config(
        {
            "keys": [{"name": "demo", "key": DEMO_KEY}],
            "providers": {"mock": {"kind": "mock", "files": True}},
            "models": [
                {"name": "mock/echo", "context_window": 32768},
                {"name": "mock/embed"},
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
