"""GeminiAdapter's request translation (chat and legacy completions), checked against Google's own documented examples.

Each golden test names the page its Gemini-side JSON comes from. The OpenAI side is the request a
client would send for the same conversation.
"""

from __future__ import annotations

import orjson
import pytest

from gateway.config import ProviderConfig
from gateway.errors import GatewayError
from providers.base import CHAT, COMPLETIONS, EMBEDDINGS, CallContext, Target
from providers.gemini import GeminiAdapter
from tests.unit.providers.gemini import GEMINI, KEY

build, chat, refused = GEMINI.built, GEMINI.chat, GEMINI.refused


# -- URLs, credentials, model names ------------------------------------------------------------


def test_urls_and_key_header():
    # https://ai.google.dev/api#authentication: the key goes in x-goog-api-key.
    req, _, _ = build(chat([{"role": "user", "content": "hi"}]))
    assert req.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
    assert req.headers["x-goog-api-key"] == KEY and KEY not in req.url and "key=" not in req.url
    assert req.stream is False
    req, _, _ = build(chat([{"role": "user", "content": "hi"}], stream=True), base_url="http://127.0.0.1:9/")
    assert req.url == "http://127.0.0.1:9/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    assert req.stream is True and req.headers["accept"] == "text/event-stream"
    req, _, _ = build({"model": "m", "input": "x"}, EMBEDDINGS, model="text-embedding-004")
    assert req.url.endswith("/v1beta/models/text-embedding-004:embedContent")
    req, _, _ = build({"model": "m", "input": ["x"]}, EMBEDDINGS, model="text-embedding-004")
    assert req.url.endswith("/v1beta/models/text-embedding-004:batchEmbedContents")


def test_no_key_configured_sends_no_key_header():
    a = GeminiAdapter("gemini", ProviderConfig(kind="gemini"))
    req = a.build_request(CHAT, chat([{"role": "user", "content": "hi"}]), Target("m"), CallContext("gemini/m"))
    assert "x-goog-api-key" not in req.headers


@pytest.mark.parametrize(
    "name", ["../files", "a/b", "m?key=1", "m#x", "m:streamGenerateContent", "m%2Fx", "", "m..x", "-m", "m n"]
)
def test_unsafe_model_names_are_refused(name):
    with pytest.raises(GatewayError) as e:
        build(chat([{"role": "user", "content": "hi"}]), model=name)
    assert e.value.status == 400 and e.value.param == "model"


def test_models_prefix_is_accepted():
    req, _, _ = build(chat([{"role": "user", "content": "hi"}]), model="models/gemini-2.5-flash")
    assert "/v1beta/models/gemini-2.5-flash:generateContent" in req.url


# -- chat requests (golden) --------------------------------------------------------------------


def test_golden_generation_config():
    # https://github.com/google-gemini/api-examples/blob/main/rest/configure_model_parameters.sh
    # (the "Configure model parameters" sample of https://ai.google.dev/gemini-api/docs/text-generation)
    _, payload, _ = build(
        chat(
            [{"role": "user", "content": "Explain how AI works"}],
            stop=["Title"],
            temperature=1.0,
            max_tokens=800,
            top_p=0.8,
            top_k=10,
        )
    )
    assert payload == {
        "contents": [{"role": "user", "parts": [{"text": "Explain how AI works"}]}],
        "generationConfig": {
            "stopSequences": ["Title"],
            "temperature": 1.0,
            "maxOutputTokens": 800,
            "topP": 0.8,
            "topK": 10,
        },
    }


def test_golden_multi_turn_chat():
    # https://github.com/google-gemini/api-examples/blob/main/rest/chat.sh ("chat" sample)
    _, payload, _ = build(
        chat(
            [
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Great to meet you. What would you like to know?"},
                {"role": "user", "content": "I have two dogs in my house. How many paws are in my house?"},
            ]
        )
    )
    assert payload == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}]},
            {"role": "model", "parts": [{"text": "Great to meet you. What would you like to know?"}]},
            {"role": "user", "parts": [{"text": "I have two dogs in my house. How many paws are in my house?"}]},
        ]
    }


