"""gateway/pipeline/signatures.py on plain dicts: which replayed calls lack a signature, how the kept
ones are put back (copy on write, the client's own always winning), and the in-process store."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from gateway.pipeline import signatures
from gateway.pipeline.signatures import SignatureStore, restore, unsigned_ids


def call(cid: Any, sig: str | None = None, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"id": cid, "type": "function", "function": {"name": "f", "arguments": "{}"}, **extra}
    if sig is not None:
        c["extra_content"] = {"google": {"thought_signature": sig}}
    return c


def conversation() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Paris and Rome"},
        {"role": "assistant", "content": None, "tool_calls": [call("call_a"), call("call_b")]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "rain"},
        {"role": "assistant", "content": "Sunny, and rain."},
        {"role": "user", "content": "And Oslo?"},
        {"role": "assistant", "tool_calls": [call("call_c", "mine")]},
        {"role": "tool", "tool_call_id": "call_c", "content": "snow"},
    ]


def signature_of(c: dict[str, Any]) -> str | None:
    return (c.get("extra_content") or {}).get("google", {}).get("thought_signature")


def test_unsigned_ids_are_the_calls_without_a_signature_latest_first():
    assert unsigned_ids(conversation()) == ["call_b", "call_a"]
    assert unsigned_ids([{"role": "user", "content": "hi"}]) == []


def test_unsigned_ids_skip_what_cannot_be_an_id_and_odd_shapes():
    msgs: list[Any] = [
        "not a message",
        {"role": "assistant", "tool_calls": "nope"},
        {"role": "assistant", "tool_calls": [None, call(None), call(7), call(""), call("x" * 257), call("ok")]},
        {"role": "user", "tool_calls": [call("user_calls_are_not_replays")]},
        {"role": "assistant", "tool_calls": [call("empty", "")]},  # an empty signature is none
    ]
    assert unsigned_ids(msgs) == ["empty", "ok"]


def test_unsigned_ids_are_bounded(monkeypatch):
    monkeypatch.setattr(signatures, "MAX_LOOKUPS", 3)
    msgs = [{"role": "assistant", "tool_calls": [call(f"c{i}") for i in range(10)]}]
    assert unsigned_ids(msgs) == ["c9", "c8", "c7"]


def test_restore_puts_each_calls_own_signature_back_and_leaves_the_input_alone():
    msgs = conversation()
    before = copy.deepcopy(msgs)
    out = restore(msgs, {"call_a": "sig-a", "call_b": "sig-b", "call_c": "kept-c"})
    assert out is not None and msgs == before  # copy on write: the client's body stays as sent
    calls = out[2]["tool_calls"]
    assert [signature_of(c) for c in calls] == ["sig-a", "sig-b"]
    assert calls[0]["function"] == before[2]["tool_calls"][0]["function"] and calls[0]["id"] == "call_a"
    assert signature_of(out[7]["tool_calls"][0]) == "mine"  # the client's own signature wins
    assert out[7] is msgs[7] and out[3] is msgs[3]  # untouched messages are shared, not copied


def test_restore_only_what_is_known():
    msgs = conversation()
    out = restore(msgs, {"call_b": "sig-b"})
    assert out is not None
    assert [signature_of(c) for c in out[2]["tool_calls"]] == [None, "sig-b"]
    assert "extra_content" not in out[2]["tool_calls"][0]  # an unknown id goes without: none invented


def test_restore_changes_nothing_without_a_match():
    assert restore(conversation(), {}) is None
    assert restore(conversation(), {"call_z": "s"}) is None
    assert restore(conversation(), {"call_c": "s"}) is None  # signed by the client already


def test_restore_keeps_other_extra_content():
    c = call("call_a", extra_content={"other": {"x": 1}, "google": {"cached": True}})
    out = restore([{"role": "assistant", "tool_calls": [c]}], {"call_a": "sig"})
    assert out is not None
    assert out[0]["tool_calls"][0]["extra_content"] == {
        "other": {"x": 1},
        "google": {"cached": True, "thought_signature": "sig"},
    }


def test_restore_ignores_unhashable_ids():
    msgs: list[Any] = [{"role": "assistant", "tool_calls": [call(["a"]), call({"b": 1})]}]
    assert restore(msgs, {"a": "s"}) is None


def test_in_process_store_remembers_and_restores():
    async def go() -> None:
        store = SignatureStore(None, "sy:")
        store.remember({"call_a": "sig-a"})
        store.remember({"call_b": "sig-b"})
        body: dict[str, Any] = {"model": "gemini/x", "messages": conversation()}
        original = body["messages"]
        await store.restore_into(body)
        assert body["messages"] is not original
        assert [signature_of(c) for c in body["messages"][2]["tool_calls"]] == ["sig-a", "sig-b"]
        assert await store.lookup(["call_a", "call_z"]) == {"call_a": "sig-a"}
        await store.close()  # nothing queued without Redis

    asyncio.run(go())


def test_in_process_store_leaves_a_body_without_unsigned_calls_as_it_is():
    async def go() -> None:
        store = SignatureStore(None, "sy:")
        store.remember({"call_c": "other"})
        for body in ({"prompt": "hi"}, {"messages": "x"}, {"messages": conversation()[-3:]}):
            before = copy.deepcopy(body)
            msgs = body.get("messages")
            await store.restore_into(body)
            assert body == before and body.get("messages") is msgs

    asyncio.run(go())


def test_in_process_store_is_bounded_oldest_first(monkeypatch):
    monkeypatch.setattr(signatures, "MEMORY_MAX", 3)

    async def go() -> None:
        store = SignatureStore(None, "sy:")
        for i in range(5):
            store.remember({f"c{i}": f"s{i}"})
        store.remember({"c2": "s2"})  # used again: now the newest
        store.remember({"c5": "s5"})
        assert await store.lookup([f"c{i}" for i in range(6)]) == {"c2": "s2", "c4": "s4", "c5": "s5"}

    asyncio.run(go())


def test_a_signature_looked_up_is_kept_longest(monkeypatch):
    monkeypatch.setattr(signatures, "MEMORY_MAX", 2)

    async def go() -> None:
        store = SignatureStore(None, "sy:")
        store.remember({"old": "s0"})
        store.remember({"mid": "s1"})
        assert await store.lookup(["old"]) == {"old": "s0"}  # replayed: in use again
        store.remember({"new": "s2"})
        assert await store.lookup(["old", "mid", "new"]) == {"old": "s0", "new": "s2"}

    asyncio.run(go())


def test_key_layout():
    assert SignatureStore(None, "sy:").key("call_1") == "sy:sig:call_1"
