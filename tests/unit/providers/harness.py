"""One provider kind's adapter under test: the helpers every adapter test file used to define for itself.

A test module makes one ``Harness`` and binds the helpers it uses::

    ANTHROPIC = Harness(AnthropicAdapter, "anthropic", "claude-sonnet-4-5", api_key="sk-ant-provider")
    adapter, build, chat, refused = ANTHROPIC.adapter, ANTHROPIC.build, ANTHROPIC.chat, ANTHROPIC.refused

``adapter(**cfg)`` builds the adapter from a ``ProviderConfig``; ``ctx()`` the client's side of a call;
``request``/``build``/``built`` translate a client body (the upstream request, its JSON body, or both
with the context the adapter stashed its extras in); ``refused`` expects a 400 and returns it;
``parse`` translates an upstream answer; ``run_stream`` feeds raw SSE bytes through the gateway's
``SSEParser`` and the adapter's stream translator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from gateway.config import ProviderConfig
from gateway.errors import GatewayError
from gateway.wire.sse import SSEParser
from providers.base import CHAT, Adapter, CallContext, StreamTranslator, Target, UpstreamRequest


@dataclass(frozen=True)
class Harness:
    cls: type[Adapter]
    kind: str
    model: str  # the upstream model a request targets when the test names none
    api_key: str | None = None
    client_model: str | None = None  # the name the client asked for; "<kind>/<model>" by default
    created: int | None = None  # pinned for goldens that compare ``created``
    config: Mapping[str, Any] = field(default_factory=dict)  # other ProviderConfig fields every adapter gets
    reply: Any = None  # the adapter's typed reply state (``CallContext.reply``), built from ``parse``'s extras

    def adapter(self, base_url: str | None = None, **cfg: Any) -> Any:
        settings = {**self.config, **cfg}
        if base_url is not None:
            settings["base_url"] = base_url
        return self.cls(self.kind, ProviderConfig(kind=self.kind, api_key=self.api_key, **settings))

    def ctx(self, model: str | None = None, **kw: Any) -> CallContext:
        """The client's side of a call; with ``model``, the client asked for ``<kind>/<model>``."""
        client_model = (self.client_model or f"{self.kind}/{self.model}") if model is None else f"{self.kind}/{model}"
        if self.created is not None:
            kw.setdefault("created", self.created)
        return CallContext(client_model=client_model, **kw)

    def chat(self, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"model": f"{self.kind}/{self.model}", "messages": messages, **extra}

    def request(
        self,
        body: dict[str, Any],
        endpoint: str = CHAT,
        target: Target | None = None,
        ctx: CallContext | None = None,
        *,
        model: str | None = None,
        **cfg: Any,
    ) -> UpstreamRequest:
        return self.built(body, endpoint, target, ctx, model=model, parse=False, **cfg)[0]

    def build(
        self,
        body: dict[str, Any],
        endpoint: str = CHAT,
        target: Target | None = None,
        ctx: CallContext | None = None,
        *,
        model: str | None = None,
        **cfg: Any,
    ) -> dict[str, Any]:
        """The JSON body the adapter sends upstream."""
        return self.built(body, endpoint, target, ctx, model=model, **cfg)[1]

    def built(
        self,
        body: dict[str, Any],
        endpoint: str = CHAT,
        target: Target | None = None,
        ctx: CallContext | None = None,
        *,
        model: str | None = None,
        parse: bool = True,
        **cfg: Any,
    ) -> tuple[UpstreamRequest, Any, CallContext]:
        """The upstream request, its JSON body and the call context the adapter stashed its extras in."""
        ctx = ctx or self.ctx(model)
        req = self.adapter(**cfg).build_request(
            endpoint, body, target or Target(self.model if model is None else model), ctx
        )
        return req, orjson.loads(req.body) if parse else None, ctx

    def refused(self, body: dict[str, Any], endpoint: str = CHAT, param: str | None = None) -> GatewayError:
        """The 400 the adapter answers ``body`` with (naming ``param``, when given)."""
        with pytest.raises(GatewayError) as e:
            self.build(body, endpoint)
        assert e.value.status == 400 and (param is None or e.value.param == param), (
            e.value.status,
            e.value.param,
            e.value.message,
        )
        return e.value

    def parse(self, payload: Any, endpoint: str = CHAT, ctx: CallContext | None = None, **extra: Any) -> dict[str, Any]:
        """The upstream answer ``payload`` as the client gets it; ``extra`` as an adapter stashed it."""
        ctx = ctx or (self.ctx(reply=self.reply(**extra)) if extra else self.ctx())
        return self.adapter().parse_response(endpoint, orjson.dumps(payload), ctx)

    def run_stream(
        self, raw: bytes, ctx: CallContext | None = None, step: int | None = None, endpoint: str = CHAT
    ) -> tuple[list[dict[str, Any]], StreamTranslator]:
        """Feed ``raw`` in ``step``-byte pieces (whole if None) through SSEParser and the translator."""
        parser, tr = SSEParser(), self.adapter().stream_translator(endpoint, ctx or self.ctx())
        out: list[bytes] = []
        step = step or max(len(raw), 1)
        for i in range(0, len(raw), step):
            for ev in parser.feed(raw[i : i + step]):
                out.extend(tr.feed(ev))
        for ev in parser.close():
            out.extend(tr.feed(ev))
        return [orjson.loads(p) for p in out], tr
