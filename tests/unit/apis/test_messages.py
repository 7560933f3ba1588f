"""Anthropic Messages API over the chat form: golden tests and the anthropic SDK as the oracle.

Documented examples are transcribed from Anthropic's pages (cited per test); every Message and
stream event the translator emits is also validated with the SDK's own models, and streams are
replayed through the SDK's accumulator (``messages.stream().get_final_message()``).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.lib.streaming import _messages as sdk_stream
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from gateway.apis.messages_translate import (
    ERROR_TYPES,
    MessagesStream,
    count_text,
    error_body,
    error_event,
    error_status,
    from_chat,
    to_chat,
    validate,
)
from gateway.errors import GatewayError

EVENT = TypeAdapter(RawMessageStreamEvent)
P = "acme"  # provider name used in errors

# -- helpers ------------------------------------------------------------------------------------


def events(raw: bytes) -> list[dict]:
    """Parse framed SSE; every frame must carry ``event: <type>`` equal to the JSON ``type``."""
    out = []
    for frame in raw.split(b"\n\n"):
        if not frame:
            continue
        head, data = frame.split(b"\n")
        assert head.startswith(b"event: ") and data.startswith(b"data: "), frame
        event = orjson.loads(data[6:])
        assert head[7:].decode() == event["type"]
        out.append(event)
    return out


def run(chunks: list[dict], input_tokens: int = 10, **kw: Any) -> tuple[list[dict], MessagesStream]:
    stream = MessagesStream("claude-test", input_tokens, **kw)
    raw = b"".join(stream.feed(c) for c in chunks) + stream.finish()
    evs = events(raw)
    for ev in evs:
        EVENT.validate_python(ev)  # each event is one the SDK knows, field for field
    return evs, stream


def chunk(delta: dict | None = None, finish: str | None = None, cid: str = "chatcmpl-abc") -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }


def usage_chunk(prompt: int, completion: int, cached: int | None = None, cid: str = "chatcmpl-abc") -> dict:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"id": cid, "object": "chat.completion.chunk", "choices": [], "usage": usage}


def tool_frag(index: int, args: str | None = None, cid: str | None = None, name: str | None = None) -> dict:
    frag: dict[str, Any] = {"index": index, "function": {}}
    if cid:
        frag["id"], frag["type"], frag["function"]["name"] = cid, "function", name
    if args is not None:
        frag["function"]["arguments"] = args
    return {"tool_calls": [frag]}


def accumulate(evs: list[dict]) -> Any:
    """Replay events through the installed SDK's accumulator (its signature changed over versions)."""
    params = inspect.signature(sdk_stream.accumulate_event).parameters
    extra: dict[str, Any] = {"json_bufs": {}} if "json_bufs" in params else {}
    snapshot = None
    for ev in evs:
        snapshot = sdk_stream.accumulate_event(event=EVENT.validate_python(ev), current_snapshot=snapshot, **extra)
    return snapshot


def normal(message: Any) -> dict:
    """A Message (dict or SDK model) in one comparable form, through the SDK's Message model."""
    data = message if isinstance(message, dict) else message.model_dump(exclude_none=False)
    data = copy.deepcopy(data)
    for block in data["content"]:
        block.pop("parsed_output", None)
    return Message.model_validate(data).model_dump()


def sdk_client(handler: Any) -> anthropic.Anthropic:
    transport = httpx2.MockTransport(handler)
    return anthropic.Anthropic(
        api_key="k", base_url="http://gw.test", http_client=httpx2.Client(transport=transport), max_retries=0
    )


def answer(message: dict, finish: str = "stop", usage: dict | None = None, cid: str = "chatcmpl-abc") -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def base(**kw: Any) -> dict:
    body: dict[str, Any] = {"model": "claude-test", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hi"}]}
    body.update(kw)
    return body


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "unit": {
                "type": "string",
                "enum": ["celsius", "fahrenheit"],
                "description": "The unit of temperature, either 'celsius' or 'fahrenheit'",
            },
        },
        "required": ["location"],
    },
}

# -- validate -----------------------------------------------------------------------------------


def test_validate_accepts_documented_requests() -> None:
    # https://platform.claude.com/docs/en/api/messages (basic request and prefill example)
    validate(
        {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello, world"}]}
    )
    prefill = [
        {"role": "user", "content": "What's the Greek name for Sun? (A) Sol (B) Helios (C) Sun"},
        {"role": "assistant", "content": "The best answer is ("},
    ]
    validate(base(messages=prefill))
    validate(base(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]))
    validate(base(system=[{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}]))
    validate(base(thinking={"type": "adaptive"}, tool_choice={"type": "none"}, temperature=None, top_k=0))
    validate(base(thinking={"type": "disabled"}, stream=False, metadata={"user_id": "u-1"}, temperature=1))


