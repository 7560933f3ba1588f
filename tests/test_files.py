"""Unit tests of the files/fine-tuning/batches relay: ids, rewriting, multipart scanning, validation.

The rewriting goldens are the providers' own documented examples (URL beside each); multipart
bodies are encoded by httpx and aiohttp, not by us.
"""

from __future__ import annotations

import asyncio
import copy
import os
import uuid
from typing import Any

import aiohttp
import httpx
import pytest
from pydantic import SecretStr

from gateway.config import ProviderConfig
from gateway.errors import GatewayError
from gateway.routes.files import (
    HEAD_MAX,
    MAX_FIELD,
    FilesTarget,
    MultipartScanner,
    Upload,
    check_job_params,
    check_purpose,
    multipart_boundary,
    object_path,
)
from gateway.routes.objects import (
    BATCH,
    FILE,
    JOB,
    MemoryOwners,
    RedisOwners,
    decode_id,
    encode_id,
    rewrite_batch,
    rewrite_checkpoint,
    rewrite_file,
    rewrite_job,
)
from gateway.wire.asgi import ClientGone
from tests.conftest import REDIS_URL

PROVIDERS = {"openai", "my-open-ai", "azure.eu_1"}


# -- ids --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("upstream", ["file-abc123", "ftjob-AF1WoRqd3aJAHsqc9NY7iL8F", "batch_abc123", "a" * 256])
def test_ids_round_trip_and_stay_url_safe(provider: str, upstream: str) -> None:
    for kind in (FILE, JOB, BATCH):
        cid = encode_id(kind, provider, upstream)
        assert cid.startswith(kind.prefix + "sy")
        assert set(cid[len(kind.prefix) :]) <= set("abcdefghijklmnopqrstuvwxyz234567")
        assert decode_id(kind, cid, PROVIDERS) == (provider, upstream)


def test_provider_names_with_dashes_are_unambiguous() -> None:
    # "my-open" + "ai-file..." must not read as "my" + "open-ai-file...".
    a = encode_id(FILE, "my-open-ai", "file-1")
    b = encode_id(FILE, "my", "open-ai-file-1")
    assert a != b
    assert decode_id(FILE, a, {"my-open-ai", "my"}) == ("my-open-ai", "file-1")
    assert decode_id(FILE, b, {"my-open-ai", "my"}) == ("my", "open-ai-file-1")


@pytest.mark.parametrize(
    "cid",
    [
        "file-abc123",  # the upstream's own id: not routable
        encode_id(JOB, "openai", "ftjob-1"),  # another type's id
        encode_id(FILE, "elsewhere", "file-1"),  # a provider that is not configured
        encode_id(FILE, "openai", "../models"),  # would leave its path segment
        encode_id(FILE, "openai", ".."),
        encode_id(FILE, "openai", "a/b"),
        encode_id(FILE, "openai", "a?b=1"),
        encode_id(FILE, "openai", ""),
        encode_id(FILE, "openai", "x" * 257),
        encode_id(FILE, "openai", "file-1").upper(),  # not the canonical spelling
        encode_id(FILE, "openai", "file-1")[:-1],  # truncated
        encode_id(FILE, "openai", "file-1") + "a",
        "file-sy" + "!" * 10,
        "file-sy",
        "file-sy" + "é",
    ],
)
def test_foreign_and_forged_ids_do_not_decode(cid: str) -> None:
    assert decode_id(FILE, cid, PROVIDERS) is None


def test_object_paths_quote_the_upstream_id() -> None:
    assert object_path("/files", "file-abc123", "/content") == "/files/file-abc123/content"
    assert object_path("/files", "a:b=c") == "/files/a%3Ab%3Dc"


# -- rewriting: the providers' documented objects -----------------------------------------------------
def test_uploaded_file_object() -> None:
    # https://platform.openai.com/docs/api-reference/files/create (response example)
    doc = {
        "id": "file-abc123",
        "object": "file",
        "bytes": 120000,
        "created_at": 1677610602,
        "filename": "mydata.jsonl",
        "purpose": "fine-tune",
    }
    obj = copy.deepcopy(doc)
    assert rewrite_file(obj, "openai") == []
    assert obj == {**doc, "id": encode_id(FILE, "openai", "file-abc123")}


