"""The relayed objects (gateway/routes/objects.py): routable ids, rewriting, ownership.

The rewriting goldens are the providers' own documented examples (URL beside each).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.routes import objects
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

# -- ids --------------------------------------------------------------------------------------------
PROVIDERS = {"openai", "my-open-ai", "azure.eu_1"}


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


def test_redis_owners_fail_closed() -> None:
    from gateway.accounting.usage.redis_store import RedisStore
    from gateway.config import UsageConfig

    store = RedisStore(UsageConfig(redis_url="redis://127.0.0.1:1/0"), socket_timeout=0.2, connect_timeout=0.2)
    with pytest.raises(GatewayError) as e:
        asyncio.run(RedisOwners(store).owners(["file-syx"]))
    assert e.value.status == 503 and e.value.headers["retry-after"]


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=700))
def test_b32_is_the_standard_encoding_lowercase_without_padding(raw: bytes) -> None:
    assert objects.b32(raw) == base64.b32encode(raw).decode("ascii").rstrip("=").lower()