def test_validate_max_tokens_required_in_anthropic_wording() -> None:
    body = base()
    del body["max_tokens"]
    with pytest.raises(GatewayError) as e:
        validate(body)
    err = e.value
    assert (err.status, err.message, err.param, err.code) == (
        400,
        "max_tokens: Field required",
        "max_tokens",
        "invalid_request_error",
    )
    assert (
        error_body(err)
        == b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}'
    )


@pytest.mark.parametrize(
    ("patch", "param", "message"),
    [
        ({"model": None}, "model", "model: Field required"),
        ({"model": 3}, "model", "model: Input should be a valid string"),
        ({"max_tokens": True}, "max_tokens", "max_tokens: Input should be a valid integer"),
        ({"max_tokens": 1.5}, "max_tokens", None),
        ({"max_tokens": 0}, "max_tokens", "max_tokens: Input should be greater than or equal to 1"),
        ({"messages": []}, "messages", None),
        ({"messages": "hi"}, "messages", None),
        ({"messages": ["hi"]}, "messages.0", None),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role", None),
        ({"messages": [{"role": "user"}]}, "messages.0.content", "messages.0.content: Field required"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content", None),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages.0.content.0.type", None),
        ({"messages": [{"role": "user", "content": [{"type": 1}]}]}, "messages.0.content.0.type", None),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text", None),
        ({"messages": [{"role": "user", "content": ""}]}, "messages.0.content", None),
        ({"system": [{"type": "image", "source": {}}]}, "system.0.type", None),
        ({"system": 5}, "system", None),
        ({"temperature": 1.5}, "temperature", "temperature: Input should be less than or equal to 1"),
        ({"temperature": True}, "temperature", None),
        ({"top_p": -0.1}, "top_p", None),
        ({"top_k": 1.5}, "top_k", None),
        ({"top_k": -1}, "top_k", None),
        ({"stop_sequences": "END"}, "stop_sequences", None),
        ({"stop_sequences": [1]}, "stop_sequences", None),
        ({"stream": "yes"}, "stream", None),
        ({"tools": {}}, "tools", None),
        ({"tools": ["t"]}, "tools.0", None),
        ({"tools": [{"name": "t"}]}, "tools.0.input_schema", None),
        ({"tool_choice": {"type": "required"}}, "tool_choice.type", None),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name", None),
        ({"thinking": {"type": "on"}}, "thinking.type", None),
        ({"thinking": {"type": "enabled", "budget_tokens": 1000}}, "thinking.enabled.budget_tokens", None),
        ({"thinking": {"type": "enabled", "budget_tokens": True}}, "thinking.enabled.budget_tokens", None),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking.budget_tokens", None),  # >= max_tokens
        ({"metadata": "u"}, "metadata", None),
    ],
)
def test_validate_rejects(patch: dict, param: str, message: str | None) -> None:
    body = base()
    body.update(patch)
    if body["model"] is None:
        del body["model"]
    with pytest.raises(GatewayError) as e:
        validate(body)
    assert (e.value.status, e.value.param, e.value.code) == (400, param, "invalid_request_error")
    if message:
        assert e.value.message == message


# -- to_chat ------------------------------------------------------------------------------------


def test_to_chat_documented_basic_request() -> None:
    # https://platform.claude.com/docs/en/api/messages
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello, world"}]}
    assert to_chat(body, P) == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "Hello, world"}],
        "max_tokens": 1024,
    }


def test_to_chat_documented_multi_turn_and_prefill() -> None:
    # https://platform.claude.com/docs/en/api/messages (multiple conversational turns; prefill)
    turns = [
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": "Hi, I'm Claude. How can I help you?"},
        {"role": "user", "content": "Can you explain LLMs in plain English?"},
        {"role": "assistant", "content": [{"type": "text", "text": "The best answer is ("}]},
    ]
    assert to_chat(base(messages=turns), P)["messages"] == [
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": "Hi, I'm Claude. How can I help you?"},
        {"role": "user", "content": "Can you explain LLMs in plain English?"},
        {"role": "assistant", "content": "The best answer is ("},
    ]


