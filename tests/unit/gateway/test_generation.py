"""gateway/pipeline/generation.py's pure parts: the retry backoff, a translator's shape errors."""

from __future__ import annotations

import orjson
import pytest

from gateway.pipeline.generation import _backoff


def test_backoff():
    assert _backoff(0, 0.25, None, 0.0) == 0.125 and _backoff(0, 0.25, None, 1.0) == 0.25
    assert _backoff(3, 0.25, None, 1.0) == 2.0 and _backoff(10, 0.25, None, 1.0) == 8.0
    assert _backoff(0, 0.25, "2", 0.5) == 2.0 and _backoff(0, 0.25, "120", 0.5) is None
    assert _backoff(1, 0.25, "soon", 0.0) == 0.25


def test_translator_shape_errors_become_502():
    from gateway.config import ProviderConfig
    from gateway.errors import GatewayError
    from gateway.pipeline.relay import feed as _feed
    from providers.base import SSEEvent
    from providers.openai import OpenAIAdapter

    class Broken:
        def feed(self, ev):
            return {}["missing"]

    adapter = OpenAIAdapter("up", ProviderConfig(kind="openai", base_url="http://x/v1"))
    with pytest.raises(GatewayError) as e:
        _feed(Broken(), adapter, SSEEvent(None, b"{}"))
    assert e.value.status == 502 and e.value.code == "upstream_bad_response"


def test_a_native_body_is_measured_by_its_size_only_when_that_is_safe() -> None:
    from types import SimpleNamespace

    from gateway.pipeline.generation import _fits_by_size

    def call(body: dict[str, object], window: int | None, cap: int | None = None) -> bool:
        raw = orjson.dumps(body)
        c = SimpleNamespace(
            body=body, ctx=SimpleNamespace(body=raw), endpoint=SimpleNamespace(overflow_param="max_tokens")
        )
        dep = SimpleNamespace(facts=SimpleNamespace(context_window=window, max_output_tokens=cap))
        return _fits_by_size(c, dep)  # type: ignore[arg-type]

    text = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hello " * 50}]}
    assert call(text, None) and call(text, 10_000)
    assert not call(text, 400)  # bytes + budget reach the window: counted the careful way
    assert not call(text, 10_000, cap=50)  # the budget must be capped: counted the careful way
    image = {
        **text,
        "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "u"}}]}],
    }
    tools = {**text, "tools": [{"name": "f", "input_schema": {"type": "object"}}]}
    assert not call(image, 10_000) and not call(tools, 10_000)  # images and tools count more than their bytes
