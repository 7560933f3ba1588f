"""The Cohere v2 dialect's error translation.

Golden sources: Cohere's documented error bodies, each test names its own.
"""

from __future__ import annotations

import pytest

from providers.base import CHAT, Target
from tests.unit.providers.cohere import COHERE, KEY

adapter, chat, ctx = COHERE.adapter, COHERE.chat, COHERE.ctx


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "payload", "message", "type_"),
    [
        (
            400,
            b'{"id":"c6b3a7b4","message":"invalid request: message must be at least 1 token long"}',
            "invalid request: message must be at least 1 token long",
            "invalid_request_error",
        ),
        (498, b'{"message":"invalid api token"}', "invalid api token", "authentication_error"),
        (
            429,
            b'{"message":"You are using a Trial key, which is limited to 10 API calls / minute."}',
            "You are using a Trial key, which is limited to 10 API calls / minute.",
            "rate_limit_exceeded",
        ),
        (500, b"upstream connect error", "upstream connect error", None),
    ],
)
def test_errors_keep_status_and_message(status, payload, message, type_):
    err = adapter().parse_error(status, payload)
    assert err.status == status
    assert err.message == f"cohere: {message}"
    if type_:
        assert err.type == type_


def test_credential_only_in_header():
    req = adapter().build_request(CHAT, chat([{"role": "user", "content": "x"}]), Target("m"), ctx())
    assert KEY not in req.url and KEY.encode() not in req.body