def test_to_chat_documented_system_blocks_with_cache_control() -> None:
    # https://platform.claude.com/docs/en/build-with-claude/prompt-caching (large context caching example)
    body = base(
        system=[
            {"type": "text", "text": "You are an AI assistant tasked with analyzing literary works."},
            {
                "type": "text",
                "text": "<the entire contents of 'Pride and Prejudice'>",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        messages=[{"role": "user", "content": "Analyze the major themes in 'Pride and Prejudice'."}],
    )
    validate(body)
    assert to_chat(body, P)["messages"] == [
        {
            "role": "system",
            "content": "You are an AI assistant tasked with analyzing literary works.\n\n"
            "<the entire contents of 'Pride and Prejudice'>",
        },
        {"role": "user", "content": "Analyze the major themes in 'Pride and Prejudice'."},
    ]
    assert to_chat(base(system="Be brief."), P)["messages"][0] == {"role": "system", "content": "Be brief."}


def test_to_chat_documented_tool_use_round_trip() -> None:
    # https://platform.claude.com/docs/en/agents-and-tools/tool-use/implement-tool-use (get_weather)
    body = base(
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "What's the weather like in San Francisco?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A09q90qw90lq917835lq9",
                        "name": "get_weather",
                        "input": {"location": "San Francisco, CA", "unit": "celsius"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"}
                ],
            },
        ],
    )
    validate(body)
    chat = to_chat(body, P)
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        }
    ]
    assert chat["messages"] == [
        {"role": "user", "content": "What's the weather like in San Francisco?"},
        {
            "role": "assistant",
            "content": "I'll check the current weather in San Francisco for you.",
            "tool_calls": [
                {
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"location":"San Francisco, CA","unit":"celsius"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
    ]


def test_to_chat_tool_results_first_error_prefix_and_images_moved() -> None:
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
    body = base(
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "a", "input": {}},
                    {"type": "tool_use", "id": "t2", "name": "b", "input": {"x": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "l1"}, {"type": "text", "text": "l2"}, img],
                    },
                    {"type": "tool_result", "tool_use_id": "t2", "content": "boom", "is_error": True},
                    {"type": "text", "text": "and now?"},
                ],
            },
        ]
    )
    msgs = to_chat(body, P)["messages"]
    assert msgs[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
            {"id": "t2", "type": "function", "function": {"name": "b", "arguments": '{"x":1}'}},
        ],
    }
    assert msgs[2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "l1\nl2"},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: boom"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "text", "text": "and now?"},
            ],
        },
    ]
    # A user turn of tool results only makes no empty user message.
    only = base(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}])
    assert to_chat(only, P)["messages"] == [{"role": "tool", "tool_call_id": "t1", "content": ""}]


def test_to_chat_documented_images() -> None:
    # https://platform.claude.com/docs/en/build-with-claude/vision (base64 and URL sources)
    url = "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"
    body = base(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                    {"type": "image", "source": {"type": "url", "url": url}},
                    {"type": "text", "text": "Describe this image."},
                ],
            }
        ]
    )
    validate(body)
    assert to_chat(body, P)["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": "Describe this image."},
    ]
    file_img = base(
        messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]
    )
    with pytest.raises(GatewayError) as e:
        to_chat(file_img, P)
    assert (e.value.param, e.value.code) == ("messages.0.content.0.source", "unsupported_parameter")


def test_to_chat_documents() -> None:
    text_doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."},
    }
    body = base(messages=[{"role": "user", "content": [text_doc, {"type": "text", "text": "Color?"}]}])
    assert to_chat(body, P)["messages"][0]["content"] == [
        {"type": "text", "text": "The grass is green."},
        {"type": "text", "text": "Color?"},
    ]
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
    with pytest.raises(GatewayError) as e:
        to_chat(base(messages=[{"role": "user", "content": [pdf]}]), P)
    assert (e.value.status, e.value.param, e.value.code) == (400, "messages.0.content.0", "unsupported_parameter")
    assert "'acme'" in e.value.message and "base64" in e.value.message


def test_to_chat_drops_documented_thinking_blocks() -> None:
    # https://platform.claude.com/docs/en/build-with-claude/extended-thinking (thinking with tool use)
    body = base(
        max_tokens=16000,
        thinking={"type": "enabled", "budget_tokens": 10000},
        messages=[
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "thinking",
                        "thinking": "The user wants to know the weather in Paris.",
                        "signature": "EqQBCgIYAhIM",
                    },
                    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
                    {
                        "type": "tool_use",
                        "id": "toolu_01CswdEQBMshySk6Y9DFKrfq",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01CswdEQBMshySk6Y9DFKrfq", "content": "88°F"}
                ],
            },
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "only thinking", "signature": "x"}]},
        ],
    )
    validate(body)
    chat = to_chat(body, P)
    assert chat["reasoning_effort"] == "medium"
    assert chat["messages"] == [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_01CswdEQBMshySk6Y9DFKrfq",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01CswdEQBMshySk6Y9DFKrfq", "content": "88°F"},
    ]