def test_golden_system_instruction():
    # https://firebase.google.com/docs/ai-logic/server-prompt-templates/get-started ("formatted test request")
    system = "All output must be a clearly structured invoice document.\nUse a tabular or clearly delineated list format for line items."
    _, payload, _ = build(
        chat(
            [
                {"role": "system", "content": system},
                {"role": "user", "content": "Create an example customer invoice for a customer named Jane"},
            ]
        )
    )
    assert payload == {
        "contents": [
            {"role": "user", "parts": [{"text": "Create an example customer invoice for a customer named Jane"}]}
        ],
        "systemInstruction": {"parts": [{"text": system}]},
    }


def test_developer_messages_and_text_part_lists_join_the_system_instruction():
    _, payload, _ = build(
        chat(
            [
                {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "Answer in French."},
            ]
        )
    )
    assert payload["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]}


def test_golden_inline_image():
    # https://github.com/google-gemini/api-examples/blob/main/rest/chat.sh ("chat_streaming_with_images"):
    # {"text": ...} then {"inline_data": {"mime_type": "image/jpeg", "data": <base64>}} (camelCase on the wire).
    _, payload, _ = build(
        chat(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Tell me about this instrument"},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSk"}},
                    ],
                }
            ]
        )
    )
    assert payload["contents"][0]["parts"] == [
        {"text": "Tell me about this instrument"},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSk"}},
    ]


def test_image_urls_become_file_data_with_a_guessed_mime_type():
    # fileData {mimeType, fileUri}: https://ai.google.dev/api/caching#FileData
    parts = [
        {"type": "image_url", "image_url": {"url": "https://example.com/a/cat.PNG?x=1"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/pic.webp"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/render"}},
    ]
    _, payload, _ = build(chat([{"role": "user", "content": parts}]))
    assert [p["fileData"] for p in payload["contents"][0]["parts"]] == [
        {"mimeType": "image/png", "fileUri": "https://example.com/a/cat.PNG?x=1"},
        {"mimeType": "image/webp", "fileUri": "gs://bucket/pic.webp"},
        {"mimeType": "image/jpeg", "fileUri": "https://example.com/render"},
    ]


def test_audio_and_file_parts():
    parts = [
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"}},
    ]
    _, payload, _ = build(chat([{"role": "user", "content": parts}]))
    assert payload["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGR"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}},
    ]


def test_bad_parts_name_their_place():
    refused(chat([{"role": "user", "content": [{"type": "video", "x": 1}]}]), param="messages[0].content[0]")
    bad_url = [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]
    refused(chat([{"role": "user", "content": bad_url}]), param="messages[0].content[0].image_url.url")
    refused(chat([{"role": "function", "name": "f", "content": "x"}]), param="messages[0].role")
    refused(chat([{"role": "system", "content": "only a system prompt"}]), param="messages")


LIGHT_TOOLS = [
    {"type": "function", "function": {"name": "enable_lights", "description": "Turn on the lighting system."}},
    {
        "type": "function",
        "function": {
            "name": "set_light_color",
            "description": "Set the light color. Lights must be enabled for this to work.",
            "parameters": {
                "type": "object",
                "properties": {
                    "rgb_hex": {
                        "type": "string",
                        "description": "The light color as a 6-digit hex string, e.g. ff0000 for red.",
                    }
                },
                "required": ["rgb_hex"],
            },
        },
    },
    {"type": "function", "function": {"name": "stop_lights", "description": "Turn off the lighting system."}},
]
SYSTEM = (
    "You are a helpful lighting system bot. You can turn lights on and off, and you can set the color. "
    "Do not perform any other tasks."
)


