"""The Anthropic adapter's error translation, checked against Anthropic's own examples.

Each golden test cites the documentation page its Anthropic-side JSON comes from.
"""

from __future__ import annotations

import orjson
import pytest

from tests.unit.providers.anthropic import ANTHROPIC

adapter = ANTHROPIC.adapter


# -- errors ---------------------------------------------------------------------------------------


def test_documented_error_shape_keeps_status_type_and_message():
    # https://platform.claude.com/docs/en/api/errors ("Error shapes")
    payload = {
        "type": "error",
        "error": {"type": "not_found_error", "message": "The requested resource could not be found."},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }
    err = adapter().parse_error(404, orjson.dumps(payload))
    assert err.status == 404
    assert err.type == "not_found_error"
    assert err.message == "anthropic: The requested resource could not be found."


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [(529, "overloaded_error", 503), (500, "overloaded_error", 503), (429, "rate_limit_error", 429)],
)
def test_overload_becomes_503_and_rate_limit_stays_429(status, kind, expected):
    # https://platform.claude.com/docs/en/api/errors (429 rate_limit_error, 529 overloaded_error)
    err = adapter().parse_error(status, orjson.dumps({"type": "error", "error": {"type": kind, "message": "m"}}))
    assert (err.status, err.type, err.code) == (expected, kind, kind)


def test_non_json_error_body_keeps_status_and_text():
    err = adapter().parse_error(502, b"upstream connect error or disconnect/reset before headers")
    assert err.status == 502
    assert err.message == "anthropic: upstream connect error or disconnect/reset before headers"
    assert adapter().parse_error(529, b"").status == 503