@pytest.mark.parametrize(
    ("role", "block"),
    [
        ("user", {"type": "search_result", "source": "s", "title": "t", "content": []}),
        ("assistant", {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}}),
        ("assistant", {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
        ("user", {"type": "container_upload", "file_id": "f"}),
        ("user", {"type": "tool_use", "id": "t", "name": "n", "input": {}}),
    ],
)
def test_to_chat_refuses_blocks_a_chat_provider_cannot_take(role: str, block: dict) -> None:
    body = base(messages=[{"role": "user", "content": "q"}, {"role": role, "content": [block]}])
    with pytest.raises(GatewayError) as e:
        to_chat(body, P)
    assert (e.value.status, e.value.param, e.value.code) == (400, "messages.1.content.0", "unsupported_parameter")
    assert block["type"] in e.value.message and "'acme'" in e.value.message


def test_to_chat_custom_tools_with_or_without_type() -> None:
    tools = [
        {"type": "custom", "name": "a", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
        {"name": "b", "description": "B", "input_schema": {"type": "object", "properties": {}}, "strict": True},
    ]
    assert to_chat(base(tools=tools), P)["tools"] == [
        {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
        {
            "type": "function",
            "function": {
                "name": "b",
                "description": "B",
                "parameters": {"type": "object", "properties": {}},
                "strict": True,
            },
        },
    ]


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "bash_20250124", "name": "bash"},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        {"type": "computer_20250124", "name": "computer", "display_width_px": 1024, "display_height_px": 768},
        {"type": "code_execution_20250825", "name": "code_execution"},
    ],
)
def test_to_chat_refuses_anthropic_versioned_tools(tool: dict) -> None:
    body = base(tools=[WEATHER_TOOL, tool])
    validate(body)
    with pytest.raises(GatewayError) as e:
        to_chat(body, P)
    assert (e.value.status, e.value.param, e.value.code) == (400, "tools.1", "unsupported_parameter")
    assert tool["name"] in e.value.message and tool["type"] in e.value.message and "'acme'" in e.value.message


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        (
            {"type": "tool", "name": "get_weather"},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        ),
        ({"type": "none"}, {"tool_choice": "none"}),
        ({"type": "any", "disable_parallel_tool_use": True}, {"tool_choice": "required", "parallel_tool_calls": False}),
        ({"type": "auto", "disable_parallel_tool_use": False}, {"tool_choice": "auto"}),
    ],
)
def test_to_chat_tool_choice(choice: dict, expected: dict) -> None:
    chat = to_chat(base(tools=[WEATHER_TOOL], tool_choice=choice), P)
    assert {k: chat[k] for k in ("tool_choice", "parallel_tool_calls") if k in chat} == expected


def test_to_chat_tool_choice_without_tools_is_dropped() -> None:
    # Chat providers refuse tool_choice without tools; without tools there is nothing to choose.
    chat = to_chat(base(tool_choice={"type": "auto", "disable_parallel_tool_use": True}), P)
    assert "tool_choice" not in chat and "parallel_tool_calls" not in chat


def test_to_chat_sampling_stop_sequences_metadata_stream() -> None:
    # stop_sequences as in https://platform.claude.com/docs/en/api/messages
    body = base(
        stop_sequences=["\n\nHuman:", "END"],
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "13803d75-b4b5-4c3e-b2a2-6f21399b021b"},
        stream=True,
    )
    validate(body)
    chat = to_chat(body, P)
    assert {k: v for k, v in chat.items() if k not in ("model", "messages")} == {
        "max_tokens": 1024,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["\n\nHuman:", "END"],
        "user": "13803d75-b4b5-4c3e-b2a2-6f21399b021b",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    plain = to_chat(base(top_k=None, temperature=None, stream=False, stop_sequences=[], metadata={}), P)
    assert set(plain) == {"model", "messages", "max_tokens"}


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 4095}, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, "medium"),
        ({"type": "enabled", "budget_tokens": 16383}, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, "high"),
        ({"type": "adaptive"}, "medium"),
        ({"type": "disabled"}, None),
    ],
)
def test_to_chat_thinking_to_reasoning_effort(thinking: dict, effort: str | None) -> None:
    body = base(max_tokens=64000, thinking=thinking)
    validate(body)
    assert to_chat(body, P).get("reasoning_effort") == effort


