"""Context-window overflow through the running gateway: local truncate/error decisions, the
Fireworks native pass-through, and the correction of an upstream's own overflow error."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from simulators.faults import FaultUpstream
from tests.e2e.conftest import H, base_config, sdk

WORDS = "one two three four five six seven eight nine ten"  # 10 words; o200k: 10 tokens


@pytest.fixture
def gw(fault, gateway_for):
    srv, _app = fault
    cfg = base_config()
    cfg["providers"]["oa"] = {"kind": "openai", "base_url": srv.url + "/v1", "retries": 0}
    cfg["providers"]["oat"] = {
        "kind": "openai",
        "base_url": srv.url + "/v1",
        "retries": 0,
        "context_length_exceeded_behavior": "truncate",
    }
    cfg["providers"]["fw"] = {"kind": "fireworks", "base_url": srv.url + "/v1", "retries": 0}
    cfg["models"] += [
        # 1 user message of 10 tokens: 3 + 1 (role) + 10 + 3 priming = 17 prompt tokens as OpenAI bills chat.
        {"name": "oa/gpt-4o-mini", "context_window": 40, "tokenizer": "o200k_base"},
        {"name": "fw/llama", "upstream": "window-20-openai", "context_window": 40},
    ]
    return gateway_for(cfg)


def chat(gw, model: str, **kw) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": WORDS}], **kw}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=H, timeout=10)


def last_body(app: FaultUpstream) -> dict:
    return app.requests[-1]["body"]


def test_fits_exactly_and_one_over(gw, fault):
    _srv, app = fault
    assert chat(gw, "oa/gpt-4o-mini", max_tokens=23).status_code == 200  # 17 + 23 = 40
    assert last_body(app)["max_tokens"] == 23 and "context_length_exceeded_behavior" not in last_body(app)
    r = chat(gw, "oa/gpt-4o-mini", max_tokens=24)
    e = r.json()["error"]
    assert r.status_code == 400 and e["code"] == "context_length_exceeded" and e["param"] == "messages"
    assert e["message"] == (
        "This model's maximum context length is 40 tokens. However, you requested 41 tokens "
        "(17 in the messages, 24 in the completion). Please reduce the length of the messages or completion."
    )
    with pytest.raises(openai.BadRequestError):
        sdk(gw).chat.completions.create(
            model="oa/gpt-4o-mini", messages=[{"role": "user", "content": WORDS}], max_tokens=24
        )


def test_truncate_lowers_the_budget_and_below_one_is_an_error(gw, fault):
    _srv, app = fault
    n = len(app.requests)
    r = chat(gw, "oa/gpt-4o-mini", max_completion_tokens=500, context_length_exceeded_behavior="truncate")
    assert r.status_code == 200 and last_body(app)["max_completion_tokens"] == 23
    assert "context_length_exceeded_behavior" not in last_body(app)
    long = " ".join([WORDS] * 5)  # 50 tokens: the prompt alone overflows
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        headers=H,
        json={
            "model": "oa/gpt-4o-mini",
            "messages": [{"role": "user", "content": long}],
            "max_tokens": 5,
            "context_length_exceeded_behavior": "truncate",
        },
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert len(app.requests) == n + 1  # the refused request never reached the upstream


def test_completions_prompt_param_and_no_budget_form(gw):
    r = httpx.post(
        gw.url + "/v1/completions", headers=H, json={"model": "oa/gpt-4o-mini", "prompt": " ".join([WORDS] * 5)}
    )
    e = r.json()["error"]
    assert r.status_code == 400 and e["param"] == "prompt" and "resulted in 50 tokens" in e["message"]


def test_fireworks_decides_natively(gw, fault):
    _srv, app = fault
    r = chat(gw, "fw/llama", max_tokens=30)  # over both windows, but Fireworks decides: no pre-check
    assert r.status_code == 200
    sent = last_body(app)
    assert sent["context_length_exceeded_behavior"] == "truncate" and sent["max_tokens"] == 30
    r = chat(gw, "fw/llama", max_tokens=30, context_length_exceeded_behavior="error")
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert last_body(app)["context_length_exceeded_behavior"] == "error"


@pytest.mark.parametrize("wording", ["openai", "vllm", "azure"])
def test_upstream_overflow_is_corrected_once_in_truncate_mode(gw, fault, wording):
    _srv, app = fault
    model = f"window-30-{wording}-{uuid.uuid4().hex[:6]}"
    r = chat(gw, f"oat/{model}", max_tokens=100)  # 10 words + 100 > 30: refused, then retried with 20
    assert r.status_code == 200, r.text
    assert app.attempts[model] == 2 and last_body(app)["max_tokens"] == 20


@pytest.mark.parametrize("wording", ["openai", "vllm"])
def test_upstream_overflow_in_error_mode_is_answered_in_openai_shape(gw, fault, wording):
    _srv, app = fault
    model = f"window-30-{wording}-{uuid.uuid4().hex[:6]}"
    r = chat(gw, f"oa/{model}", max_tokens=100)
    e = r.json()["error"]
    assert r.status_code == 400 and e["code"] == "context_length_exceeded" and e["param"] == "messages"
    assert (
        "maximum context length is 30 tokens" in e["message"]
        and "(10 in the messages, 100 in the completion)" in e["message"]
    )
    assert app.attempts[model] == 1


def test_an_upstream_that_keeps_refusing_is_not_retried_forever(gw, fault):
    _srv, app = fault
    model = f"window-30-openai-{uuid.uuid4().hex[:6]}-liar"
    r = chat(gw, f"oat/{model}", max_tokens=100)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert app.attempts[model] == 2
