"""GeminiAdapter's error translation, checked against Google's error model.

Each golden test names the page its Gemini-side JSON comes from. The OpenAI side is the request a
client would send for the same conversation.
"""

from __future__ import annotations

import orjson

from tests.unit.providers.gemini import GEMINI

adapter = GEMINI.adapter


# -- errors ------------------------------------------------------------------------------------


def test_google_error_body():
    # Google's error model (https://cloud.google.com/apis/design/errors) with the statuses of
    # https://ai.google.dev/gemini-api/docs/troubleshooting
    body = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
        }
    }
    e = adapter().parse_error(400, orjson.dumps(body))
    assert (e.status, e.type, e.code) == (400, "invalid_request_error", "INVALID_ARGUMENT")
    assert e.message == "gemini: API key not valid. Please pass a valid API key."
    e = adapter().parse_error(
        403, orjson.dumps({"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}})
    )
    assert (e.status, e.type, e.code) == (403, "permission_error", "PERMISSION_DENIED")
    e = adapter().parse_error(
        503, orjson.dumps({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
    )
    assert (e.status, e.code) == (503, "UNAVAILABLE")


def test_resource_exhausted_is_429_with_retry_after():
    body = {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"}],
        }
    }
    e = adapter().parse_error(429, orjson.dumps(body))
    assert (e.status, e.type, e.code, e.headers) == (
        429,
        "rate_limit_exceeded",
        "RESOURCE_EXHAUSTED",
        {"Retry-After": "13"},
    )
    # The status decides even if a proxy in between changed the HTTP code.
    assert (
        adapter().parse_error(400, orjson.dumps({"error": {"message": "quota", "status": "RESOURCE_EXHAUSTED"}})).status
        == 429
    )


def test_non_json_and_wrapped_errors():
    e = adapter().parse_error(502, b"<html>Bad Gateway</html>")
    assert e.status == 502 and "Bad Gateway" in e.message
    wrapped = [{"error": {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND"}}]
    e = adapter().parse_error(404, orjson.dumps(wrapped))
    assert (e.status, e.type, e.code) == (404, "not_found_error", "NOT_FOUND")