def test_to_chat_output_config() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": False,
    }
    chat = to_chat(
        base(
            thinking={"type": "adaptive"},
            output_config={"effort": "max", "format": {"type": "json_schema", "schema": schema}},
        ),
        P,
    )
    assert chat["reasoning_effort"] == "high"
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("service_tier", "standard_only"),
        ("container", "container_011CZ"),
        ("mcp_servers", [{"type": "url", "url": "https://mcp.example.com/sse", "name": "x"}]),
        ("context_management", {"edits": [{"type": "clear_tool_uses_20250919"}]}),
        ("speed", "fast"),
        ("inference_geo", "us"),
        ("frequency_penalty", 0.5),
    ],
)
def test_to_chat_refuses_fields_the_chat_form_cannot_carry(field: str, value: Any) -> None:
    with pytest.raises(GatewayError) as e:
        to_chat(base(**{field: value}), P)
    assert (e.value.status, e.value.param, e.value.code) == (400, field, "unsupported_parameter")
    assert field in e.value.message and "'acme'" in e.value.message


def test_to_chat_accepts_defaults_and_ignores_cache_hints() -> None:
    body = base(
        service_tier="auto",
        speed="standard",
        container=None,
        mcp_servers=[],
        context_management=None,
        cache_control={"type": "ephemeral"},
    )
    assert to_chat(body, P) == to_chat(base(), P)


def test_count_text() -> None:
    body = base(
        system="S", tools=[WEATHER_TOOL], messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    )
    messages, tools = count_text(body)
    assert messages == [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
    assert orjson.loads(tools) == to_chat(body, P)["tools"]
    assert count_text(base()) == ([{"role": "user", "content": "Hi"}], "")


# -- from_chat ----------------------------------------------------------------------------------


def test_from_chat_documented_basic_response() -> None:
    # https://platform.claude.com/docs/en/api/messages (response example)
    chat = answer(
        {"content": "Hi! My name is Claude."},
        usage={"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598},
    )
    message = from_chat(chat, "claude-sonnet-4-5")
    assert message == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hi! My name is Claude."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 2095,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 503,
        },
    }
    Message.model_validate(message)


def test_from_chat_documented_tool_use_response() -> None:
    # https://platform.claude.com/docs/en/agents-and-tools/tool-use/implement-tool-use
    call = {
        "id": "toolu_01A09q90qw90lq917835lq9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location": "San Francisco, CA", "unit": "celsius"}'},
    }
    chat = answer(
        {"content": "I'll check the current weather in San Francisco for you.", "tool_calls": [call]}, "tool_calls"
    )
    message = from_chat(chat, "claude-test")
    assert message["content"] == [
        {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA", "unit": "celsius"},
        },
    ]
    assert (message["stop_reason"], message["stop_sequence"]) == ("tool_use", None)
    Message.model_validate(message)


def test_from_chat_thinking_first_then_text() -> None:
    message = from_chat(
        answer({"content": "27 * 453 = 12,231", "reasoning_content": "Let me solve this step by step"}), "m"
    )
    assert message["content"] == [
        {"type": "thinking", "thinking": "Let me solve this step by step", "signature": ""},
        {"type": "text", "text": "27 * 453 = 12,231"},
    ]
    assert from_chat(answer({"content": "x", "reasoning_content": ""}), "m")["content"] == [
        {"type": "text", "text": "x"}
    ]
    Message.model_validate(message)


@pytest.mark.parametrize(
    ("finish", "tools", "reason"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("function_call", True, "tool_use"),
        ("content_filter", False, "refusal"),
        (None, False, "end_turn"),
        ("stop", True, "tool_use"),  # providers that say "stop" after tool calls
    ],
)
def test_from_chat_stop_reason(finish: str | None, tools: bool, reason: str) -> None:
    msg: dict[str, Any] = {"content": "x"}
    if tools:
        msg["tool_calls"] = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    message = from_chat(answer(msg, finish), "m")
    assert (message["stop_reason"], message["stop_sequence"]) == (reason, None)
    Message.model_validate(message)


def test_from_chat_stop_sequence_only_when_the_provider_names_it() -> None:
    chat = answer({"content": "1, 2, 3"})
    assert from_chat(chat, "m", ["4"])["stop_reason"] == "end_turn"
    chat["choices"][0]["stop_reason"] = "4"  # vLLM's extension: the stop string that matched
    message = from_chat(chat, "m", ["4"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "4")
    assert from_chat(chat, "m", None)["stop_reason"] == "end_turn"


def test_from_chat_cached_tokens_split_out_of_input_tokens() -> None:
    usage = {"prompt_tokens": 2006, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1920}}
    assert from_chat(answer({"content": "x"}, usage=usage), "m")["usage"] == {
        "input_tokens": 86,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1920,
        "output_tokens": 300,
    }
    no_usage = answer({"content": "x"})
    del no_usage["usage"]
    assert from_chat(no_usage, "m")["usage"]["output_tokens"] == 0


