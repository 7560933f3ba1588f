"""Unit tests of the files relay (gateway/routes/files.py, jobs.py, object_api.py): the upload stream, validation,
where the APIs live.

Multipart bodies are encoded by httpx and aiohttp, not by us (tests/support/multipart.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.config import ProviderConfig
from gateway.errors import GatewayError
from gateway.routes.files import Upload, check_purpose
from gateway.routes.jobs import check_job_params
from gateway.routes.object_api import FilesTarget, object_path
from gateway.wire.asgi import ClientGone
from gateway.wire.multipart import HEAD_MAX, multipart_boundary
from tests.support.multipart import aiohttp_body, drain, httpx_body, receiver, split

# -- object paths -----------------------------------------------------------------------------------


def test_object_paths_quote_the_upstream_id() -> None:
    assert object_path("/files", "file-abc123", "/content") == "/files/file-abc123/content"
    assert object_path("/files", "a:b=c") == "/files/a%3Ab%3Dc"


@pytest.mark.parametrize("purpose", ["assistants", "batch", "fine-tune", "vision"])
def test_seed_purposes_pass(purpose: str) -> None:
    assert check_purpose(purpose.encode()) == purpose


@pytest.mark.parametrize("purpose", ["", "fine_tune", "Batch", "search", "x" * 100])
def test_other_purposes_are_400_with_param(purpose: str) -> None:
    with pytest.raises(GatewayError) as e:
        check_purpose(purpose.encode())
    assert (e.value.status, e.value.param) == (400, "purpose")


# -- the upload stream ---------------------------------------------------------------------------------
def test_upload_holds_back_only_the_head_until_purpose_is_valid() -> None:
    body, ct = httpx_body(purpose="batch", file=("a.jsonl", b"z" * 100_000, "application/jsonl"))
    up = Upload(receiver(split(body, 1000)), multipart_boundary(ct) or b"", 1 << 20)
    head, out = asyncio.run(drain(up))
    assert len(head) == 1 and up.purpose == "batch"  # purpose comes first: one chunk held
    assert b"".join(out) == body and up.size == len(body)


def test_a_bad_purpose_first_fails_before_anything_goes_upstream() -> None:
    body, ct = httpx_body(purpose="nope", file=("a.jsonl", b"z" * 100_000, "application/jsonl"))
    up = Upload(receiver(split(body, 1000)), multipart_boundary(ct) or b"", 1 << 20)
    with pytest.raises(GatewayError) as e:
        asyncio.run(up.head())
    assert e.value.param == "purpose"


def test_a_bad_purpose_after_the_file_stops_before_the_last_bytes() -> None:
    body, ct = aiohttp_body([("file", b"z" * 100_000, "a.jsonl"), ("purpose", b"nope", None)])
    up = Upload(receiver(split(body, 1000)), multipart_boundary(ct) or b"", 1 << 20)

    async def run() -> list[bytes]:
        sent: list[bytes] = []
        with pytest.raises(GatewayError):
            async for c in up.stream(await up.head()):
                sent.append(c)
        return sent

    sent = asyncio.run(run())
    assert isinstance(up.failure, GatewayError) and up.failure.param == "purpose"
    assert len(b"".join(sent)) < len(body)  # the closing boundary never left: the upstream saw a cut body


@pytest.mark.parametrize(
    ("parts", "param"),
    [
        ([("purpose", b"batch", None)], "file"),
        ([("purpose", b"batch", None), ("file", b"x", None)], "file"),  # a plain field is not a file
        ([("file", b"x", "a.jsonl")], "purpose"),
    ],
)
def test_missing_fields_are_400(parts: list[tuple[str, bytes, str | None]], param: str) -> None:
    body, ct = aiohttp_body(parts)
    up = Upload(receiver([body]), multipart_boundary(ct) or b"", 1 << 20)
    with pytest.raises(GatewayError) as e:
        asyncio.run(drain(up))
    assert e.value.param == param


def test_an_upload_past_the_limit_is_413_and_read_no_further() -> None:
    body, ct = httpx_body(purpose="batch", file=("a", b"z" * 50_000, "text/plain"))
    chunks = split(body, 1000)
    up = Upload(receiver(chunks), multipart_boundary(ct) or b"", 10_000)

    async def run() -> None:
        async for _ in up.stream(await up.head()):
            pass

    with pytest.raises(GatewayError) as e:
        asyncio.run(run())
    assert e.value.status == 413 and up.failure is e.value
    assert up.size <= 10_000 + 1000


def test_a_client_gone_mid_upload_stops_the_stream() -> None:
    body, ct = httpx_body(purpose="batch", file=("a", b"z" * 50_000, "text/plain"))
    up = Upload(receiver(split(body, 1000), disconnect_after=5), multipart_boundary(ct) or b"", 1 << 20)
    with pytest.raises(ClientGone):
        asyncio.run(drain(up))
    assert isinstance(up.failure, ClientGone)


def test_head_is_bounded_when_purpose_never_comes() -> None:
    body, ct = httpx_body(note="n" * (2 * HEAD_MAX), purpose="batch", file=("a", b"x", "text/plain"))
    up = Upload(receiver(split(body, 64 * 1024)), multipart_boundary(ct) or b"", 1 << 30)
    head, out = asyncio.run(drain(up))
    assert sum(map(len, head)) <= HEAD_MAX + 64 * 1024
    assert b"".join(out) == body and up.purpose == "batch"


# -- fine-tuning parameters (OpenAI's ranges) -------------------------------------------------------
@pytest.mark.parametrize(
    "body", [{}, {"suffix": "a"}, {"suffix": "s" * 64}, {"seed": 0}, {"seed": 2147483647}, {"suffix": None}]
)
def test_job_params_in_range(body: dict[str, Any]) -> None:
    check_job_params(body)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"suffix": ""}, "suffix"),
        ({"suffix": "s" * 65}, "suffix"),
        ({"suffix": 5}, "suffix"),
        ({"seed": -1}, "seed"),
        ({"seed": 2147483648}, "seed"),
        ({"seed": "1"}, "seed"),
        ({"seed": True}, "seed"),
    ],
)
def test_job_params_out_of_range_are_400_with_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as e:
        check_job_params(body)
    assert (e.value.status, e.value.param) == (400, param)


# -- where the APIs live ------------------------------------------------------------------------------
def provider(**kw: Any) -> ProviderConfig:
    return ProviderConfig(**kw)


def test_openai_target() -> None:
    t = FilesTarget("openai", provider(kind="openai", base_url="https://api.openai.com/v1/", api_key=SecretStr("k")))
    assert t.url("/files") == "https://api.openai.com/v1/files"
    assert (
        t.url("/files", [("after", "file-1"), ("limit", "2")]) == "https://api.openai.com/v1/files?after=file-1&limit=2"
    )
    assert t.headers(x_request_id="r") == {"authorization": "Bearer k", "x-request-id": "r"}


@pytest.mark.parametrize(
    ("base_url", "version", "url"),
    [
        ("https://r.openai.azure.com", None, "https://r.openai.azure.com/openai/v1/files"),
        ("https://r.openai.azure.com/openai/v1", "v1", "https://r.openai.azure.com/openai/v1/files"),
        (
            "https://r.openai.azure.com/openai",
            "preview",
            "https://r.openai.azure.com/openai/v1/files?api-version=preview",
        ),
        # https://learn.microsoft.com/en-us/rest/api/azureopenai/files/upload (classic: dated api-version)
        ("https://r.openai.azure.com", "2024-10-21", "https://r.openai.azure.com/openai/files?api-version=2024-10-21"),
    ],
)
def test_azure_target(base_url: str, version: str | None, url: str) -> None:
    cfg = provider(kind="azure", base_url=base_url, api_version=version, api_key=SecretStr("k"), headers={"X-A": "1"})
    t = FilesTarget("az", cfg)
    assert t.url("/files") == url
    assert t.headers() == {"x-a": "1", "api-key": "k"}  # Azure's key header, never a Bearer
