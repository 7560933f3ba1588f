"""The README's first five lines, through the running gateway with the official SDK."""

from __future__ import annotations

import openai
import pytest

from tests.e2e.conftest import sdk


def test_readme_calls(gateway):
    c = sdk(gateway)
    r = c.chat.completions.create(model="mock/echo", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "hi"
    chunks = list(
        c.chat.completions.create(
            model="mock/echo",
            messages=[{"role": "user", "content": "a b c"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "a b c"
    assert chunks[-1].usage.completion_tokens == 3
    comp = c.completions.create(model="mock/echo", prompt=["a", "b"], n=2)
    assert [ch.text for ch in comp.choices] == ["a", "a", "b", "b"]
    emb = c.embeddings.create(model="mock/embed", input=["x", "y"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 1536
    ids = [m.id for m in c.models.list()]
    assert "mock/echo" in ids


def test_wrong_key_is_401(gateway):
    c = sdk(gateway, "nope")
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="mock/echo", messages=[{"role": "user", "content": "hi"}])