def test_azure_uploaded_file_object() -> None:
    # https://learn.microsoft.com/en-us/rest/api/azureopenai/files/upload?view=rest-azureopenai-2024-06-01
    doc = {
        "purpose": "fine-tune",
        "filename": "puppy.jsonl",
        "id": "file-181a1cbdcdcf4677ada87f63a0928099",
        "status": "notRunning",
        "created_at": 1646126127,
        "object": "file",
    }
    obj = copy.deepcopy(doc)
    rewrite_file(obj, "azure.eu_1")
    assert decode_id(FILE, obj["id"], PROVIDERS) == ("azure.eu_1", doc["id"])
    assert {k: v for k, v in obj.items() if k != "id"} == {k: v for k, v in doc.items() if k != "id"}


def test_fine_tuning_job_object() -> None:
    # https://platform.openai.com/docs/api-reference/fine-tuning/retrieve (response example)
    doc: dict[str, Any] = {
        "object": "fine_tuning.job",
        "id": "ftjob-abc123",
        "model": "davinci-002",
        "created_at": 1692661014,
        "finished_at": 1692661190,
        "fine_tuned_model": "ft:davinci-002:my-org:custom_suffix:7q8mpxmy",
        "organization_id": "org-123",
        "result_files": ["file-abc123"],
        "status": "succeeded",
        "validation_file": None,
        "training_file": "file-abc123",
        "hyperparameters": {"n_epochs": 4, "batch_size": 1, "learning_rate_multiplier": 1.0},
        "trained_tokens": 5768,
        "integrations": [],
        "seed": 0,
        "estimated_finish": 0,
    }
    obj = copy.deepcopy(doc)
    made = rewrite_job(obj, "openai")
    f = encode_id(FILE, "openai", "file-abc123")
    assert obj == {
        **doc,
        "id": encode_id(JOB, "openai", "ftjob-abc123"),
        "model": "openai/davinci-002",
        "fine_tuned_model": "openai/ft:davinci-002:my-org:custom_suffix:7q8mpxmy",  # usable on /v1/chat/completions
        "result_files": [f],
        "training_file": f,
    }
    assert made == [f]  # result files inherit the job's owner


def test_cancelled_job_object() -> None:
    # https://platform.openai.com/docs/api-reference/fine-tuning/cancel (response example)
    doc = {
        "object": "fine_tuning.job",
        "id": "ftjob-abc123",
        "model": "gpt-4o-mini-2024-07-18",
        "created_at": 1721764800,
        "fine_tuned_model": None,
        "organization_id": "org-123",
        "result_files": [],
        "status": "cancelled",
        "validation_file": "file-abc123",
        "training_file": "file-abc123",
    }
    obj = copy.deepcopy(doc)
    assert rewrite_job(obj, "openai") == []
    assert obj["fine_tuned_model"] is None and obj["result_files"] == []
    assert obj["validation_file"] == obj["training_file"] == encode_id(FILE, "openai", "file-abc123")


def test_checkpoint_object() -> None:
    # https://platform.openai.com/docs/api-reference/fine-tuning/list-checkpoints (response example)
    doc = {
        "object": "fine_tuning.job.checkpoint",
        "id": "ftckpt_zc4Q7MP6XxulcVzj4MZdwsAB",
        "created_at": 1721764867,
        "fine_tuned_model_checkpoint": "ft:gpt-4o-mini-2024-07-18:my-org:custom-suffix:96olL566:ckpt-step-2000",
        "metrics": {"full_valid_loss": 0.134, "full_valid_mean_token_accuracy": 0.874},
        "fine_tuning_job_id": "ftjob-abc123",
        "step_number": 2000,
    }
    obj = copy.deepcopy(doc)
    rewrite_checkpoint(obj, "openai")
    assert obj == {
        **doc,
        "fine_tuned_model_checkpoint": "openai/" + doc["fine_tuned_model_checkpoint"],
        "fine_tuning_job_id": encode_id(JOB, "openai", "ftjob-abc123"),
    }