@pytest.mark.parametrize(
    ("tool_choice", "config"),
    [
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "set_light_color"}},
            {"mode": "ANY", "allowedFunctionNames": ["set_light_color"]},
        ),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [
                        {"type": "function", "function": {"name": "set_light_color"}},
                        {"type": "function", "function": {"name": "stop_lights"}},
                    ],
                },
            },
            {"mode": "ANY", "allowedFunctionNames": ["set_light_color", "stop_lights"]},
        ),
    ],
)
def test_golden_function_calling_config(tool_choice, config):
    # https://github.com/google-gemini/cookbook/blob/main/quickstarts/rest/Function_calling_config_REST.ipynb
    # and https://github.com/google-gemini/api-examples/blob/main/rest/function_calling.sh: the lighting tools,
    # system_instruction, tool_config.function_calling_config {mode, allowed_function_names}.
    _, payload, _ = build(
        chat(
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Make this place PURPLE!"}],
            tools=LIGHT_TOOLS,
            tool_choice=tool_choice,
        )
    )
    assert payload["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
    assert payload["contents"] == [{"role": "user", "parts": [{"text": "Make this place PURPLE!"}]}]
    assert payload["toolConfig"] == {"functionCallingConfig": config}
    decls = payload["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in decls] == ["enable_lights", "set_light_color", "stop_lights"]
    assert decls[0] == {"name": "enable_lights", "description": "Turn on the lighting system."}
    # OpenAI parameters are JSON Schema: sent unchanged as parametersJsonSchema.
    assert decls[1]["parametersJsonSchema"] == LIGHT_TOOLS[1]["function"]["parameters"]


def test_golden_function_response_turn():
    # https://github.com/google-gemini/cookbook/blob/main/quickstarts/rest/Function_calling_REST.ipynb
    # ("Curl example that uses a response from a previous turn"). That notebook sends the result with the
    # old role "function"; current models take it as role "user"
    # (https://ai.google.dev/gemini-api/docs/function-calling), which is what we send.
    result = {
        "name": "find_theaters",
        "content": {
            "movie": "Barbie",
            "theaters": [
                {"name": "AMC Mountain View 16", "address": "2000 W El Camino Real, Mountain View, CA 94040"},
                {"name": "Regal Edwards 14", "address": "245 Castro St, Mountain View, CA 94040"},
            ],
        },
    }
    args = {"location": "Mountain View, CA", "movie": "Barbie"}
    _, payload, _ = build(
        chat(
            [
                {"role": "user", "content": "Which theaters in Mountain View show Barbie movie?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "find_theaters", "arguments": orjson.dumps(args).decode()},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": orjson.dumps(result).decode()},
            ]
        )
    )
    assert payload["contents"] == [
        {"role": "user", "parts": [{"text": "Which theaters in Mountain View show Barbie movie?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "find_theaters", "args": args}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "find_theaters", "response": result}}]},
    ]


def test_parallel_tool_results_share_one_turn_and_plain_text_results_are_wrapped():
    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": '{"x": 1}'}},
    ]
    _, payload, _ = build(
        chat(
            [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": "Calling both.", "tool_calls": calls},
                {"role": "tool", "tool_call_id": "a", "content": "sunny"},
                {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "[1, 2]"}]},
            ]
        )
    )
    assert payload["contents"][1] == {
        "role": "model",
        "parts": [
            {"text": "Calling both."},
            {"functionCall": {"name": "f", "args": {}}},
            {"functionCall": {"name": "g", "args": {"x": 1}}},
        ],
    }
    assert payload["contents"][2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "f", "response": {"result": "sunny"}}},
            {"functionResponse": {"name": "g", "response": {"result": "[1, 2]"}}},
        ],
    }


def test_thought_signature_goes_back_with_its_call():
    # https://ai.google.dev/gemini-api/docs/thought-signatures: Gemini 3 needs each functionCall's
    # thoughtSignature returned; we hand it out as tool_calls[].extra_content.google.thought_signature.
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
        "extra_content": {"google": {"thought_signature": "CpwBAbc="}},
    }
    _, payload, _ = build(
        chat(
            [
                {"role": "user", "content": "go"},
                {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{}"},
            ]
        )
    )
    assert payload["contents"][1]["parts"] == [
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "CpwBAbc="}
    ]


def test_tool_message_errors():
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "not json"}}
    refused(
        chat([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]),
        param="messages[1].tool_calls[0].function.arguments",
    )
    refused(
        chat([{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}]),
        param="messages[1].tool_call_id",
    )
    refused(chat([{"role": "user", "content": "x"}], tools=[{"type": "web_search"}]), param="tools[0]")
    refused(chat([{"role": "user", "content": "x"}], tool_choice="sometimes"), param="tool_choice")
    refused(
        chat([{"role": "user", "content": "x"}], tool_choice={"type": "function", "function": {}}), param="tool_choice"
    )
    refused(
        chat([{"role": "user", "content": "x"}], tool_choice={"type": "allowed_tools", "allowed_tools": "x"}),
        param="tool_choice",
    )