@pytest.mark.parametrize(
    ("arguments", "expected"), [("", {}), ("{not json", {}), ("[1, 2]", {}), ('{"a": [1]}', {"a": [1]})]
)
def test_from_chat_tool_arguments(arguments: str, expected: dict) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    message = from_chat(answer({"content": None, "tool_calls": [call]}, "tool_calls"), "m")
    assert message["content"] == [{"type": "tool_use", "id": "c1", "name": "f", "input": expected}]


def test_from_chat_ids_and_refusal() -> None:
    assert from_chat(answer({"content": "x"}, cid="gen-42"), "m")["id"] == "msg_gen-42"
    fresh = answer({"content": "x"})
    del fresh["id"]
    assert from_chat(fresh, "m")["id"].startswith("msg_")
    refused = from_chat(answer({"content": None, "refusal": "I can't help with that."}), "m")
    assert refused["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert refused["stop_reason"] == "refusal"
    empty = from_chat(answer({"content": None}, "length"), "m")
    assert (empty["content"], empty["stop_reason"]) == ([], "max_tokens")
    Message.model_validate(empty)


def test_from_chat_through_the_sdk_client() -> None:
    chat = answer({"content": "Hello!"})

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=from_chat(chat, "claude-test"))

    message = sdk_client(handler).messages.create(
        model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
    )
    assert (message.content[0].text, message.stop_reason, message.usage.output_tokens) == ("Hello!", "end_turn", 5)


# -- streaming ----------------------------------------------------------------------------------


def test_stream_documented_basic_text() -> None:
    # https://platform.claude.com/docs/en/build-with-claude/streaming ("Basic streaming request").
    # The documented stream also has a `ping` (keep-alive, not content) which the gateway does not add,
    # and its usage shows only input/output tokens where the live API also sends the cache counts.
    chunks = [
        chunk({"role": "assistant", "content": ""}, cid="chatcmpl-1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"),
        chunk({"content": "Hello"}),
        chunk({"content": "!"}),
        chunk({}, "stop"),
        usage_chunk(25, 15),
    ]
    evs, _ = run(chunks, input_tokens=25)
    zero_cache = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    assert evs == [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
                "type": "message",
                "role": "assistant",
                "model": "claude-test",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 25, **zero_cache, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"input_tokens": 25, **zero_cache, "output_tokens": 15},
        },
        {"type": "message_stop"},
    ]


TEXT_FRAGMENTS = [
    "Okay",
    ",",
    " let",
    "'s",
    " check",
    " the",
    " weather",
    " for",
    " San",
    " Francisco",
    ",",
    " CA",
    ":",
]
JSON_FRAGMENTS = ['{"location":', ' "San', " Francisc", "o,", ' CA"', ", ", '"unit": "fah', 'renheit"}']


def tool_stream_chunks() -> list[dict]:
    """Chat chunks equivalent to the documented tool-use stream (OpenAI's shape: id+name, then args)."""
    return [
        chunk({"role": "assistant", "content": ""}),
        *(chunk({"content": t}) for t in TEXT_FRAGMENTS),
        chunk(tool_frag(0, "", "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather")),
        *(chunk(tool_frag(0, a)) for a in JSON_FRAGMENTS),
        chunk({}, "tool_calls"),
        usage_chunk(472, 89),
    ]


def test_stream_documented_tool_use() -> None:
    # https://platform.claude.com/docs/en/build-with-claude/streaming ("Streaming request with tool use")
    evs, stream = run(tool_stream_chunks(), input_tokens=472)
    text = [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}} for t in TEXT_FRAGMENTS
    ]
    args = [
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": a}}
        for a in ["", *JSON_FRAGMENTS]
    ]
    assert evs[1:] == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *text,
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {},
            },
        },
        *args,
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {
                "input_tokens": 472,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 89,
            },
        },
        {"type": "message_stop"},
    ]
    assert stream.message["content"][1]["input"] == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert normal(accumulate(evs)) == normal(stream.message)