def test_batch_object() -> None:
    # https://platform.openai.com/docs/api-reference/batch/retrieve (response example)
    doc = {
        "id": "batch_abc123",
        "object": "batch",
        "endpoint": "/v1/completions",
        "errors": None,
        "input_file_id": "file-abc123",
        "completion_window": "24h",
        "status": "completed",
        "output_file_id": "file-cvaTdG",
        "error_file_id": "file-HOWS94",
        "created_at": 1711471533,
        "in_progress_at": 1711471538,
        "expires_at": 1711557933,
        "finalizing_at": 1711493133,
        "completed_at": 1711493163,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 100, "completed": 95, "failed": 5},
        "metadata": {"customer_id": "user_123456789", "batch_description": "Nightly eval job"},
    }
    obj = copy.deepcopy(doc)
    made = rewrite_batch(obj, "openai")
    out, err = encode_id(FILE, "openai", "file-cvaTdG"), encode_id(FILE, "openai", "file-HOWS94")
    assert obj == {
        **doc,
        "id": encode_id(BATCH, "openai", "batch_abc123"),
        "input_file_id": encode_id(FILE, "openai", "file-abc123"),
        "output_file_id": out,
        "error_file_id": err,
    }
    assert made == [out, err]


def test_batch_still_validating_has_no_output_files() -> None:
    # https://platform.openai.com/docs/api-reference/batch/create (response example, abridged)
    obj = {"id": "batch_abc123", "object": "batch", "input_file_id": "file-abc123", "status": "validating"}
    obj |= {"output_file_id": None, "error_file_id": None}
    assert rewrite_batch(obj, "openai") == []
    assert obj["output_file_id"] is None and obj["error_file_id"] is None


# -- multipart ---------------------------------------------------------------------------------------
def httpx_body(files_first: bool = False, **fields: Any) -> tuple[bytes, str]:
    """A multipart body as httpx (the OpenAI SDK's transport) encodes it."""
    data = {k: v for k, v in fields.items() if not isinstance(v, tuple)}
    files = {k: v for k, v in fields.items() if isinstance(v, tuple)}
    req = httpx.Request("POST", "http://x/v1/files", data=data, files=files)
    return req.read(), req.headers["content-type"]


