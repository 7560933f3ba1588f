"""The Azure OpenAI dialect on plain dicts, checked against Microsoft's documented examples.

Golden sources (each test names its own):
- https://learn.microsoft.com/azure/ai-services/openai/reference: classic URLs, `api-key`
- https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle: the v1 URL form
- https://learn.microsoft.com/azure/ai-services/openai/concepts/content-streaming: annotation chunks
- https://learn.microsoft.com/azure/ai-services/openai/concepts/content-filter-annotations:
  the non-streamed annotations and the content_filter error body
"""

from __future__ import annotations

import orjson
import pytest

from gateway.config import ProviderConfig
from gateway.errors import GatewayError
from providers.azure import AzureAdapter
from providers.base import CHAT, COMPLETIONS, EMBEDDINGS, Target
from tests.unit.providers.azure import AZURE, ENDPOINT, KEY

adapter, ctx, run_stream = AZURE.adapter, AZURE.ctx, AZURE.run_stream


def build(a: AzureAdapter, endpoint: str = CHAT, deployment: str = "gpt-35-turbo", **body):
    """A one-message chat body for ``deployment``, translated by ``a`` (each test picks its URL form)."""
    body = {"model": "azure/" + deployment, "messages": [{"role": "user", "content": "hi"}], **body}
    return a.build_request(endpoint, body, Target(deployment), ctx())


# -- URLs and headers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [(CHAT, "chat/completions"), (COMPLETIONS, "completions"), (EMBEDDINGS, "embeddings")],
)
def test_golden_classic_urls(endpoint, path):
    # https://learn.microsoft.com/azure/ai-services/openai/reference:
    # POST https://{endpoint}/openai/deployments/{deployment-id}/chat/completions?api-version=2024-10-21
    req = build(adapter(), endpoint)
    assert req.url == f"{ENDPOINT}/openai/deployments/gpt-35-turbo/{path}?api-version=2024-10-21"


def test_golden_api_key_header():
    # Same page, "Request Header": api-key. No Bearer header derived from the key.
    req = build(adapter())
    assert req.headers["api-key"] == KEY
    assert "authorization" not in req.headers
    assert KEY not in req.url and KEY.encode() not in req.body


def test_operator_authorization_header_is_kept():
    # An operator may configure a Microsoft Entra token as a static header instead of a key.
    cfg = ProviderConfig(
        kind="azure", base_url=ENDPOINT, api_version="2024-10-21", headers={"Authorization": "Bearer entra"}
    )
    req = build(AzureAdapter("azure", cfg))
    assert req.headers["authorization"] == "Bearer entra" and "api-key" not in req.headers


@pytest.mark.parametrize("base", [ENDPOINT, ENDPOINT + "/", ENDPOINT + "/openai", ENDPOINT + "/openai/v1/"])
def test_base_url_suffixes_are_tolerated(base):
    assert (
        build(adapter(base)).url
        == f"{ENDPOINT}/openai/deployments/gpt-35-turbo/chat/completions?api-version=2024-10-21"
    )
    assert build(adapter(base, api_version=None)).url == f"{ENDPOINT}/openai/v1/chat/completions"


@pytest.mark.parametrize("version", [None, "v1"])
def test_golden_v1_form(version):
    # https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle: base_url
    # {endpoint}/openai/v1/, no api-version, the deployment name as `model`.
    a = adapter(api_version=version)
    req = build(a, deployment="my-gpt4o")
    assert req.url == f"{ENDPOINT}/openai/v1/chat/completions"
    assert orjson.loads(req.body)["model"] == "my-gpt4o"
    assert build(a, EMBEDDINGS, input="x").url == f"{ENDPOINT}/openai/v1/embeddings"


def test_v1_preview_query():
    # Same page, REST tab: .../openai/v1/responses?api-version=preview
    assert build(adapter(api_version="preview")).url == f"{ENDPOINT}/openai/v1/chat/completions?api-version=preview"


@pytest.mark.parametrize("deployment", ["../../admin", "a/b", "a?x=1", "a#frag", "..", ".", "a b", "a%2Fb", "x" * 65])
def test_deployment_cannot_change_the_path(deployment):
    with pytest.raises(GatewayError) as e:
        build(adapter(), deployment=deployment)
    assert e.value.status == 400 and e.value.param == "model" and e.value.code == "invalid_deployment"


def test_v1_form_puts_any_name_in_the_body_only():
    req = build(adapter(api_version=None), deployment="a/b?c")
    assert req.url == f"{ENDPOINT}/openai/v1/chat/completions"
    assert orjson.loads(req.body)["model"] == "a/b?c"


