"""Responses API <-> chat form translation: golden dicts, OpenAI's documented examples, and the openai
SDK's own models (``Response``, the ``ResponseStreamEvent`` union, the ``responses.stream`` helper) as oracle."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import orjson
import pytest
from openai import OpenAI
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.apis.responses_translate import (
    ResponsesStream,
    from_chat,
    history_of,
    input_items,
    stored,
    to_chat,
    validate,
)
from gateway.errors import GatewayError

EVENTS = TypeAdapter(ResponseStreamEvent)
ITEMS = TypeAdapter(list[ResponseItem])
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
CREATED = 1741476542

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get current temperature for a given location.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
        "additionalProperties": False,
    },
    "strict": True,
}
# OpenAI function calling guide, "Custom tools" (platform.openai.com/docs/guides/function-calling#custom-tools).
CODE_EXEC = {"type": "custom", "name": "code_exec", "description": "Executes arbitrary Python code."}


def error_of(fn: Any, *args: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        fn(*args)
    assert info.value.status == 400
    return info.value


def chat_answer(message: dict, finish: str = "stop", usage: dict | None = None) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": "upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def chunk(delta: dict | None = None, finish: str | None = None, **extra: Any) -> dict:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [choice], **extra}


def usage_chunk(prompt: int = 7, completion: int = 9) -> dict:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def parse_sse(data: bytes) -> list[dict]:
    """Parses the framing strictly: ``event: <type>`` then ``data: <json>`` with the same type inside."""
    events = []
    for block in data.split(b"\n\n"):
        if not block:
            continue
        head, body = block.split(b"\n")
        assert head.startswith(b"event: ") and body.startswith(b"data: ")
        event = orjson.loads(body[6:])
        assert head[7:].decode() == event["type"]
        events.append(event)
    assert data.endswith(b"\n\n")
    return events


def run_stream(request: dict, chunks: list[dict], *, fail: tuple[str, str] | None = None) -> tuple[list[dict], Any]:
    s = ResponsesStream(request, "resp_test", CREATED, request["model"])
    out = s.start()
    for c in chunks:
        out += s.feed(c)
    out += s.fail(*fail) if fail else s.finish()
    events = parse_sse(out)
    # Every event is one of the SDK's models; numbering is contiguous; exactly one terminal event, last.
    for e in events:
        EVENTS.validate_python(e)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] in TERMINAL for e in events].count(True) == 1 and events[-1]["type"] in TERMINAL
    assert s.feed(chunk({"content": "late"})) == b"" and s.finish() == b"" and s.fail("server_error", "x") == b""
    return events, s


def types_of(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


# -- validate ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        # API reference, "Create a model response": text input.
        {"model": "gpt-4.1", "input": "Tell me a three sentence bedtime story about a unicorn."},
        # Conversation state guide: a follow-up needs no input beyond previous_response_id.
        {"model": "gpt-4o-mini", "previous_response_id": "resp_abc", "input": [{"role": "user", "content": "why?"}]},
        {"model": "o4-mini", "previous_response_id": "resp_abc"},
        {
            "model": "gpt-5",
            "input": "hi",
            "instructions": None,
            "tools": [WEATHER, CODE_EXEC],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "max_output_tokens": 16,
            "temperature": 2,
            "top_p": 0,
            "stream": True,
            "store": False,
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
            "reasoning": {"effort": "xhigh", "summary": "auto"},
            "metadata": {f"k{i}": "v" for i in range(16)},
            "parallel_tool_calls": False,
            "include": ["reasoning.encrypted_content"],
            "some_future_field": {"anything": True},  # unknown fields pass: the native path forwards them
        },
    ],
)
def test_validate_accepts(body: dict) -> None:
    validate(body)


@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [
        ({"input": "hi"}, "model", "missing_required_parameter", "Missing required parameter: 'model'."),
        ({"model": "m"}, "input", "missing_required_parameter", "Missing required parameter: 'input'."),
        (
            {"model": "m", "input": "hi", "temperature": "hot"},
            "temperature",
            "invalid_type",
            "Invalid type for 'temperature': expected a number, but got a string instead.",
        ),
        (
            {"model": "m", "input": "hi", "max_output_tokens": True},
            "max_output_tokens",
            "invalid_type",
            "Invalid type for 'max_output_tokens': expected an integer, but got a boolean instead.",
        ),
        (
            {"model": "m", "input": "hi", "max_output_tokens": 15},
            "max_output_tokens",
            "invalid_value",
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 15 instead.",
        ),
        (
            {"model": "m", "input": "hi", "top_p": 1.5},
            "top_p",
            "invalid_value",
            "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, but got 1.5 instead.",
        ),
        (
            {"model": "m", "input": "hi", "tool_choice": "any"},
            "tool_choice",
            "invalid_value",
            "Invalid value: 'any'. Supported values are: 'none', 'auto', and 'required'.",
        ),
        ({"model": 3, "input": "hi"}, "model", "invalid_type", None),
        ({"model": "m", "input": 3}, "input", "invalid_type", None),
        ({"model": "m", "input": ["hi"]}, "input[0]", "invalid_type", None),
        ({"model": "m", "input": "hi", "instructions": 1}, "instructions", "invalid_type", None),
        ({"model": "m", "input": "hi", "stream": 1}, "stream", "invalid_type", None),
        ({"model": "m", "input": "hi", "store": "yes"}, "store", "invalid_type", None),
        ({"model": "m", "input": "hi", "parallel_tool_calls": 0}, "parallel_tool_calls", "invalid_type", None),
        ({"model": "m", "input": "hi", "tools": {}}, "tools", "invalid_type", None),
        ({"model": "m", "input": "hi", "tools": [{"name": "f"}]}, "tools[0].type", "missing_required_parameter", None),
        ({"model": "m", "input": "hi", "tools": [{"type": 1}]}, "tools[0].type", "invalid_type", None),
        (
            {"model": "m", "input": "hi", "tool_choice": {"name": "f"}},
            "tool_choice.type",
            "missing_required_parameter",
            None,
        ),
        ({"model": "m", "input": "hi", "temperature": 2.5}, "temperature", "invalid_value", None),
        ({"model": "m", "input": "hi", "text": {"format": {"type": "xml"}}}, "text.format.type", "invalid_value", None),
        (
            {"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}},
            "text.format.name",
            "missing_required_parameter",
            None,
        ),
        (
            {"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format.schema",
            "missing_required_parameter",
            None,
        ),
        ({"model": "m", "input": "hi", "reasoning": {"effort": "huge"}}, "reasoning.effort", "invalid_value", None),
        ({"model": "m", "input": "hi", "reasoning": {"summary": "long"}}, "reasoning.summary", "invalid_value", None),
        ({"model": "m", "input": "hi", "reasoning": "high"}, "reasoning", "invalid_type", None),
        ({"model": "m", "input": "hi", "previous_response_id": 5}, "previous_response_id", "invalid_type", None),
        ({"model": "m", "input": "hi", "metadata": {"a": 1}}, "metadata.a", "invalid_type", None),
        (
            {"model": "m", "input": "hi", "metadata": {f"k{i}": "v" for i in range(17)}},
            "metadata",
            "invalid_value",
            None,
        ),
        ({"model": "m", "input": "hi", "include": [1]}, "include[0]", "invalid_type", None),
    ],
)
def test_validate_rejects(body: dict, param: str, code: str, message: str | None) -> None:
    err = error_of(validate, body)
    assert (err.param, err.code, err.type) == (param, code, "invalid_request_error")
    if message is not None:
        assert err.message == message


# -- input_items ------------------------------------------------------------------------------
def test_input_items_of_a_string() -> None:
    [item] = input_items({"model": "m", "input": "Hello"})
    assert item["id"].startswith("msg_")
    assert item == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "Hello"}],
        "id": item["id"],
        "status": "completed",
    }
    ITEMS.validate_python([item])


def test_input_items_fill_ids_and_shapes_as_the_listing_does() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "developer", "content": "Be terse."},
            {
                "type": "message",
                "id": "msg_keep",
                "role": "user",
                "content": [{"type": "input_image", "image_url": "https://x/y.png"}],
            },
            {"role": "assistant", "content": "Earlier answer."},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "22C"},
            {"type": "custom_tool_call", "call_id": "call_2", "name": "code_exec", "input": "print(1)"},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": "1"},
        ],
    }
    before = copy.deepcopy(body)
    items = input_items(body)
    assert body == before  # the request is not modified
    assert items[1]["id"] == "msg_keep"
    assert [i["id"].split("_")[0] for i in items] == ["msg", "msg", "msg", "fc", "fco", "ctc", "ctco"]
    assert items[0]["content"] == [{"type": "input_text", "text": "Be terse."}]
    assert items[2]["content"] == [{"type": "output_text", "text": "Earlier answer.", "annotations": []}]
    assert items[1]["content"][0]["detail"] == "auto"
    assert all(i["status"] == "completed" for i in items)
    ITEMS.validate_python(items)


# -- to_chat: messages ------------------------------------------------------------------------
def test_to_chat_text_input_with_instructions() -> None:
    # Text generation guide: instructions + a string input.
    body = {
        "model": "gpt-4.1",
        "instructions": "Talk like a pirate.",
        "input": "Are semicolons optional in JavaScript?",
    }
    assert to_chat(body, [], "p") == {
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "Talk like a pirate."},
            {"role": "user", "content": "Are semicolons optional in JavaScript?"},
        ],
    }


def test_to_chat_roles_and_parts() -> None:
    body = {
        "model": "m",
        "input": [
            {
                "role": "developer",
                "content": [{"type": "input_text", "text": "A"}, {"type": "input_text", "text": "B"}],
            },
            {"role": "system", "content": "S"},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is in this image?"},
                    {"type": "input_image", "image_url": "https://example.com/a.jpg", "detail": "low"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "A "}, {"type": "refusal", "refusal": "cat"}],
            },
            {"role": "user", "content": [{"type": "input_text", "text": "thanks"}]},
        ],
    }
    assert to_chat(body, [], "p")["messages"] == [
        {"role": "system", "content": "A\n\nB"},  # developer -> system: most chat servers reject 'developer'
        {"role": "system", "content": "S"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is in this image?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg", "detail": "low"}},
            ],
        },
        {"role": "assistant", "content": "A cat"},
        {"role": "user", "content": "thanks"},
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "input_image", "file_id": "file-123"}, "input[0].content[0].file_id"),
        ({"type": "input_file", "file_id": "file-123"}, "input[0].content[0]"),
        ({"type": "input_audio", "input_audio": {}}, "input[0].content[0]"),
    ],
)
def test_to_chat_refuses_content_the_chat_form_cannot_carry(part: dict, param: str) -> None:
    err = error_of(to_chat, {"model": "m", "input": [{"role": "user", "content": [part]}]}, [], "acme")
    assert err.param == param
    assert "provider 'acme'" in err.message


def test_function_calling_round_trip() -> None:
    # Function calling guide: the model's function_call and the app's function_call_output go back as input.
    body = {
        "model": "gpt-4.1",
        "tools": [WEATHER],
        "input": [
            {"role": "user", "content": "What is the weather like in Paris today?"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_12345xyz",
                "name": "get_weather",
                "arguments": '{"location":"Paris, France"}',
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "call_12345xyz", "output": "14"},
        ],
    }
    chat = to_chat(body, [], "p")
    assert chat["messages"] == [
        {"role": "user", "content": "What is the weather like in Paris today?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_12345xyz",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris, France"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_12345xyz", "content": "14"},
    ]
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": WEATHER["description"],
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        }
    ]


def test_calls_merge_with_each_other_and_the_text_before_them() -> None:
    call = {"type": "function_call", "name": "get_weather", "arguments": "{}"}
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": "Paris and Rome?"},
            {"role": "assistant", "content": "Checking both."},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "two calls"}]},
            {**call, "call_id": "c1"},
            {**call, "call_id": "c2"},
            {"type": "function_call_output", "call_id": "c1", "output": "14"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "20"}]},
        ],
    }
    messages = to_chat(body, [], "p")["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert messages[1]["content"] == "Checking both."
    assert [tc["id"] for tc in messages[1]["tool_calls"]] == ["c1", "c2"]
    assert messages[3]["content"] == "20"


def test_tool_output_images_follow_the_tool_messages() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    body = {
        "model": "m",
        "input": [
            {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "view_image", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "one"}, image]},
            {"type": "function_call_output", "call_id": "c2", "output": "two"},
        ],
    }
    messages = to_chat(body, [], "p")["messages"]
    assert [m["role"] for m in messages] == ["assistant", "tool", "tool", "user"]
    assert messages[1]["content"] == "one"
    assert messages[3]["content"] == [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]


def test_codex_custom_tools_and_namespaces() -> None:
    # Codex's request shape: a freeform (custom) apply_patch tool with a grammar, function tools, and
    # MCP tools in namespaces carried by an `additional_tools` input item (openai/codex, codex-rs/tools).
    grammar = {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}
    apply_patch = {"type": "custom", "name": "apply_patch", "description": "Edit files.", "format": grammar}
    mcp = {
        "type": "namespace",
        "name": "mcp__docs__",
        "description": "Docs server",
        "tools": [{"type": "function", "name": "search", "parameters": {"type": "object", "properties": {}}}],
    }
    collab = {"type": "namespace", "name": "collaboration", "description": "", "tools": [CODE_EXEC]}
    body = {
        "model": "gpt-5-codex",
        "instructions": "You are Codex.",
        "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}, apply_patch],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "input": [
            {"type": "additional_tools", "role": "developer", "tools": [mcp, collab]},
            {"role": "user", "content": [{"type": "input_text", "text": "fix the bug"}]},
            {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": "*** Begin Patch\n"},
            {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"},
            {
                "type": "function_call",
                "call_id": "call_s",
                "namespace": "mcp__docs__",
                "name": "search",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "call_s", "output": "found"},
        ],
    }
    validate(body)
    chat = to_chat(body, [], "acme")
    assert [t["function"]["name"] for t in chat["tools"]] == [
        "shell",
        "apply_patch",
        "mcp__docs__search",
        "collaboration__code_exec",
    ]
    patch_fn = chat["tools"][1]["function"]
    assert patch_fn["parameters"] == {
        "type": "object",
        "properties": {"input": {"type": "string"}},
        "required": ["input"],
        "additionalProperties": False,
    }
    assert patch_fn["description"].startswith("Edit files.\n\n") and "start: begin_patch" in patch_fn["description"]
    assert chat["messages"][1:] == [
        {"role": "user", "content": "fix the bug"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_p",
                    "type": "function",
                    "function": {"name": "apply_patch", "arguments": '{"input":"*** Begin Patch\\n"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_p", "content": "Done!"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_s", "type": "function", "function": {"name": "mcp__docs__search", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_s", "content": "found"},
    ]
    assert (chat["tool_choice"], chat["parallel_tool_calls"], chat["reasoning_effort"]) == ("auto", False, "medium")
    assert chat["stream_options"] == {"include_usage": True}
    assert "store" not in chat and "include" not in chat and "reasoning" not in chat


@pytest.mark.parametrize(
    "tool",
    [
        "web_search",
        "web_search_preview",
        "file_search",
        "code_interpreter",
        "computer_use_preview",
        "image_generation",
        "mcp",
        "local_shell",
        "shell",
        "apply_patch",
    ],
)
def test_hosted_tools_are_refused(tool: str) -> None:
    err = error_of(to_chat, {"model": "m", "input": "hi", "tools": [WEATHER, {"type": tool}]}, [], "acme")
    assert (err.param, err.code) == ("tools", "unsupported_parameter")
    assert err.message.startswith(f"The tool '{tool}' is not supported by provider 'acme': ")


def test_hosted_tool_inside_additional_tools_names_its_place() -> None:
    body = {
        "model": "m",
        "input": [{"type": "additional_tools", "role": "developer", "tools": [{"type": "web_search"}]}],
    }
    assert error_of(to_chat, body, [], "acme").param == "input[0].tools"


def test_tool_choice_and_parallel_calls_need_tools() -> None:
    body = {"model": "m", "input": "hi", "tools": [], "tool_choice": "none", "parallel_tool_calls": True}
    assert to_chat(body, [], "p") == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("required", "required"),
        ({"type": "function", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
        ({"type": "custom", "name": "code_exec"}, {"type": "function", "function": {"name": "code_exec"}}),
        ({"type": "function", "name": "search"}, {"type": "function", "function": {"name": "ns__search"}}),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: Any) -> None:
    ns = {"type": "namespace", "name": "ns", "description": "", "tools": [{"type": "function", "name": "search"}]}
    body = {"model": "m", "input": "hi", "tools": [WEATHER, CODE_EXEC, ns], "tool_choice": choice}
    assert to_chat(body, [], "p")["tool_choice"] == expected


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"}]},
        {"type": "file_search"},
        {"type": "mcp", "server_label": "x"},
    ],
)
def test_tool_choice_the_chat_form_cannot_express(choice: dict) -> None:
    err = error_of(to_chat, {"model": "m", "input": "hi", "tools": [WEATHER], "tool_choice": choice}, [], "acme")
    assert (err.param, err.code) == ("tool_choice", "unsupported_parameter") and "'acme'" in err.message


def test_generation_parameters() -> None:
    body = {
        "model": "m",
        "input": "hi",
        "temperature": 0.2,
        "top_p": 0.9,
        "safety_identifier": "user-42",
        "metadata": {"a": "b"},
        "store": True,
        "max_output_tokens": 500,
        "top_logprobs": 3,
        "include": ["message.output_text.logprobs", "something.new"],
        "truncation": "disabled",
        "service_tier": "auto",
        "reasoning": {"summary": "detailed"},  # summary alone asks for nothing the chat form must refuse
    }
    assert to_chat(body, [], "p") == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-42",
        "logprobs": True,
        "top_logprobs": 3,
        "max_tokens": 500,
    }
    assert to_chat({"model": "m", "input": "hi", "user": "u", "safety_identifier": "s"}, [], "p")["user"] == "u"


def test_structured_outputs() -> None:
    # Structured Outputs guide: the calendar_event example.
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "date": {"type": "string"},
            "participants": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "date", "participants"],
        "additionalProperties": False,
    }
    body = {
        "model": "gpt-4o-2024-08-06",
        "input": [
            {"role": "system", "content": "Extract the event information."},
            {"role": "user", "content": "Alice and Bob are going to a science fair on Friday."},
        ],
        "text": {"format": {"type": "json_schema", "name": "calendar_event", "schema": schema, "strict": True}},
    }
    validate(body)
    assert to_chat(body, [], "p")["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "calendar_event", "schema": schema, "strict": True},
    }
    body["text"] = {"format": {"type": "json_object"}}
    assert to_chat(body, [], "p")["response_format"] == {"type": "json_object"}
    body["text"] = {"format": {"type": "text"}, "verbosity": "medium"}
    assert "response_format" not in to_chat(body, [], "p")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"truncation": "auto"}, "truncation"),
        ({"background": True}, "background"),
        ({"prompt": {"id": "pmpt_123"}}, "prompt"),
        ({"conversation": "conv_123"}, "conversation"),
        ({"service_tier": "flex"}, "service_tier"),
    ],
)
def test_parameters_the_chat_form_cannot_carry(extra: dict, param: str) -> None:
    err = error_of(to_chat, {"model": "m", "input": "hi", **extra}, [], "acme")
    assert (err.param, err.code) == (param, "unsupported_parameter") and "provider 'acme'" in err.message


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "item_reference", "id": "msg_1"}, "input[1]"),
        ({"type": "web_search_call", "id": "ws_1", "status": "completed"}, "input[1]"),
        ({"role": "tool", "content": "x"}, "input[1].role"),
        ({"type": "function_call", "call_id": "c", "name": "f"}, "input[1].arguments"),
    ],
)
def test_items_the_chat_form_cannot_carry(item: dict, param: str) -> None:
    err = error_of(to_chat, {"model": "m", "input": [{"role": "user", "content": "hi"}, item]}, [], "acme")
    assert err.param == param


def test_previous_response_history_goes_first() -> None:
    # Conversation state guide: "tell me a joke", then previous_response_id with "tell me another".
    first = {"model": "gpt-4o-mini", "input": "tell me a joke", "store": True}
    answer = chat_answer({"content": "Why did the chicken cross the road?", "reasoning_content": "jokes..."})
    response = from_chat(answer, first, "resp_1", CREATED, "gpt-4o-mini")
    kept = stored(response, input_items(first))
    assert kept["response"] is response and kept["output"] == response["output"]
    follow = {"model": "gpt-4o-mini", "previous_response_id": "resp_1", "instructions": "Be funny.", "input": "another"}
    assert to_chat(follow, history_of(kept), "p")["messages"] == [
        {"role": "system", "content": "Be funny."},
        {"role": "user", "content": "tell me a joke"},
        {"role": "assistant", "content": "Why did the chicken cross the road?"},  # the reasoning item is dropped
        {"role": "user", "content": "another"},
    ]
    bad_history = [{"type": "item_reference", "id": "x"}]
    assert error_of(to_chat, follow, bad_history, "p").param == "previous_response_id"


# -- from_chat --------------------------------------------------------------------------------
def test_from_chat_text_golden() -> None:
    request = {"model": "gpt-4.1", "input": "Tell me a three sentence bedtime story about a unicorn."}
    answer = chat_answer(
        {"content": "Once upon a time..."},
        usage={
            "prompt_tokens": 36,
            "completion_tokens": 87,
            "total_tokens": 123,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    )
    r = from_chat(answer, request, "resp_67ccd2bed1ec8190", CREATED, "gpt-4.1", completed_at=CREATED + 1)
    msg_id = r["output"][0]["id"]
    assert msg_id.startswith("msg_")
    # The shape of the API reference's example Response, field for field.
    assert r == {
        "id": "resp_67ccd2bed1ec8190",
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "background": False,
        "completed_at": CREATED + 1,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": "gpt-4.1",
        "output": [
            {
                "id": msg_id,
                "type": "message",
                "status": "completed",
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "Once upon a time..."}],
                "role": "assistant",
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 36,
            "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
            "output_tokens": 87,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 123,
        },
        "user": None,
        "metadata": {},
    }
    assert Response.model_validate(r).output_text == "Once upon a time..."


def test_from_chat_echoes_the_request() -> None:
    request = {
        "model": "m",
        "input": "hi",
        "instructions": "Be brief.",
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "temperature": 0.5,
        "top_p": 0.5,
        "max_output_tokens": 100,
        "parallel_tool_calls": False,
        "store": False,
        "previous_response_id": "resp_0",
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_object"}},
        "metadata": {"k": "v"},
        "user": "u",
    }
    r = from_chat(chat_answer({"content": "{}"}), request, "resp_1", CREATED, "alias-name")
    for key in (
        "instructions",
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "max_output_tokens",
        "metadata",
        "user",
    ):
        assert r[key] == request[key], key
    assert (r["model"], r["parallel_tool_calls"], r["store"], r["previous_response_id"]) == (
        "alias-name",
        False,
        False,
        "resp_0",
    )
    assert r["reasoning"] == {"effort": "low", "summary": "auto"}
    assert r["text"] == {"format": {"type": "json_object"}, "verbosity": "medium"}
    Response.model_validate(r)


def test_from_chat_reasoning_text_and_calls_in_order() -> None:
    ns = {
        "type": "namespace",
        "name": "mcp__docs__",
        "description": "",
        "tools": [{"type": "function", "name": "search"}],
    }
    request = {"model": "m", "input": "hi", "tools": [WEATHER, CODE_EXEC, ns]}
    answer = chat_answer(
        {
            "content": "Let me check.",
            "reasoning_content": "The user wants weather.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "code_exec", "arguments": '{"input": "print(\\"hi\\")"}'},
                },
                {"id": "call_c", "type": "function", "function": {"name": "mcp__docs__search", "arguments": "{}"}},
            ],
        },
        finish="tool_calls",
    )
    r = from_chat(answer, request, "resp_1", CREATED, "m")
    out = r["output"]
    assert [o["type"] for o in out] == ["reasoning", "message", "function_call", "custom_tool_call", "function_call"]
    assert out[0]["summary"] == [{"type": "summary_text", "text": "The user wants weather."}]
    assert out[0]["id"].startswith("rs_")
    fc = out[2]
    assert fc["id"].startswith("fc_")
    assert {k: fc[k] for k in ("call_id", "name", "arguments", "status")} == {
        "call_id": "call_a",
        "name": "get_weather",
        "arguments": '{"location":"Paris"}',
        "status": "completed",
    }
    assert {k: out[3][k] for k in ("call_id", "name", "input")} == {
        "call_id": "call_b",
        "name": "code_exec",
        "input": 'print("hi")',
    }
    assert (out[4]["namespace"], out[4]["name"]) == ("mcp__docs__", "search")
    assert r["status"] == "completed"
    Response.model_validate(r)


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_from_chat_incomplete(finish: str, reason: str) -> None:
    r = from_chat(chat_answer({"content": "Once upon a"}, finish), {"model": "m", "input": "x"}, "resp_1", CREATED, "m")
    assert (r["status"], r["incomplete_details"], r["output"][0]["status"]) == (
        "incomplete",
        {"reason": reason},
        "incomplete",
    )
    assert "completed_at" not in r
    Response.model_validate(r)


def test_from_chat_refusal_and_logprobs() -> None:
    r = from_chat(
        chat_answer({"content": None, "refusal": "I can't help with that."}),
        {"model": "m", "input": "x"},
        "resp_1",
        CREATED,
        "m",
    )
    assert r["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]
    answer = chat_answer({"content": "Hi"})
    answer["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "bytes": [72, 105],
                "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": None}],
            }
        ]
    }
    request = {"model": "m", "input": "x", "top_logprobs": 1}
    part = from_chat(answer, request, "resp_1", CREATED, "m")["output"][0]["content"][0]
    assert part["logprobs"] == [
        {
            "token": "Hi",
            "logprob": -0.1,
            "bytes": [72, 105],
            "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": []}],
        }
    ]
    Response.model_validate(from_chat(answer, request, "resp_1", CREATED, "m"))


def test_from_chat_without_usage_still_has_a_usage_object() -> None:
    answer = chat_answer({"content": "x"})
    del answer["usage"]
    usage = from_chat(answer, {"model": "m", "input": "x"}, "resp_1", CREATED, "m")["usage"]
    assert usage == {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }


def sdk_client(handler: Any) -> OpenAI:
    return OpenAI(
        api_key="sk-test",
        base_url="http://gateway.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


def test_sdk_create_reads_from_chat_answer() -> None:
    request = {"model": "gpt-4.1", "input": "hi", "tools": [WEATHER]}
    answer = chat_answer(
        {
            "content": "Sure.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Oslo"}'},
                }
            ],
        }
    )
    body = from_chat(answer, request, "resp_1", CREATED, "gpt-4.1")
    client = sdk_client(lambda req: httpx.Response(200, json=body))
    r = client.responses.create(model="gpt-4.1", input="hi", tools=[WEATHER])  # type: ignore[list-item]
    assert r.output_text == "Sure."
    assert r.output[1].type == "function_call" and r.output[1].arguments == '{"location":"Oslo"}'
    assert r.usage is not None and r.usage.total_tokens == 15


# -- streaming --------------------------------------------------------------------------------
TEXT_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hello"}),
    chunk({"content": " world"}),
    chunk({}, "stop"),
    usage_chunk(),
]


def test_stream_text_golden() -> None:
    request = {"model": "gpt-4.1", "input": "hi", "stream": True}
    events, s = run_stream(request, TEXT_CHUNKS)
    assert types_of(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0]["response"]
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    assert events[1]["response"] == created
    msg_id = events[2]["item"]["id"]
    assert events[2] == {
        "type": "response.output_item.added",
        "sequence_number": 2,
        "output_index": 0,
        "item": {"id": msg_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"},
    }
    assert events[3] == {
        "type": "response.content_part.added",
        "sequence_number": 3,
        "item_id": msg_id,
        "output_index": 0,
        "content_index": 0,
        "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
    }
    assert events[4] == {
        "type": "response.output_text.delta",
        "sequence_number": 4,
        "item_id": msg_id,
        "output_index": 0,
        "content_index": 0,
        "delta": "Hello",
        "logprobs": [],
    }
    assert events[6]["text"] == "Hello world"
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": "Hello world"}
    assert events[7]["part"] == part
    final_item = {"id": msg_id, "type": "message", "status": "completed", "content": [part], "role": "assistant"}
    assert events[8]["item"] == final_item
    done = events[9]["response"]
    assert done["status"] == "completed" and done["output"] == [final_item] and done["completed_at"] >= CREATED
    assert done["usage"]["input_tokens"] == 7 and done["usage"]["output_tokens"] == 9
    assert s.response == done and s.usage == usage_chunk()["usage"]
    assert Response.model_validate(done).output_text == "Hello world"


def test_stream_reasoning_then_text() -> None:
    chunks = [
        chunk({"reasoning_content": "Thinking"}),
        chunk({"reasoning_content": " hard."}),
        chunk({"content": "42"}),
        chunk({}, "stop"),
    ]
    events, s = run_stream({"model": "m", "input": "q", "reasoning": {"summary": "auto"}}, chunks)
    assert types_of(events)[2:-1] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    rs_id = events[2]["item"]["id"]
    assert events[2]["item"] == {"id": rs_id, "type": "reasoning", "summary": []}
    assert events[3] == {
        "type": "response.reasoning_summary_part.added",
        "sequence_number": 3,
        "item_id": rs_id,
        "output_index": 0,
        "summary_index": 0,
        "part": {"type": "summary_text", "text": ""},
    }
    assert events[6]["text"] == "Thinking hard." and events[7]["part"] == {
        "type": "summary_text",
        "text": "Thinking hard.",
    }
    assert events[9]["output_index"] == 1
    output = s.response["output"]
    assert output[0] == {
        "id": rs_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "Thinking hard."}],
    }
    # No usage chunk came: usage is still an object of zeros.
    assert s.usage is None and s.response["usage"]["total_tokens"] == 0


def tool_fragment(index: int, *, id: str | None = None, name: str | None = None, args: str | None = None) -> dict:
    fn: dict = {}
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    tc: dict = {"index": index, "function": fn}
    if id is not None:
        tc.update(id=id, type="function")
    return chunk({"tool_calls": [tc]})


INTERLEAVED = [
    chunk({"content": "Checking."}),
    tool_fragment(0, id="call_a", name="get_weather", args=""),
    tool_fragment(1, id="call_b", name="get_weather", args='{"loc'),
    tool_fragment(0, args='{"location":'),
    tool_fragment(1, args='ation":"Rome"}'),
    tool_fragment(0, args='"Paris"}'),
    chunk({}, "tool_calls"),
    usage_chunk(),
]


def test_stream_two_interleaved_tool_calls() -> None:
    events, s = run_stream({"model": "m", "input": "x", "tools": [WEATHER]}, INTERLEAVED)
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [
        (0, "message"),
        (1, "function_call"),
        (2, "function_call"),
    ]
    # The text item closes before the first call opens.
    assert types_of(events).index("response.output_item.done") < types_of(events).index(
        "response.function_call_arguments.delta"
    )
    first = added[1]["item"]
    assert {k: first[k] for k in ("call_id", "name", "arguments", "status")} == {
        "call_id": "call_a",
        "name": "get_weather",
        "arguments": "",
        "status": "in_progress",
    }
    by_index: dict[int, str] = {}
    for e in events:
        if e["type"] == "response.function_call_arguments.delta":
            by_index[e["output_index"]] = by_index.get(e["output_index"], "") + e["delta"]
    assert by_index == {1: '{"location":"Paris"}', 2: '{"location":"Rome"}'}
    dones = {e["output_index"]: e["arguments"] for e in events if e["type"] == "response.function_call_arguments.done"}
    assert dones == by_index
    calls = s.response["output"][1:]
    assert [(c["call_id"], c["arguments"], c["status"]) for c in calls] == [
        ("call_a", '{"location":"Paris"}', "completed"),
        ("call_b", '{"location":"Rome"}', "completed"),
    ]


def test_stream_custom_tool_input_is_unwrapped_as_it_streams() -> None:
    # Escapes split across fragments: \n, \", a \u escape, and a surrogate pair (U+1F600).
    pieces = ['{"in', 'put": "line1\\', 'nsaid \\"hi\\" caf\\u00', "e9 \\ud83d", '\\ude00"', "}"]
    chunks = [tool_fragment(0, id="call_c", name="code_exec", args=pieces[0])]
    chunks += [tool_fragment(0, args=p) for p in pieces[1:]]
    events, s = run_stream({"model": "m", "input": "x", "tools": [CODE_EXEC]}, [*chunks, chunk({}, "tool_calls")])
    expected = 'line1\nsaid "hi" café \U0001f600'
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert len(deltas) > 2 and "".join(deltas) == expected
    [done] = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    assert done["input"] == expected
    item = s.response["output"][0]
    assert (item["type"], item["call_id"], item["name"], item["input"]) == (
        "custom_tool_call",
        "call_c",
        "code_exec",
        expected,
    )


def test_stream_custom_tool_with_unexpected_arguments_sends_them_at_the_end() -> None:
    chunks = [
        tool_fragment(0, id="call_c", name="code_exec", args="print("),
        tool_fragment(0, args="1)"),
        chunk({}, "tool_calls"),
    ]
    events, s = run_stream({"model": "m", "input": "x", "tools": [CODE_EXEC]}, chunks)
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert deltas == ["print(1)"] and s.response["output"][0]["input"] == "print(1)"


def test_stream_namespaced_call_maps_back() -> None:
    ns = {
        "type": "namespace",
        "name": "mcp__docs__",
        "description": "",
        "tools": [{"type": "function", "name": "search"}],
    }
    request = {
        "model": "m",
        "input": [{"type": "additional_tools", "role": "developer", "tools": [ns]}, {"role": "user", "content": "q"}],
    }
    _, s = run_stream(request, [tool_fragment(0, id="c", name="mcp__docs__search", args="{}")])
    item = s.response["output"][0]
    assert (item["namespace"], item["name"]) == ("mcp__docs__", "search")


def test_stream_call_name_arriving_late_and_index_reuse() -> None:
    chunks = [
        tool_fragment(0, id="call_a", args='{"a":'),  # no name yet
        tool_fragment(0, name="get_weather", args="1}"),
        tool_fragment(0, id="call_b", name="get_weather", args="{}"),  # same index, new id: the next call
    ]
    events, s = run_stream({"model": "m", "input": "x", "tools": [WEATHER]}, chunks)
    assert [(c["call_id"], c["arguments"]) for c in s.response["output"]] == [("call_a", '{"a":1}'), ("call_b", "{}")]
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == ['{"a":', "1}", "{}"]


def test_stream_length_cut_is_incomplete() -> None:
    chunks = [chunk({"content": "Once upon a"}), chunk({}, "length"), usage_chunk(5, 16)]
    events, s = run_stream({"model": "m", "input": "x", "max_output_tokens": 16}, chunks)
    assert s.response == events[-1]["response"]
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["status"] == "incomplete"
    assert "completed_at" not in last["response"]
    assert last["response"]["usage"]["output_tokens"] == 16


def test_stream_failure_mid_stream() -> None:
    chunks = [chunk({"content": "Partial"}), tool_fragment(0, id="call_a", name="get_weather", args='{"lo')]
    events, _ = run_stream(
        {"model": "m", "input": "x", "tools": [WEATHER]}, chunks, fail=("upstream_error", "Upstream hung up.")
    )
    assert "response.function_call_arguments.done" not in types_of(events)
    last = events[-1]
    assert last["type"] == "response.failed"
    # The SDK only knows a fixed set of error codes; others are reported as server_error.
    assert last["response"]["error"] == {"code": "server_error", "message": "Upstream hung up."}
    assert last["response"]["status"] == "failed"
    assert [(o["type"], o["status"]) for o in last["response"]["output"]] == [
        ("message", "completed"),
        ("function_call", "incomplete"),
    ]
    assert last["response"]["output"][1]["arguments"] == '{"lo'
    _, s2 = run_stream({"model": "m", "input": "x"}, [], fail=("rate_limit_exceeded", "Slow down."))
    assert s2.response["error"]["code"] == "rate_limit_exceeded"


def test_stream_starts_itself_and_refusals() -> None:
    s = ResponsesStream({"model": "m", "input": "x"}, "resp_1", CREATED, "m")
    events = parse_sse(s.feed(chunk({"refusal": "No."})) + s.finish())
    assert types_of(events)[:2] == ["response.created", "response.in_progress"] and s.start() == b""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "response.refusal.delta" in types_of(events)
    [done] = [e for e in events if e["type"] == "response.refusal.done"]
    assert done["refusal"] == "No."
    assert s.response["output"][0]["content"] == [{"type": "refusal", "refusal": "No."}]


def test_stream_logprobs_when_asked() -> None:
    lp = {"content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}]}
    c = chunk({"content": "Hi"})
    c["choices"][0]["logprobs"] = lp
    events, s = run_stream({"model": "m", "input": "x", "include": ["message.output_text.logprobs"]}, [c])
    [delta] = [e for e in events if e["type"] == "response.output_text.delta"]
    assert delta["logprobs"] == [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}]
    assert s.response["output"][0]["content"][0]["logprobs"] == delta["logprobs"]


def test_sdk_stream_helper_accumulates_our_events() -> None:
    """The openai SDK's own ``client.responses.stream`` helper, fed our bytes over a mock transport."""
    chunks = [chunk({"reasoning_content": "Two cities."}), *INTERLEAVED]
    request = {"model": "gpt-4.1", "input": "Weather in Paris and Rome?", "tools": [WEATHER], "stream": True}
    s = ResponsesStream(request, "resp_sdk", CREATED, "gpt-4.1")
    body = s.start() + b"".join(s.feed(c) for c in chunks) + s.finish()
    client = sdk_client(lambda req: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}))
    seen = []
    with client.responses.stream(model="gpt-4.1", input="Weather in Paris and Rome?", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        for event in stream:
            seen.append(event.type)
            if event.type == "response.function_call_arguments.delta":
                assert event.snapshot  # the helper's running snapshot of the arguments
        final = stream.get_final_response()
    assert seen[-1] == "response.completed"
    assert final.id == "resp_sdk" and final.output_text == "Checking."
    calls = [o for o in final.output if o.type == "function_call"]
    assert [c.parsed_arguments for c in calls] == [
        {"location": "Paris"},
        {"location": "Rome"},
    ]  # strict tools are parsed
    assert final.output[0].type == "reasoning"
    accumulated = final.model_dump(mode="json", exclude_none=True)["output"]
    for item in accumulated:
        item.pop("parsed_arguments", None)
    assert accumulated == Response.model_validate(s.response).model_dump(mode="json", exclude_none=True)["output"]


def test_a_delta_put_together_as_bytes_is_what_emit_gives() -> None:
    from gateway.apis.responses_stream import ResponsesStream

    s = ResponsesStream({"model": "m", "input": "x"}, "resp_1", 1, "m")
    ids = {"item_id": "msg_1", "output_index": 2, "content_index": 0}
    for text in ("plain", 'quote " and \\ back', "line\nbreak", "é ✓ \u2028", ""):
        for etype, tail, extra in (
            ("response.output_text.delta", b',"logprobs":[]', {"logprobs": []}),
            ("response.refusal.delta", b"", {}),
        ):
            by_hand: list[bytes] = []
            s._delta(by_hand, etype.encode(), ids, text, tail)
            reference: list[bytes] = []
            s._seq -= 1
            s._emit(reference, etype, **ids, delta=text, **extra)
            assert by_hand == reference
