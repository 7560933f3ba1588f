"""gateway.pipeline.overflow: the truncate/error decision, OpenAI's overflow error, upstream overflow parsing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.pipeline import overflow as context
from gateway.pipeline.overflow import PARAM, Fit, fit, fit_async, overflow_error, parse_overflow
from gateway.pipeline.routing import ModelFacts
from gateway.pipeline.tokens import count_chat, count_text, encoding, estimate_lower, estimate_upper

O200K = encoding("o200k_base")
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three rivers in Europe."},
]
P = count_chat(MESSAGES, None, O200K)  # the prompt's billed tokens


def facts(
    window: int | None, overflow: str = "error", tokenizer: str | None = "o200k_base", max_out: int | None = None
) -> ModelFacts:
    return ModelFacts(context_window=window, max_output_tokens=max_out, tokenizer=tokenizer, overflow=overflow)


def chat(**kw: Any) -> dict[str, Any]:
    return {"model": "openai/gpt-4o", "messages": [dict(m) for m in MESSAGES], **kw}


def refused(endpoint: str, body: dict[str, Any], f: ModelFacts, kind: str = "openai") -> GatewayError:
    with pytest.raises(GatewayError) as e:
        fit(endpoint, body, f, kind, False)
    assert (e.value.status, e.value.type, e.value.code) == (400, "invalid_request_error", "context_length_exceeded")
    return e.value


def chat_overflow(window: int, prompt: int, completion: int) -> str:
    return (
        f"This model's maximum context length is {window} tokens. However, you requested {prompt + completion} "
        f"tokens ({prompt} in the messages, {completion} in the completion). "
        "Please reduce the length of the messages or completion."
    )


# --- error mode --------------------------------------------------------------------------------


def test_error_fits_exactly() -> None:
    body = chat(max_tokens=10)
    assert fit("chat", body, facts(P + 10), "openai", False) == Fit(P, True, 10)
    assert body["max_tokens"] == 10


def test_error_one_token_over() -> None:
    err = refused("chat", chat(max_tokens=10), facts(P + 9))
    assert err.param == "messages"
    assert err.message == chat_overflow(P + 9, P, 10)


@pytest.mark.parametrize("window", [P - 1, P])
def test_prompt_alone_over_the_window(window: int) -> None:
    # Without a budget the prompt must leave room for one token (vLLM refuses token_num >= max_model_len too).
    err = refused("chat", chat(), facts(window))
    assert err.message == (
        f"This model's maximum context length is {window} tokens. However, your messages resulted in "
        f"{P} tokens. Please reduce the length of the messages."
    )


def test_no_budget_that_fits() -> None:
    assert fit("chat", chat(), facts(P + 1), "openai", False) == Fit(P, True, None)


def test_zero_budget_may_fill_the_window() -> None:
    assert fit("chat", chat(max_tokens=0), facts(P), "openai", False) == Fit(P, True, 0)


def test_error_mode_never_touches_the_budget() -> None:
    body = chat(max_tokens=5000)
    assert fit("chat", body, facts(P + 5000, max_out=100), "openai", False) == Fit(P, True, 5000)


# --- truncate mode -----------------------------------------------------------------------------


def test_truncate_fits_exactly() -> None:
    body = chat(max_tokens=10)
    assert fit("chat", body, facts(P + 10, "truncate"), "openai", False) == Fit(P, True, 10)
    assert body["max_tokens"] == 10


def test_truncate_one_token_over() -> None:
    body = chat(max_tokens=10)
    assert fit("chat", body, facts(P + 9, "truncate"), "openai", False) == Fit(P, True, 9)
    assert body["max_tokens"] == 9


def test_truncate_to_exactly_one_token() -> None:
    body = chat(max_completion_tokens=500)
    assert fit("chat", body, facts(P + 1, "truncate"), "openai", False) == Fit(P, True, 1)
    assert body == chat(max_completion_tokens=1)


def test_truncate_below_one_token_is_an_error() -> None:
    err = refused("chat", chat(max_tokens=100), facts(P, "truncate"))
    assert err.message == chat_overflow(P, P, 100)


def test_truncate_without_budget_and_no_room() -> None:
    err = refused("chat", chat(), facts(P, "truncate"))
    assert "your messages resulted in" in err.message


def test_truncate_without_budget_leaves_it_absent() -> None:
    body = chat()
    assert fit("chat", body, facts(P + 1, "truncate"), "openai", False) == Fit(P, True, None)
    assert "max_tokens" not in body and "max_completion_tokens" not in body


def test_truncate_lowers_every_budget_field_the_client_used() -> None:
    body = chat(max_tokens=300, max_completion_tokens=200)
    assert fit("chat", body, facts(P + 50, "truncate"), "openai", False) == Fit(P, True, 50)
    assert (body["max_tokens"], body["max_completion_tokens"]) == (50, 50)


def test_max_output_tokens_caps_the_budget_when_truncating() -> None:
    body = chat(max_tokens=5000)
    assert fit("chat", body, facts(128000, "truncate", max_out=1000), "openai", False) == Fit(P, True, 1000)
    assert body["max_tokens"] == 1000


# --- where the behaviour comes from, and the parameter itself -----------------------------------


def test_body_behaviour_wins_and_is_removed() -> None:
    body = chat(max_tokens=10, **{PARAM: "truncate"})
    assert fit("chat", body, facts(P + 5, "error"), "openai", False) == Fit(P, True, 5)
    assert PARAM not in body
    with pytest.raises(GatewayError):
        fit("chat", chat(max_tokens=10, **{PARAM: "error"}), facts(P + 5, "truncate"), "openai", False)


def test_parameter_removed_even_without_a_window() -> None:
    body = chat(max_tokens=10**6, **{PARAM: "error"})
    assert fit("chat", body, facts(None), "openai", False) is None
    assert PARAM not in body and body["max_tokens"] == 10**6


def test_native_provider_gets_the_parameter_and_no_check() -> None:
    body = chat(max_tokens=10**6, **{PARAM: "error"})
    assert fit("chat", body, facts(100, "truncate", tokenizer=None), "fireworks", True) is None
    assert body[PARAM] == "error" and body["max_tokens"] == 10**6


def test_embeddings_are_not_checked() -> None:
    body = {"model": "openai/text-embedding-3-small", "input": "x" * 1000}
    assert fit("embeddings", body, facts(10), "openai", False) is None


def test_tokenizer_from_the_model_name() -> None:
    f = ModelFacts(context_window=P + 1, tokenizer=None)
    assert fit("chat", chat(), f, "openai", False) == Fit(P, True, None)
    assert fit("chat", chat(), f, "azure", False) == Fit(P, True, None)
    estimated = fit("chat", chat(), f, "anthropic", False)
    assert estimated is not None and not estimated.exact


# --- completions -------------------------------------------------------------------------------


def completions_overflow(window: int, prompt: int, completion: int | None) -> str:
    # OpenAI's wording (docs/reference.md "Context-window overflow") for both endpoints; param is "prompt" here.
    if completion is None:
        return (
            f"This model's maximum context length is {window} tokens. However, your messages resulted in "
            f"{prompt} tokens. Please reduce the length of the messages."
        )
    return (
        f"This model's maximum context length is {window} tokens. However, you requested {prompt + completion} "
        f"tokens ({prompt} in the messages, {completion} in the completion). Please reduce the length of the "
        "messages or completion."
    )


LONG = "Once upon a time there was a gateway that counted every token it saw. " * 3
SHORT = "Hi."
PL = count_text(LONG, O200K)


def completions(prompt: Any, **kw: Any) -> dict[str, Any]:
    return {"model": "openai/gpt-3.5-turbo-instruct", "prompt": prompt, **kw}


def test_completions_string_prompt() -> None:
    assert fit("completions", completions(LONG, max_tokens=16), facts(PL + 16), "openai", False) == Fit(PL, True, 16)
    err = refused("completions", completions(LONG, max_tokens=16), facts(PL + 15))
    assert err.param == "prompt"
    assert err.message == completions_overflow(PL + 15, PL, 16)


def test_completions_without_budget_uses_the_messages_resulted_in_form() -> None:
    err = refused("completions", completions(LONG), facts(PL))
    assert err.message == completions_overflow(PL, PL, None) and err.param == "prompt"


def test_each_prompt_is_checked_and_the_longest_decides() -> None:
    body = completions([SHORT, LONG], max_tokens=16)
    got = fit("completions", body, facts(PL + 16), "openai", False)
    assert got == Fit(PL + count_text(SHORT, O200K), True, 16)
    err = refused("completions", completions([SHORT, LONG], max_tokens=16), facts(PL + 15))
    assert err.message == completions_overflow(PL + 15, PL, 16)
    body = completions([SHORT, LONG], max_tokens=16)
    assert fit("completions", body, facts(PL + 10, "truncate"), "openai", False).budget == 10
    assert body["max_tokens"] == 10


def test_token_list_prompts_count_as_their_length() -> None:
    tokens = list(range(100))
    unknown = facts(110, tokenizer=None)  # exact even when the model's tokenizer is unknown
    assert fit("completions", completions(tokens, max_tokens=10), unknown, "anthropic", False) == Fit(100, True, 10)
    refused("completions", completions(tokens, max_tokens=11), unknown, "anthropic")
    lists = [list(range(30)), list(range(100))]
    assert fit("completions", completions(lists, max_tokens=10), facts(110), "openai", False) == Fit(130, True, 10)
    refused("completions", completions(lists, max_tokens=11), facts(110))


def test_n_and_best_of_do_not_multiply_the_window() -> None:
    body = completions(LONG, max_tokens=16, n=5, best_of=5)
    assert fit("completions", body, facts(PL + 16), "openai", False) == Fit(PL, True, 16)


def test_suffix_counts_as_prompt() -> None:
    suffix = " and they all lived happily ever after."
    total = PL + count_text(suffix, O200K)
    assert fit("completions", completions(LONG, suffix=suffix, max_tokens=1), facts(total + 1), "openai", False)
    refused("completions", completions(LONG, suffix=suffix, max_tokens=1), facts(total))


# --- estimates for models without a known tokenizer --------------------------------------------

TEXT = "The quick brown fox jumps over the lazy dog while the gateway counts. " * 40
UNKNOWN = [{"role": "user", "content": TEXT}]
LOW = estimate_lower("user") + estimate_lower(TEXT)  # template overheads only in the upper bound
HIGH = estimate_upper("user") + estimate_upper(TEXT) + 3 + 3


def anthropic(window: int, overflow: str = "error") -> ModelFacts:
    return facts(window, overflow, tokenizer=None)


def test_estimated_error_mode_refuses_only_what_cannot_fit() -> None:
    body = {"model": "anthropic/claude-sonnet-4-5", "messages": UNKNOWN, "max_tokens": 100}
    # Nothing is truncated, so no upper bound is taken: the usage figure is twice the lower one.
    assert fit("chat", body, anthropic(LOW + 100), "anthropic", False) == Fit(2 * LOW + 6, False, 100)
    err = refused("chat", dict(body), anthropic(LOW + 99), "anthropic")
    assert err.message == chat_overflow(LOW + 99, LOW, 100)


RUNS = "=" * 4000 + " " + TEXT  # a rough count (no collapsing of runs) says far more than the bound
RUNS_LOW = estimate_lower("user") + estimate_lower(RUNS)


def test_estimated_error_mode_measures_again_before_refusing() -> None:
    assert estimate_lower("user") + -(-len(RUNS.replace(" ", "")) // 8) > RUNS_LOW + 400
    body = {"model": "anthropic/claude-sonnet-4-5", "messages": [{"role": "user", "content": RUNS}], "max_tokens": 100}
    fitted = fit("chat", dict(body), anthropic(RUNS_LOW + 100), "anthropic", False)
    assert fitted is not None and fitted.budget == 100  # the rough count alone would have refused it
    err = refused("chat", dict(body), anthropic(RUNS_LOW + 99), "anthropic")
    assert err.message == chat_overflow(RUNS_LOW + 99, RUNS_LOW, 100)  # the precise count, not the rough


def test_estimated_truncation_uses_the_upper_bound() -> None:
    body = {"model": "anthropic/claude-sonnet-4-5", "messages": UNKNOWN, "max_tokens": 1000}
    assert fit("chat", body, anthropic(HIGH + 400, "truncate"), "anthropic", False) == Fit(HIGH, False, 400)
    assert body["max_tokens"] == 400


def test_estimated_truncation_when_the_gateway_cannot_tell() -> None:
    # Upper bound: no room; lower bound: room. The most that could fit goes upstream.
    body = {"model": "anthropic/claude-sonnet-4-5", "messages": UNKNOWN, "max_tokens": 1000}
    window = HIGH - 10
    assert fit("chat", body, anthropic(window, "truncate"), "anthropic", False) == Fit(HIGH, False, window - LOW)
    refused("chat", dict(body, max_tokens=1000), anthropic(LOW, "truncate"), "anthropic")


def test_images_are_judged_by_their_bounds() -> None:
    msg = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    base = count_chat([{"role": "user"}], None, O200K)
    body = {"model": "openai/gpt-4o", "messages": msg, "max_tokens": 10}
    # Refused only if even 85 tokens for the image cannot fit; truncated as if it took 1445.
    assert fit("chat", dict(body), facts(base + 85 + 10), "openai", False) == Fit(base + 1445, False, 10)
    refused("chat", dict(body), facts(base + 85 + 9))
    assert fit("chat", dict(body), facts(base + 1445 + 5, "truncate"), "openai", False).budget == 5


# --- fit_async ---------------------------------------------------------------------------------


def test_fit_async_counts_small_prompts_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_thread(*a: Any, **k: Any) -> None:
        raise AssertionError("a small prompt went to a thread")

    monkeypatch.setattr(context.asyncio, "to_thread", no_thread)
    assert asyncio.run(fit_async("chat", chat(max_tokens=1), facts(P + 1), "openai", False)) == Fit(P, True, 1)


def test_fit_async_counts_large_prompts_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = asyncio.to_thread

    async def spy(fn: Any, *a: Any) -> Any:
        calls.append(fn)
        return await real(fn, *a)

    monkeypatch.setattr(context.asyncio, "to_thread", spy)
    text = "word " * 10000  # 50 KB
    n = count_chat([{"role": "user", "content": text}], None, O200K)
    body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": text}], "max_tokens": 100}
    got = asyncio.run(fit_async("chat", body, facts(n + 50, "truncate"), "openai", False))
    assert got == Fit(n, True, 50)
    assert calls == [fit]
    body = completions(["x " * 20000], max_tokens=1)
    asyncio.run(fit_async("completions", body, facts(50_000), "openai", False))
    assert len(calls) == 2


def test_text_that_surely_fits_is_not_tokenized(monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 x characters bounds any byte-level tokenizer: a window that large needs no counting at all.
    monkeypatch.setattr(context, "encoding", lambda name: pytest.fail("tokenized a prompt that surely fits"))
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hello " * 100}],
        "max_tokens": 100,
        "context_length_exceeded_behavior": "error",
    }
    assert asyncio.run(fit_async("chat", body, facts(4000), "openai", False)) is None
    assert "context_length_exceeded_behavior" not in body and body["max_tokens"] == 100
    assert fit("completions", completions(["ab", "cd"], max_tokens=5), facts(100), "openai", False) is None
    # An image or a tool means the careful count.
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}],
    }
    assert not context._surely_fits("chat", body, 10**6, None)
    assert not context._surely_fits("chat", {"messages": [], "tools": [{"type": "function"}]}, 10**6, None)


def test_fit_async_loads_a_tokenizer_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = asyncio.to_thread

    async def spy(fn: Any, *a: Any) -> Any:
        calls.append(fn)
        return await real(fn, *a)

    monkeypatch.setattr(context.asyncio, "to_thread", spy)
    monkeypatch.setattr(context, "is_loaded", lambda name: False)
    asyncio.run(fit_async("chat", chat(), facts(P + 1), "openai", False))
    assert calls == [fit]


def test_fit_async_native_is_inline_and_untouched() -> None:
    body = chat(**{PARAM: "truncate"})
    assert asyncio.run(fit_async("chat", body, facts(1), "fireworks", True)) is None
    assert body[PARAM] == "truncate"


# --- OpenAI's overflow error and upstream overflow messages ------------------------------------


def test_overflow_error_body() -> None:
    assert overflow_error("chat", 8192, 8000, 500).body() == {
        "error": {
            "message": chat_overflow(8192, 8000, 500),
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


@pytest.mark.parametrize(
    ("endpoint", "completion"), [("chat", None), ("chat", 0), ("chat", 77), ("completions", None), ("completions", 9)]
)
def test_our_own_messages_parse_back(endpoint: str, completion: int | None) -> None:
    err = overflow_error(endpoint, 4096, 4100, completion)
    assert parse_overflow(err.message) == (4096, 4100, completion or 0)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # OpenAI chat; github.com/conghaonet/hao_chatgpt/issues/4
        (
            "This model's maximum context length is 4097 tokens. However, you requested 4268 tokens (4012 in the "
            "messages, 256 in the completion). Please reduce the length of the messages or completion.",
            (4097, 4012, 256),
        ),
        # OpenAI chat, no budget; github.com/biu9/cc98-summary/issues/2
        (
            "This model's maximum context length is 16384 tokens. However, your messages resulted in 64622 tokens. "
            "Please reduce the length of the messages.",
            (16384, 64622, 0),
        ),
        # OpenAI chat with tools, no budget; github.com/bytedance/deer-flow/issues/310
        (
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 202868 tokens "
            "(202767 in the messages, 101 in the functions). Please reduce the length of the messages or functions.",
            (128000, 202868, 0),
        ),
        # OpenAI chat with tools and a budget; github.com/nanbingxyz/5ire/issues/268
        (
            "This model's maximum context length is 8192 tokens. However, you requested 9455 tokens (2426 in the "
            "messages, 2933 in the functions, and 4096 in the completion). Please reduce the length of the messages, "
            "functions, or completion.",
            (8192, 5359, 4096),
        ),
        # OpenAI legacy completions; github.com/tatsu-lab/stanford_alpaca/issues/47
        (
            "This model's maximum context length is 4097 tokens, however you requested 4162 tokens (1090 in your "
            "prompt; 3072 for the completion). Please reduce your prompt; or completion length..",
            (4097, 1090, 3072),
        ),
        # Azure OpenAI chat (as an SDK shows it); github.com/Azure/azure-sdk-for-python/issues/40986
        (
            "(context_length_exceeded) This model's maximum context length is 128000 tokens. However, you requested "
            "1124171 tokens (124171 in the messages, 1000000 in the completion). Please reduce the length of the "
            "messages or completion.",
            (128000, 124171, 1000000),
        ),
        # Azure OpenAI legacy completions; github.com/run-llama/llama_index/pull/402
        (
            "This model's maximum context length is 2046 tokens, however you requested 3383 tokens (3383 in your "
            "prompt; 0 for the completion). Please reduce your prompt; or completion length.",
            (2046, 3383, 0),
        ),
        # Azure OpenAI input limit (GPT-5); github.com/BerriAI/litellm/issues/15968
        (
            "AzureException BadRequestError - Input tokens exceed the configured limit of 272000 tokens. Your "
            "messages resulted in 509178 tokens. Please reduce the length of the messages.",
            (272000, 509178, 0),
        ),
        # vLLM before 0.11; github.com/vllm-project/vllm/issues/20409
        (
            "This model's maximum context length is 16384 tokens. However, you requested 122946 tokens (112946 in "
            "the messages, 10000 in the completion). Please reduce the length of the messages or completion.",
            (16384, 112946, 10000),
        ),
        # vLLM, prompt alone; vllm/entrypoints/openai/serving_engine.py in github.com/vllm-project/vllm
        (
            "This model's maximum context length is 32768 tokens. However, your request has 59360 input tokens. "
            "Please reduce the length of the input messages.",
            (32768, 59360, 0),
        ),
        # vLLM, prompt + max_tokens; same file
        (
            "'max_tokens' or 'max_completion_tokens' is too large: 47186. This model's maximum context length is "
            "131072 tokens and your request has 86565 input tokens (47186 > 131072 - 86565).",
            (131072, 86565, 47186),
        ),
        # Anthropic; github.com/sojohnnysaid/project-guide/issues/2
        ("prompt is too long: 208656 tokens > 200000 maximum", (200000, 208656, 0)),
        # Anthropic, prompt + max_tokens; github.com/stackblitz/bolt.new/issues/7422
        (
            "input length and `max_tokens` exceed context limit: 86888 + 119866 > 204648, decrease input length or "
            "`max_tokens` and try again",
            (204648, 86888, 119866),
        ),
        # Gemini; github.com/google-gemini/gemini-cli/issues/6678
        (
            "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
            (1048576, 1200293, 0),
        ),
    ],
)
def test_parse_overflow(message: str, expected: tuple[int, int, int]) -> None:
    assert parse_overflow(message) == expected
    assert parse_overflow(f"openai: {message}") == expected  # as relayed with the provider's name


@pytest.mark.parametrize(
    "message",
    [
        # vLLM >= 0.11 says "at least": not exact. github.com/vllm-project/vllm/issues/42474
        "This model's maximum context length is 128000 tokens. However, you requested 65535 output tokens and your "
        "prompt contains at least 62466 input tokens, for a total of at least 128001 tokens.",
        # OpenRouter says "about": not exact.
        "This endpoint's maximum context length is 8192 tokens. However, you requested about 12000 tokens (10000 of "
        "text input, 2000 in the output). Please reduce the length of either one.",
        # Numbers that do not add up.
        "This model's maximum context length is 4097 tokens. However, you requested 4000 tokens (4012 in the "
        "messages, 256 in the completion). Please reduce the length of the messages or completion.",
        "Rate limit reached for gpt-4o in organization org-x on tokens per min.",
        "",
    ],
)
def test_parse_overflow_refuses_inexact_or_unknown(message: str) -> None:
    assert parse_overflow(message) is None
