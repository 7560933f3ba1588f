"""gateway/pipeline/generation.py's pure parts: the retry backoff, a translator's shape errors."""

from __future__ import annotations

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
