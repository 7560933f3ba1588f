"""Keys -> principals and model globs (gateway/pipeline/auth.py), on a plain config dict."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.pipeline.auth import KeyTable
from tests.unit.gateway import cfg


def test_bearer_and_x_api_key():
    t = KeyTable(cfg())
    assert t.authenticate(b"Bearer sk-a", None).name == "a"
    assert t.authenticate(b"bearer  sk-b ", None).name == "b"
    assert t.authenticate(None, b"sk-b").name == "b"
    for auth, x in ((None, None), (b"Bearer nope", None), (b"Basic sk-a", None), (None, b""), (b"Bearer", None)):
        with pytest.raises(GatewayError) as e:
            t.authenticate(auth, x)
        assert e.value.status == 401 and e.value.code == "invalid_api_key"


def test_globs():
    t = KeyTable(cfg())
    a = t.authenticate(b"Bearer sk-a", None)
    assert a.allows("openai/gpt-4o-mini") and a.allows("mock/x") and a.allows("smart")
    assert not a.allows("openai/o1") and not a.allows("fw/llama")
    assert a.may_reach_vendor("openai") and a.may_reach_vendor("mock") and not a.may_reach_vendor("fw")
    b = t.authenticate(None, b"sk-b")
    assert b.allows("anything/at-all") and b.may_reach_vendor("fw")