def test_stream_thinking_then_text() -> None:
    # https://platform.claude.com/docs/en/build-with-claude/extended-thinking ("Streaming thinking"):
    # thinking_delta events, then a text block. No signature_delta: there is no signature to send.
    chunks = [
        chunk(
            {
                "role": "assistant",
                "reasoning_content": "Let me solve this step by step:\n\n1. First break down 27 * 453",
            }
        ),
        chunk({"reasoning_content": "\n2. 453 = 400 + 50 + 3"}),
        chunk({"content": "27 * 453 = 12,231"}),
        chunk({}, "stop"),
    ]
    evs, stream = run(chunks)
    assert [(e["type"], e.get("index"), (e.get("delta") or e.get("content_block") or {}).get("type")) for e in evs] == [
        ("message_start", None, None),
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert evs[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert (
        stream.message["content"][0]["thinking"]
        == "Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3"
    )


def test_stream_length_cut() -> None:
    evs, stream = run([chunk({"content": "Once upon a"}), chunk({"content": " time"}, "length"), usage_chunk(12, 3)])
    assert evs[-2]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert stream.message["stop_reason"] == "max_tokens"
    assert stream.message["content"] == [{"type": "text", "text": "Once upon a time"}]


def test_stream_output_tokens_are_cumulative() -> None:
    # message_delta carries totals (the SDK overwrites, never adds): the upstream's completion_tokens
    # when its usage chunk came, else the stream's own count of content deltas.
    evs, _ = run(
        [chunk({"content": "a"}), chunk({"content": "b"}), chunk({"content": "c"}, "stop"), usage_chunk(7, 42)]
    )
    assert evs[-2]["usage"]["output_tokens"] == 42
    assert accumulate(evs).usage.output_tokens == 42
    evs, stream = run(
        [chunk({"content": "a"}), chunk({"content": "b"}), chunk({"content": "c"}, "stop")], input_tokens=9
    )
    assert evs[-2]["usage"] == {"output_tokens": 3}
    assert stream.usage is None
    assert accumulate(evs).usage.model_dump(include={"input_tokens", "output_tokens"}) == {
        "input_tokens": 9,
        "output_tokens": 3,
    }


def test_stream_cached_prompt_in_message_delta_usage() -> None:
    evs, stream = run([chunk({"content": "x"}, "stop"), usage_chunk(2006, 4, cached=1920)], input_tokens=2000)
    assert evs[0]["message"]["usage"]["input_tokens"] == 2000  # the gateway's own count, before upstream usage
    assert evs[-2]["usage"] == {
        "input_tokens": 86,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1920,
        "output_tokens": 4,
    }
    assert stream.usage == usage_chunk(2006, 4, cached=1920)["usage"]
    final = accumulate(evs).usage
    assert (final.input_tokens, final.cache_read_input_tokens, final.output_tokens) == (86, 1920, 4)


def test_stream_message_start_is_lazy_and_once() -> None:
    stream = MessagesStream("claude-test", 3, msg_id="msg_fixed")
    first = events(stream.feed(chunk({"role": "assistant"})))
    assert [e["type"] for e in first] == ["message_start"] and first[0]["message"]["id"] == "msg_fixed"
    assert stream.feed(chunk({"content": ""})) == b""
    # Nothing fed at all: finish alone still makes a complete, valid (empty) message.
    stream = MessagesStream("claude-test", 3)
    evs = events(stream.finish())
    assert [e["type"] for e in evs] == ["message_start", "message_delta", "message_stop"]
    assert stream.finish() == b"" and stream.feed(chunk({"content": "late"})) == b""
    assert normal(accumulate(evs)) == normal(stream.message)


def test_stream_parallel_tool_calls_get_their_own_blocks() -> None:
    chunks = [
        chunk(tool_frag(0, "", "call_a", "get_weather")),
        chunk(tool_frag(0, '{"location": "Paris"}')),
        chunk(tool_frag(1, "", "call_b", "get_time")),
        chunk(tool_frag(1, '{"tz": "CET"}')),
        chunk({}, "tool_calls"),
    ]
    evs, stream = run(chunks)
    starts = [e for e in evs if e["type"] == "content_block_start"]
    assert [(e["index"], e["content_block"]["id"]) for e in starts] == [(0, "call_a"), (1, "call_b")]
    assert stream.message["content"] == [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"location": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {"tz": "CET"}},
    ]
    # Providers that omit the chat index: a new call id still starts a new block.
    no_index = [{"tool_calls": [{"id": cid, "function": {"name": "f", "arguments": "{}"}}]} for cid in ("c1", "c2")]
    _, unindexed = run([chunk(d) for d in no_index])
    assert [b["id"] for b in unindexed.message["content"]] == ["c1", "c2"]
    # A provider saying "stop" after tool calls still ends the turn with tool_use.
    evs, _ = run([*chunks[:2], chunk({}, "stop")])
    assert evs[-2]["delta"]["stop_reason"] == "tool_use"


def test_stream_error_event_is_terminal() -> None:
    # https://platform.claude.com/docs/en/build-with-claude/streaming ("Error events")
    stream = MessagesStream("claude-test", 3)
    stream.feed(chunk({"content": "partial"}))
    frame = stream.error(GatewayError(503, "Overloaded", code="upstream_unavailable"))
    assert (
        frame == b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    assert stream.finish() == b"" and stream.error(GatewayError(500, "again")) == b""


def replay_cases() -> list[tuple[list[dict], dict]]:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"q": "x"}'}}
    return [
        (
            [chunk({"content": "Hello"}), chunk({"content": " world"}, "stop"), usage_chunk(5, 2)],
            answer({"content": "Hello world"}, usage={"prompt_tokens": 5, "completion_tokens": 2}),
        ),
        (
            [
                chunk({"reasoning_content": "think"}),
                chunk({"content": "Let me look."}),
                chunk(tool_frag(0, "", "call_1", "f")),
                chunk(tool_frag(0, '{"q": ')),
                chunk(tool_frag(0, '"x"}')),
                chunk({}, "tool_calls"),
                usage_chunk(30, 20, cached=10),
            ],
            answer(
                {"content": "Let me look.", "reasoning_content": "think", "tool_calls": [call]},
                "tool_calls",
                {"prompt_tokens": 30, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 10}},
            ),
        ),
        (
            [chunk({"content": "cut"}, "length"), usage_chunk(3, 1)],
            answer({"content": "cut"}, "length", {"prompt_tokens": 3, "completion_tokens": 1}),
        ),
    ]


