"""Issue 19: every JSON route, fuzzed against the built-in mock provider (hypothesis, a bounded
number of examples per route): never a 500, and every error in the route's own shape (Anthropic's
on the /v1/messages routes, OpenAI's elsewhere)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import CLIENT_KEY, base_config
from tests.support.hardening import GatewayThread

EXAMPLES = 300  # per route

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
anything = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
small_int = st.integers(min_value=-1, max_value=40)
text = st.text(max_size=40)
models = st.sampled_from(["mock/echo", "mock/other", "nope", "mock/", "/x", "", "mock/" + "m" * 300])


def maybe(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """What a client would send, or anything at all."""
    return st.one_of(*[plausible] * 6, anything)


def body(required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]) -> Any:
    """Half the bodies well-formed (they reach the provider, with any mix of options), half with
    junk in any field, unknown fields, or not even an object."""
    clean = st.fixed_dictionaries(
        {"model": st.sampled_from(["mock/echo", "mock/other"]), **required}, optional=optional
    )
    dirty = st.fixed_dictionaries(
        {"model": maybe(models), **{k: maybe(v) for k, v in required.items()}},
        optional={k: maybe(v) for k, v in optional.items()},
    )
    extra = st.dictionaries(st.text(max_size=8), anything, max_size=2)
    return st.one_of(clean, clean, dirty, st.builds(lambda d, e: {**e, **d}, dirty, extra), anything)


part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": maybe(text)}),
    st.fixed_dictionaries({"type": st.sampled_from(["image_url", "input_text", "image", "x"]), "text": anything}),
    anything,
)
content = st.one_of(text, text, st.lists(part, max_size=3), anything)
role = st.sampled_from(["user", "system", "assistant", "developer", "tool", "function", "x"])
chat_message = st.fixed_dictionaries(
    {"role": maybe(role), "content": content}, optional={"name": text, "tool_calls": anything, "tool_call_id": text}
)
tool = st.fixed_dictionaries(
    {"type": st.just("function"), "function": st.fixed_dictionaries({"name": text}, optional={"parameters": anything})}
)
stop = st.one_of(text, st.lists(text, max_size=5))
common = {
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "max_tokens": small_int,
    "n": st.integers(min_value=1, max_value=130),
    "temperature": st.floats(min_value=-1, max_value=3),
    "top_p": st.floats(min_value=-1, max_value=2),
    "stop": stop,
    "context_length_exceeded_behavior": st.sampled_from(["truncate", "error", "x"]),
}

ROUTES: dict[str, Any] = {
    "/v1/chat/completions": body(
        {"messages": st.lists(chat_message, min_size=1, max_size=4)},
        {
            **common,
            "max_completion_tokens": small_int,
            "logprobs": st.booleans(),
            "top_logprobs": small_int,
            "tools": st.lists(tool, max_size=2),
            "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), anything),
            "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema"])}),
            "presence_penalty": st.floats(min_value=-3, max_value=3),
        },
    ),
    "/v1/completions": body(
        {
            "prompt": st.one_of(
                text,
                st.lists(text, max_size=3),
                st.lists(small_int, max_size=5),
                st.lists(st.lists(small_int), max_size=3),
            )
        },
        {**common, "echo": st.booleans(), "logprobs": small_int, "best_of": small_int, "suffix": text},
    ),
    "/v1/embeddings": body(
        {"input": st.one_of(text, st.lists(text, max_size=4), st.lists(small_int, max_size=5))},
        {
            "dimensions": st.one_of(small_int, st.integers(min_value=0, max_value=2**64)),
            "encoding_format": st.sampled_from(["float", "base64", "x"]),
        },
    ),
    "/v1/responses": body(
        {
            "input": st.one_of(
                text,
                st.lists(
                    st.one_of(
                        st.fixed_dictionaries({"role": maybe(role), "content": content}),
                        st.fixed_dictionaries(
                            {
                                "type": st.sampled_from(
                                    ["message", "function_call", "function_call_output", "reasoning"]
                                )
                            },
                            optional={"call_id": text, "output": anything, "arguments": text, "name": text},
                        ),
                    ),
                    max_size=3,
                ),
            )
        },
        {
            "instructions": text,
            "stream": st.booleans(),
            "store": st.booleans(),
            "max_output_tokens": small_int,
            "previous_response_id": text,
            "tools": st.lists(
                st.fixed_dictionaries({"type": st.sampled_from(["function", "custom", "web_search"]), "name": text}),
                max_size=2,
            ),
            "text": st.fixed_dictionaries(
                {"format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "x"])})}
            ),
            "reasoning": st.fixed_dictionaries({}, optional={"effort": text}),
            "temperature": st.floats(min_value=-1, max_value=3),
        },
    ),
    "/v1/messages": body(
        {
            "max_tokens": st.integers(min_value=0, max_value=64),
            "messages": st.lists(
                st.fixed_dictionaries(
                    {
                        "role": maybe(st.sampled_from(["user", "user", "assistant", "system"])),
                        "content": st.one_of(
                            text,
                            st.lists(
                                st.one_of(
                                    st.fixed_dictionaries({"type": st.just("text"), "text": maybe(text)}),
                                    st.fixed_dictionaries(
                                        {"type": st.sampled_from(["tool_use", "tool_result", "thinking", "image"])},
                                        optional={"id": text, "name": text, "input": anything, "content": anything},
                                    ),
                                ),
                                max_size=3,
                            ),
                            anything,
                        ),
                    }
                ),
                min_size=1,
                max_size=3,
            ),
        },
        {
            "system": st.one_of(
                text, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=2)
            ),
            "stop_sequences": st.lists(text, max_size=3),
            "stream": st.booleans(),
            "temperature": st.floats(min_value=-1, max_value=3),
            "top_k": small_int,
            "tools": st.lists(st.fixed_dictionaries({"name": text, "input_schema": anything}), max_size=2),
            "tool_choice": st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "tool", "none"])}),
            "thinking": st.fixed_dictionaries(
                {"type": st.sampled_from(["enabled", "disabled"]), "budget_tokens": small_int}
            ),
            "metadata": anything,
        },
    ),
}
ROUTES["/v1/messages/count_tokens"] = ROUTES["/v1/messages"]

ANTHROPIC = ("/v1/messages", "/v1/messages/count_tokens")


@pytest.fixture(scope="module")
def fuzz_gateway() -> Iterator[httpx.Client]:
    cfg = base_config()
    cfg["server"]["max_body_bytes"] = 1 << 20
    srv = GatewayThread(cfg).start()
    with httpx.Client(base_url=srv.url, headers={"authorization": f"Bearer {CLIENT_KEY}"}, timeout=30) as c:
        yield c
    srv.stop()


def check(client: httpx.Client, path: str, payload: Any) -> None:
    # The standard library writes integers of any size (orjson stops at 64 bits): clients do too.
    r = client.post(path, content=json.dumps(payload).encode(), headers={"content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text[:500], payload)
    if r.status_code < 400:
        if r.headers["content-type"].startswith("text/event-stream"):
            assert r.text
        else:
            assert isinstance(r.json(), dict)
        return
    assert r.headers["content-type"].startswith("application/json"), r.headers
    obj = r.json()
    if path in ANTHROPIC:
        assert obj["type"] == "error" and set(obj) <= {"type", "error", "request_id"}, obj
        assert isinstance(obj["error"]["type"], str) and isinstance(obj["error"]["message"], str), obj
    else:
        err = obj["error"]
        assert set(err) == {"message", "type", "param", "code"}, obj
        assert isinstance(err["message"], str) and isinstance(err["type"], str), obj
        assert err["param"] is None or isinstance(err["param"], str)
        assert err["code"] is None or isinstance(err["code"], str)


@pytest.mark.parametrize("path", list(ROUTES))
def test_fuzzed_bodies_never_500_and_errors_keep_the_routes_shape(fuzz_gateway: httpx.Client, path: str) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(payload=ROUTES[path])
    def run(payload: Any) -> None:
        check(fuzz_gateway, path, payload)

    run()