def aiohttp_body(parts: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart body in the given part order, as aiohttp encodes it."""

    async def encode() -> tuple[bytes, str]:
        form = aiohttp.FormData(default_to_multipart=True)
        for name, value, filename in parts:
            if filename is None:
                form.add_field(name, value.decode())
            else:
                form.add_field(name, value, filename=filename, content_type="application/jsonl")
        payload = form()

        class Sink:
            def __init__(self) -> None:
                self.out = bytearray()

            async def write(self, b: bytes) -> None:
                self.out += b

        sink = Sink()
        await payload.write(sink)  # type: ignore[arg-type]
        return bytes(sink.out), payload.content_type

    return asyncio.run(encode())


def scan(body: bytes, content_type: str, step: int) -> MultipartScanner:
    boundary = multipart_boundary(content_type)
    assert boundary is not None
    s = MultipartScanner(boundary)
    for i in range(0, len(body), step):
        s.feed(body[i : i + step])
    s.finish()
    return s


@pytest.mark.parametrize("step", [1, 2, 7, 64, 1000, 1 << 20])
def test_scanner_reads_an_sdk_upload_in_any_chunking(step: int) -> None:
    content = b'{"messages": []}\r\n--not-the-boundary\r\n' * 50 + os.urandom(3000)
    body, ct = httpx_body(purpose="fine-tune", file=("mydata.jsonl", content, "application/jsonl"))
    s = scan(body, ct, step)
    assert s.fields == {"purpose": b"fine-tune"}
    assert s.file_parts == ["file"]
    assert s.done


@pytest.mark.parametrize("step", [1, 5, 333])
def test_scanner_finds_purpose_after_the_file(step: int) -> None:
    body, ct = aiohttp_body([("file", b"x" * 5000, "a.jsonl"), ("purpose", b"batch", None)])
    s = scan(body, ct, step)
    assert s.fields == {"purpose": b"batch"} and s.file_parts == ["file"]


def test_scanner_keeps_only_a_bounded_field_value() -> None:
    body, ct = httpx_body(purpose="p" * (MAX_FIELD * 3), file=("a", b"x", "text/plain"))
    s = scan(body, ct, 4096)
    assert len(s.fields["purpose"]) == MAX_FIELD + 1


def test_scanner_refuses_malformed_bodies() -> None:
    body, ct = httpx_body(purpose="batch", file=("a", b"x", "text/plain"))
    boundary = multipart_boundary(ct)
    assert boundary is not None
    cut = MultipartScanner(boundary)
    cut.feed(body[:-10])
    with pytest.raises(GatewayError) as e:
        cut.finish()
    assert e.value.status == 400 and e.value.code == "invalid_multipart"
    bad = MultipartScanner(boundary)
    with pytest.raises(GatewayError):
        bad.feed(b"--" + boundary + b"\r\nX-No-Disposition: 1\r\n\r\nv\r\n--" + boundary + b"--\r\n")
    garbage = MultipartScanner(boundary)
    with pytest.raises(GatewayError):
        garbage.feed(b"--" + boundary + b"XX" + b"y" * 10)
    huge_headers = MultipartScanner(boundary)
    with pytest.raises(GatewayError):
        huge_headers.feed(b"--" + boundary + b"\r\n" + b"h" * 20000)


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc", b"abc"),
        ('multipart/form-data; boundary="a b:c"', b"a b:c"),
        ("Multipart/Form-Data;charset=utf-8;BOUNDARY=xyz", b"xyz"),
        ("application/json", None),
        ("multipart/mixed; boundary=abc", None),
        ("multipart/form-data", None),
    ],
)
def test_boundary_from_content_type(content_type: str, boundary: bytes | None) -> None:
    assert multipart_boundary(content_type) == boundary


@pytest.mark.parametrize("purpose", ["assistants", "batch", "fine-tune", "vision"])
def test_seed_purposes_pass(purpose: str) -> None:
    assert check_purpose(purpose.encode()) == purpose


@pytest.mark.parametrize("purpose", ["", "fine_tune", "Batch", "search", "x" * 100])
def test_other_purposes_are_400_with_param(purpose: str) -> None:
    with pytest.raises(GatewayError) as e:
        check_purpose(purpose.encode())
    assert (e.value.status, e.value.param) == (400, "purpose")


# -- the upload stream ---------------------------------------------------------------------------------
def receiver(chunks: list[bytes], disconnect_after: int | None = None) -> Any:
    msgs = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if disconnect_after is not None:
        msgs = [*msgs[:disconnect_after], {"type": "http.disconnect"}]
    it = iter(msgs)

    async def receive() -> dict[str, Any]:
        return next(it)

    return receive


def split(body: bytes, n: int) -> list[bytes]:
    return [body[i : i + n] for i in range(0, len(body), n)]


async def drain(up: Upload) -> tuple[list[bytes], list[bytes]]:
    head = await up.head()
    out = [c async for c in up.stream(head)]
    return head, out


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


# -- ownership ------------------------------------------------------------------------------------------
async def owners_contract(owners: Any) -> None:
    a, b = f"file-sy{uuid.uuid4().hex}", f"file-sy{uuid.uuid4().hex}"
    assert await owners.owners([a, b]) == [None, None]
    await owners.claim([(a, "team-a")])
    await owners.claim([(a, "team-b"), (b, "team-b")], keep_existing=True)  # derived files: the first owner stays
    assert await owners.owners([a, b]) == ["team-a", "team-b"]
    await owners.forget(a)
    assert await owners.owners([a]) == [None]
    await owners.claim([(b, "ops")])  # a fresh object id: overwrite
    assert await owners.owners([b]) == ["ops"]


def test_memory_owners() -> None:
    asyncio.run(owners_contract(MemoryOwners()))


def test_redis_owners_layout() -> None:
    redis = pytest.importorskip("redis")
    from gateway.accounting.usage.redis_store import RedisStore
    from gateway.config import UsageConfig

    prefix = f"sytest:{uuid.uuid4().hex[:12]}:"

    async def run() -> None:
        store = RedisStore(UsageConfig(redis_url=REDIS_URL, prefix=prefix))
        try:
            await store.ping()
        except Exception:
            pytest.skip("no Redis at " + REDIS_URL)
        owners = RedisOwners(store)
        await owners_contract(owners)
        await owners.claim([("file-syzz", "team-a")])
        r = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            assert await r.get(f"{prefix}obj:file-syzz") == "team-a"
            assert await r.ttl(f"{prefix}obj:file-syzz") == -1  # no expiry: objects live until deleted
        finally:
            await r.delete(*[k async for k in r.scan_iter(prefix + "*")])
            await r.aclose()
            await store.close()

    asyncio.run(run())


def test_redis_owners_fail_closed() -> None:
    from gateway.accounting.usage.redis_store import RedisStore
    from gateway.config import UsageConfig

    store = RedisStore(UsageConfig(redis_url="redis://127.0.0.1:1/0"), socket_timeout=0.2, connect_timeout=0.2)
    with pytest.raises(GatewayError) as e:
        asyncio.run(RedisOwners(store).owners(["file-syx"]))
    assert e.value.status == 503 and e.value.headers["retry-after"]