@pytest.mark.parametrize(("chunks", "chat"), replay_cases())
def test_stream_replay_equals_non_streamed_translation(chunks: list[dict], chat: dict) -> None:
    evs, stream = run(chunks)
    expected = from_chat(chat, "claude-test")
    Message.model_validate(expected)
    assert stream.message == expected
    assert normal(accumulate(evs)) == normal(expected)


def test_stream_through_the_sdk_client() -> None:
    stream = MessagesStream("claude-test", 472)
    body = b"".join(stream.feed(c) for c in tool_stream_chunks()) + stream.finish()

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    with sdk_client(handler).messages.stream(
        model="claude-test", max_tokens=100, messages=[{"role": "user", "content": "Weather?"}]
    ) as s:
        final = s.get_final_message()
    assert normal(final) == normal(stream.message)
    assert final.content[1].input == {"location": "San Francisco, CA", "unit": "fahrenheit"}


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "answer_status", "kind", "sdk_error"),
    [
        (400, 400, "invalid_request_error", anthropic.BadRequestError),
        (401, 401, "authentication_error", anthropic.AuthenticationError),
        (403, 403, "permission_error", anthropic.PermissionDeniedError),
        (404, 404, "not_found_error", anthropic.NotFoundError),
        (413, 413, "request_too_large", anthropic.APIStatusError),
        (429, 429, "rate_limit_error", anthropic.RateLimitError),
        (500, 500, "api_error", anthropic.InternalServerError),
        (502, 502, "api_error", anthropic.InternalServerError),
        (503, 529, "overloaded_error", anthropic.OverloadedError),
        (504, 504, "timeout_error", anthropic.InternalServerError),
        (529, 529, "overloaded_error", anthropic.OverloadedError),
    ],
)
def test_error_answers(status: int, answer_status: int, kind: str, sdk_error: type[Exception]) -> None:
    # https://platform.claude.com/docs/en/api/errors: {"type": "error", "error": {"type", "message"}}
    err = GatewayError(status, f"failure {status}")
    assert error_status(err) == answer_status
    assert orjson.loads(error_body(err)) == {"type": "error", "error": {"type": kind, "message": f"failure {status}"}}
    assert error_event(err) == b"event: error\ndata: " + error_body(err) + b"\n\n"
    if answer_status in ERROR_TYPES:
        assert ERROR_TYPES[answer_status] == kind

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(error_status(err), content=error_body(err), headers={"content-type": "application/json"})

    with pytest.raises(sdk_error) as e:
        sdk_client(handler).messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == answer_status


def test_error_event_raises_in_the_sdk_stream() -> None:
    stream = MessagesStream("claude-test", 3)
    body = stream.feed(chunk({"content": "partial"})) + stream.error(GatewayError(503, "Overloaded"))

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        sdk_client(handler).messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as s,
    ):
        s.get_final_message()