def test_golden_json_mode_and_schema():
    # https://github.com/google-gemini/api-examples/blob/main/rest/controlled_generation.sh:
    # generationConfig.response_mime_type "application/json" (json_no_schema) plus a schema.
    _, payload, _ = build(
        chat(
            [{"role": "user", "content": "List a few popular cookie recipes"}], response_format={"type": "json_object"}
        )
    )
    assert payload["generationConfig"] == {"responseMimeType": "application/json"}
    schema = {"type": "array", "items": {"type": "object", "properties": {"recipe_name": {"type": "string"}}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "recipes", "schema": schema, "strict": True}}
    _, payload, _ = build(chat([{"role": "user", "content": "List 5 popular cookie recipes"}], response_format=fmt))
    # JSON Schema goes as responseJsonSchema (https://ai.google.dev/gemini-api/docs/structured-output).
    assert payload["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    _, payload, _ = build(chat([{"role": "user", "content": "x"}], response_format={"type": "text"}))
    assert "generationConfig" not in payload
    refused(chat([{"role": "user", "content": "x"}], response_format={"type": "yaml"}), param="response_format")


def test_remaining_generation_fields():
    _, payload, ctx = build(
        chat(
            [{"role": "user", "content": "x"}],
            n=2,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            seed=7,
            stop="END",
            max_completion_tokens=50,
            max_tokens=999,
            logprobs=True,
            top_logprobs=3,
            user="u-1",
            parallel_tool_calls=True,
            store=False,
            temperature=None,
        )
    )
    assert payload["generationConfig"] == {
        "candidateCount": 2,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "seed": 7,
        "stopSequences": ["END"],
        "maxOutputTokens": 50,
        "responseLogprobs": True,
        "logprobs": 3,
    }
    assert ctx.reply.n == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logit_bias", {"50256": -100}),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("parallel_tool_calls", False),
        ("reasoning_effort", "low"),
        ("store", True),
        ("made_up_option", 1),
    ],
)
def test_fields_without_a_gemini_meaning_are_refused(field, value):
    e = refused(chat([{"role": "user", "content": "x"}], **{field: value}), param=field)
    assert e.code == "unsupported_parameter"


# -- legacy completions --------------------------------------------------------------------------


def test_completions_prompt():
    _, payload, _ = build({"model": "m", "prompt": "Once upon a time", "max_tokens": 16, "n": 3}, COMPLETIONS)
    assert payload == {
        "contents": [{"role": "user", "parts": [{"text": "Once upon a time"}]}],
        "generationConfig": {"maxOutputTokens": 16, "candidateCount": 3},
    }
    _, payload, _ = build({"model": "m", "prompt": ["only one"], "logprobs": 2, "best_of": 1}, COMPLETIONS)
    assert payload["contents"][0]["parts"] == [{"text": "only one"}]
    assert payload["generationConfig"] == {"responseLogprobs": True, "logprobs": 2}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt", ["a", "b"]),
        ("prompt", [1, 2, 3]),
        ("prompt", [[1], [2]]),
        ("echo", True),
        ("suffix", "x"),
        ("best_of", 2),
    ],
)
def test_completions_refusals(field, value):
    body = {"model": "m", "prompt": "p", field: value}
    refused(body, COMPLETIONS, param=field)


def test_completions_images_fill_the_markers():
    # Seed 001 ("images": data URLs matching the prompt's <image> markers).
    body = {"images": ["data:image/png;base64,iVBOR"], "model": "m", "prompt": "Describe <image> briefly."}
    _, payload, _ = build(body, COMPLETIONS)
    assert payload["contents"][0]["parts"] == [
        {"text": "Describe "},
        {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
        {"text": " briefly."},
    ]
    refused(
        {"model": "m", "prompt": "no marker", "images": ["data:image/png;base64,iVBOR"]}, COMPLETIONS, param="images"
    )