@pytest.mark.parametrize("version", ["2024-10-21", "2024-09-01-preview", "2025-04-01-preview", None])
def test_stream_asks_for_usage(version):
    req = build(adapter(api_version=version), stream=True)
    assert orjson.loads(req.body)["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("version", ["2024-06-01", "2024-02-01", "2024-08-01-preview"])
def test_old_api_versions_get_no_stream_options(version):
    # https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle: stream_options
    # was added in 2024-09-01-preview; older versions reject unknown arguments.
    req = build(adapter(api_version=version), stream=True)
    assert "stream_options" not in orjson.loads(req.body)


# -- streams ----------------------------------------------------------------------------------

# https://learn.microsoft.com/azure/ai-services/openai/concepts/content-streaming,
# "Sample response stream (passes filters)" (its "..." elisions left out).
SAFE = '{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}'
DOC_STREAM = (
    f'data: {{"id":"","object":"","created":0,"model":"","prompt_annotations":[{{"prompt_index":0,"content_filter_results":{SAFE}}}],"choices":[],"usage":null}} \n\n'
    'data: {"id":"chatcmpl-7rCNsVeZy0PGnX3H6jK8STps5nZUY","object":"chat.completion.chunk","created":1692913344,"model":"gpt-35-turbo","choices":[{"index":0,"finish_reason":null,"delta":{"role":"assistant"}}],"usage":null} \n\n'
    'data: {"id":"chatcmpl-7rCNsVeZy0PGnX3H6jK8STps5nZUY","object":"chat.completion.chunk","created":1692913344,"model":"gpt-35-turbo","choices":[{"index":0,"finish_reason":null,"delta":{"content":"Color"}}],"usage":null} \n\n'
    'data: {"id":"chatcmpl-7rCNsVeZy0PGnX3H6jK8STps5nZUY","object":"chat.completion.chunk","created":1692913344,"model":"gpt-35-turbo","choices":[{"index":0,"finish_reason":null,"delta":{"content":" is"}}],"usage":null} \n\n'
    'data: {"id":"chatcmpl-7rCNsVeZy0PGnX3H6jK8STps5nZUY","object":"chat.completion.chunk","created":1692913344,"model":"gpt-35-turbo","choices":[{"index":0,"finish_reason":null,"delta":{"content":" a"}}],"usage":null} \n\n'
    f'data: {{"id":"","object":"","created":0,"model":"","choices":[{{"index":0,"finish_reason":null,"content_filter_results":{SAFE},"content_filter_offsets":{{"check_offset":44,"start_offset":44,"end_offset":198}}}}],"usage":null}} \n\n'
    'data: {"id":"chatcmpl-7rCNsVeZy0PGnX3H6jK8STps5nZUY","object":"chat.completion.chunk","created":1692913344,"model":"gpt-35-turbo","choices":[{"index":0,"finish_reason":"stop","delta":{}}],"usage":null} \n\n'
    f'data: {{"id":"","object":"","created":0,"model":"","choices":[{{"index":0,"finish_reason":null,"content_filter_results":{SAFE},"content_filter_offsets":{{"check_offset":506,"start_offset":44,"end_offset":571}}}}],"usage":null}} \n\n'
    "data: [DONE] \n\n"
).encode()

# Same page, "Sample response stream (blocked by filters)": the closing annotation.
DOC_BLOCKED = (
    f'data: {{"id":"","object":"","created":0,"model":"","prompt_filter_results":[{{"prompt_index":0,"content_filter_results":{SAFE}}}],"choices":[],"usage":null}} \n\n'
    'data: {"id":"chatcmpl-8JCbt5d4luUIhYCI7YH4dQK7hnHx2","object":"chat.completion.chunk","created":1699587397,"model":"gpt-35-turbo","choices":[{"index":0,"finish_reason":null,"delta":{"content":"Hey"}}],"usage":null} \n\n'
    'data: {"id":"","object":"","created":0,"model":"","choices":[{"index":0,"finish_reason":"content_filter","content_filter_results":{"protected_material_text":{"detected":true,"filtered":true}},"content_filter_offsets":{"check_offset":65,"start_offset":65,"end_offset":1056}}],"usage":null} \n\n'
    "data: [DONE] \n\n"
).encode()


@pytest.mark.parametrize("step", [1, 11, 1 << 20])
def test_golden_stream_annotations_are_safe_for_openai_clients(step):
    chunks, tr = run_stream(DOC_STREAM, ctx(), step)
    assert tr.finished is True
    # The prompt annotation (empty choices) is gone; every chunk has a choice with a delta.
    assert all(ch["choices"] and "delta" in ch["choices"][0] for ch in chunks)
    assert all(ch["model"] == "azure/gpt-35-turbo" and ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert all(ch["id"] == "chatcmpl-7rCNsVeZy0PGnX3H6jK8STps5nZUY" for ch in chunks)
    assert all(ch["created"] == 1692913344 for ch in chunks)
    assert all("usage" not in ch for ch in chunks)  # the client did not ask
    assert "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks) == "Color is a"
    annotations = [ch for ch in chunks if "content_filter_results" in ch["choices"][0]]
    assert len(annotations) == 2 and annotations[0]["choices"][0]["delta"] == {}
    assert [ch["choices"][0]["finish_reason"] for ch in chunks].count("stop") == 1


def test_golden_blocked_stream_passes_content_filter_finish():
    chunks, _ = run_stream(DOC_BLOCKED, ctx(include_usage=True), 17)
    assert chunks[0]["choices"][0]["delta"] == {"content": "Hey"}
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "content_filter"
    assert last["choices"][0]["delta"] == {}
    assert last["choices"][0]["content_filter_results"]["protected_material_text"]["filtered"] is True
    assert last["id"] == "chatcmpl-8JCbt5d4luUIhYCI7YH4dQK7hnHx2" and last["usage"] is None


USAGE_CHUNK = b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}\n\n'


@pytest.mark.parametrize("include", [False, True])
def test_usage_chunk_with_empty_choices(include):
    chunks, tr = run_stream(USAGE_CHUNK + b"data: [DONE]\n\n", ctx(include_usage=include), 5)
    assert tr.usage == {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    assert (chunks[0]["usage"]["total_tokens"] == 12) if include else chunks == []


def test_completions_annotation_gets_text():
    raw = (
        b'data: {"id":"cmpl-1","object":"text_completion","created":5,"model":"m","choices":[{"text":"Hi","index":0,"finish_reason":null,"logprobs":null}]}\n\n'
        b'data: {"id":"","object":"","created":0,"model":"","choices":[{"index":0,"finish_reason":"content_filter","content_filter_results":{}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    chunks, _ = run_stream(raw, ctx(), 3, COMPLETIONS)
    assert chunks[1]["choices"][0]["text"] == "" and chunks[1]["object"] == "text_completion"
    assert chunks[1]["choices"][0]["finish_reason"] == "content_filter" and chunks[1]["id"] == "cmpl-1"


# -- responses and errors ---------------------------------------------------------------------

# https://learn.microsoft.com/azure/ai-services/openai/concepts/content-filter-annotations, "Output".
DOC_RESPONSE = {
    "choices": [
        {
            "content_filter_results": {
                "hate": {"filtered": False, "severity": "safe"},
                "protected_material_code": {
                    "citation": {
                        "URL": " https://github.com/username/repository-name/path/to/file-example.txt",
                        "license": "EXAMPLE-LICENSE",
                    },
                    "detected": True,
                    "filtered": False,
                },
                "protected_material_text": {"detected": False, "filtered": False},
                "self_harm": {"filtered": False, "severity": "safe"},
                "sexual": {"filtered": False, "severity": "safe"},
                "violence": {"filtered": False, "severity": "safe"},
            },
            "finish_reason": "stop",
            "index": 0,
            "message": {"content": "Example model response will be returned ", "role": "assistant"},
        }
    ],
    "created": 1699386280,
    "id": "chatcmpl-8IMI4HzcmcK6I77vpOJCPt0Vcf8zJ",
    "model": "gpt-35-turbo-instruct",
    "object": "text.completion",
    "usage": {"completion_tokens": 40, "prompt_tokens": 11, "total_tokens": 417},
    "prompt_filter_results": [
        {
            "content_filter_results": {
                "hate": {"filtered": False, "severity": "safe"},
                "jailbreak": {"detected": False, "filtered": False},
                "profanity": {"detected": False, "filtered": False},
                "self_harm": {"filtered": False, "severity": "safe"},
                "sexual": {"filtered": False, "severity": "safe"},
                "violence": {"filtered": False, "severity": "safe"},
            },
            "prompt_index": 0,
        }
    ],
}


def test_golden_response_keeps_filter_results():
    out = adapter().parse_response(CHAT, orjson.dumps(DOC_RESPONSE), ctx())
    assert out["model"] == "azure/gpt-35-turbo"
    assert out["prompt_filter_results"] == DOC_RESPONSE["prompt_filter_results"]
    assert out["choices"][0]["content_filter_results"] == DOC_RESPONSE["choices"][0]["content_filter_results"]
    assert out["choices"][0]["message"]["content"] == "Example model response will be returned "
    assert out["usage"]["prompt_tokens"] == 11


# Same page, the content_filter error body.
DOC_ERROR = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure Content management policy. Please modify your prompt and retry.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_results": {"hate": {"filtered": True, "severity": "high"}},
        },
    }
}


def test_golden_content_filter_error():
    err = adapter().parse_error(400, orjson.dumps(DOC_ERROR))
    assert err.status == 400
    assert err.message == "azure: " + DOC_ERROR["error"]["message"]
    assert err.code == "content_filter" and err.param == "prompt" and err.type == "invalid_request_error"


def test_deployment_not_found_and_plain_errors():
    err = adapter().parse_error(
        404, b'{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}'
    )
    assert err.status == 404 and err.code == "DeploymentNotFound" and "does not exist" in err.message
    err = adapter().parse_error(401, b'{"statusCode":401,"message":"Unauthorized. Access token is missing, invalid."}')
    assert err.status == 401 and err.message == "azure: Unauthorized. Access token is missing, invalid."
