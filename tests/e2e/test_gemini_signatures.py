"""Gemini tool loops whose client drops the thought signatures (langchain-openai and the Vercel AI SDK
do): the gateway keeps each one it handed out and puts it back (gateway/pipeline/signatures.py).

The simulated Gemini refuses a replayed ``functionCall`` without its ``thoughtSignature`` (400, as
Gemini 3 does), so turn two succeeding means the signature reached it; the tests also read what it
received. Clients: the official openai SDK (chat and Responses) and the anthropic SDK (Messages).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anthropic
import openai
import pytest
import redis

from gateway.accounting.usage.redis_store import RedisStore
from gateway.config import UsageConfig
from gateway.pipeline.signatures import TTL, SignatureStore
from simulators.gemini import SIGNATURE_PREFIX
from tests.e2e.conftest import CLIENT_KEY, GatewayFor, Upstream, base_config, provider_for, sdk
from tests.support import wait_until
from tests.support.redis import REDIS_URL, RedisProcess, SilentListener
from tests.support.servers import ServerThread

MODEL = "gemini/gemini-3-pro-preview"
PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}]


@pytest.fixture(scope="module")
def dialect() -> str:
    return "gemini"


def config(upstream: Upstream, redis_url: str = "", prefix: str = "") -> dict[str, Any]:
    cfg = base_config()
    cfg["providers"]["gemini"] = provider_for("gemini", upstream.url, retries=0)
    if redis_url:
        cfg["usage"] = {"redis_url": redis_url, "prefix": prefix}
    return cfg


def first_turn(client: openai.OpenAI, stream: bool) -> tuple[dict[str, Any], str]:
    """Turn one: the tool call as a client that drops ``extra_content`` keeps it, and the signature
    the gateway handed out with it."""
    messages: Any = [{"role": "user", "content": "Paris"}]
    if stream:
        chunks = list(client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, stream=True))
        (call,) = [tc.to_dict() for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        call.pop("index")
    else:
        r = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
        (tc,) = r.choices[0].message.tool_calls or []
        call = tc.to_dict()
    signature = call.pop("extra_content")["google"]["thought_signature"]
    assert signature.startswith(SIGNATURE_PREFIX) and call["function"]["name"] == "get_weather"
    return call, signature


def second_turn(client: openai.OpenAI, call: dict[str, Any], stream: bool) -> str:
    """Turn two replays the call without its signature, with the tool's result; the answer's text."""
    messages: Any = [
        {"role": "user", "content": "Paris"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 21}'},
    ]
    if stream:
        chunks = list(client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, stream=True))
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    assert r.choices[0].finish_reason == "stop"
    return r.choices[0].message.content or ""


def replayed_signature(upstream: Upstream) -> str | None:
    """The signature on the replayed function call of the last request the simulator received."""
    contents = upstream.app.requests[-1]["body"]["contents"]
    (model_turn,) = [c for c in contents if c["role"] == "model"]
    (part,) = [p for p in model_turn["parts"] if "functionCall" in p]
    return part.get("thoughtSignature")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_in_process(upstream: Upstream, gateway_for: GatewayFor, stream: bool) -> None:
    client = sdk(gateway_for(config(upstream)))
    call, signature = first_turn(client, stream)
    assert "21" in second_turn(client, call, stream)
    assert replayed_signature(upstream) == signature


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_in_redis_across_replicas(
    upstream: Upstream, gateway_for: GatewayFor, shared_redis: redis.Redis, redis_prefix: str, stream: bool
) -> None:
    # Two replicas sharing one Redis: the replay reaches the one that never saw the answer.
    cfg = config(upstream, REDIS_URL, redis_prefix)
    one, two = sdk(gateway_for(cfg)), sdk(gateway_for(cfg))
    call, signature = first_turn(one, stream)
    key = f"{redis_prefix}sig:{call['id']}"
    assert wait_until(lambda: shared_redis.get(key) is not None, timeout=5)
    assert shared_redis.get(key) == signature and 0 < shared_redis.ttl(key) <= TTL
    assert "21" in second_turn(two, call, stream)
    assert replayed_signature(upstream) == signature


def test_on_a_redis_cluster(cluster: list[RedisProcess]) -> None:
    """Kept through one node and read through another, many ids per pipeline across slots."""

    async def run() -> None:
        stores = [RedisStore(UsageConfig(redis_url=n.url, prefix="sy:")) for n in cluster[:2]]
        one, two = (SignatureStore(s, "sy:") for s in stores)
        try:
            sigs = {f"call_{i:02d}": f"sig-{i}" for i in range(20)}
            one.remember(dict(list(sigs.items())[:10]))
            one.remember(dict(list(sigs.items())[10:]))
            await one.close()  # writes what is queued
            assert await two.lookup([*sigs, "call_unknown"]) == sigs
            r = await stores[1].client()
            for cid in ("call_03", "call_17"):
                await r.delete(two.key(cid))  # Redis forgets them: the reader keeps what it read
            assert await two.lookup(["call_03", "call_17"]) == {"call_03": "sig-3", "call_17": "sig-17"}
            assert type(await stores[1].client()).__name__ == "RedisCluster"
        finally:
            for s in stores:
                await s.close()

    asyncio.run(run())


def test_the_clients_own_signature_wins(upstream: Upstream, gateway_for: GatewayFor) -> None:
    client = sdk(gateway_for(config(upstream)))
    call, signature = first_turn(client, False)
    own = SIGNATURE_PREFIX + "the-clients-own"
    call["extra_content"] = {"google": {"thought_signature": own}}
    second_turn(client, call, False)
    assert replayed_signature(upstream) == own != signature


def test_a_hung_redis_costs_no_request(upstream: Upstream, gateway_for: GatewayFor, redis_prefix: str) -> None:
    with SilentListener() as silent:
        cfg = config(upstream, silent.url, redis_prefix)
        one, two = sdk(gateway_for(cfg), timeout=10), sdk(gateway_for(cfg), timeout=10)
        call, signature = first_turn(one, False)
        # The replica that answered knows the signature in its own process: no Redis read needed.
        assert "21" in second_turn(one, call, False)
        assert replayed_signature(upstream) == signature
        # Another replica cannot read it, so the call goes without and Gemini decides; the wait for
        # Redis is bounded (READ_TIMEOUT), well below the store's own 2 s socket timeout.
        t0 = time.monotonic()
        with pytest.raises(openai.BadRequestError) as e:
            second_turn(two, call, False)
        assert "thought_signature" in e.value.message and time.monotonic() - t0 < 1.5


# -- the Responses and Messages client APIs, translated to Gemini through the chat form ----------------
RESPONSES_TOOLS: Any = [{"type": "function", "name": "get_weather", "parameters": PARAMS}]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_responses_tool_loop(upstream: Upstream, gateway_for: GatewayFor, stream: bool) -> None:
    client = sdk(gateway_for(config(upstream)))
    if stream:
        with client.responses.stream(model=MODEL, input="Paris", tools=RESPONSES_TOOLS) as s:
            list(s)
            first = s.get_final_response()
    else:
        first = client.responses.create(model=MODEL, input="Paris", tools=RESPONSES_TOOLS)
    (fc,) = [item for item in first.output if item.type == "function_call"]
    turn: Any = [
        {"role": "user", "content": "Paris"},
        {"type": "function_call", "call_id": fc.call_id, "name": fc.name, "arguments": fc.arguments},
        {"type": "function_call_output", "call_id": fc.call_id, "output": '{"temp_c": 21}'},
    ]
    second = client.responses.create(model=MODEL, input=turn, tools=RESPONSES_TOOLS, store=False)
    assert "21" in second.output_text
    # The signature never reached this client (a function_call item has no place for it).
    assert (replayed_signature(upstream) or "").startswith(SIGNATURE_PREFIX)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_messages_tool_loop(upstream: Upstream, gateway_for: GatewayFor, stream: bool) -> None:
    gw: ServerThread = gateway_for(config(upstream))
    client = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0)
    tools: Any = [{"name": "get_weather", "input_schema": PARAMS}]
    ask: Any = [{"role": "user", "content": "Paris"}]
    if stream:
        with client.messages.stream(model=MODEL, max_tokens=64, messages=ask, tools=tools) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(model=MODEL, max_tokens=64, messages=ask, tools=tools)
    (use,) = [b for b in first.content if b.type == "tool_use"]
    turn: Any = [
        *ask,
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": '{"temp_c": 21}'}]},
    ]
    second = client.messages.create(model=MODEL, max_tokens=64, messages=turn, tools=tools)
    assert second.stop_reason == "end_turn" and "21" in second.content[0].text  # type: ignore[union-attr]
    assert (replayed_signature(upstream) or "").startswith(SIGNATURE_PREFIX)  # a tool_use block has no place for it
