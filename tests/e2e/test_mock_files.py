"""Files, fine-tuning jobs and batches through the gateway to `mock-upstream --dialect openai`."""

from __future__ import annotations

import io
from typing import Any

import openai
import pytest

from tests.e2e.conftest import OTHER_KEY, base_config, sdk

TRAINING = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


@pytest.fixture
def gateway_config(gateway_config: dict[str, Any]) -> dict[str, Any]:
    gateway_config["providers"]["openai"]["files"] = True
    gateway_config["keys"][1]["models"] = ["*"]
    return gateway_config


def test_file_job_and_batch_lifecycle(gateway):
    c, other = sdk(gateway), sdk(gateway, OTHER_KEY)
    f = c.files.create(file=("train.jsonl", io.BytesIO(TRAINING)), purpose="fine-tune")
    assert f.id.startswith("file-sy") and f.bytes == len(TRAINING) and f.filename == "train.jsonl"
    assert c.files.retrieve(f.id).purpose == "fine-tune"
    assert c.files.content(f.id).read() == TRAINING
    assert [x.id for x in c.files.list()] == [f.id]
    assert [x.id for x in other.files.list()] == []
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(f.id)

    job = c.fine_tuning.jobs.create(model="openai/gpt-4o-mini", training_file=f.id, suffix="demo", seed=7)
    assert job.id.startswith("ftjob-sy") and job.training_file == f.id and job.status == "queued"
    assert job.model == "openai/gpt-4o-mini"
    assert c.fine_tuning.jobs.retrieve(job.id).id == job.id
    assert [j.id for j in c.fine_tuning.jobs.list()] == [job.id]
    assert c.fine_tuning.jobs.list_events(job.id).data[0].object == "fine_tuning.job.event"
    assert c.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        c.fine_tuning.jobs.create(model="openai/gpt-4o-mini", training_file=f.id, suffix="x" * 65)

    batch_file = c.files.create(file=("b.jsonl", io.BytesIO(b"{}\n")), purpose="batch")
    b = c.batches.create(input_file_id=batch_file.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert b.id.startswith("batch_sy") and b.input_file_id == batch_file.id and b.status == "validating"
    assert c.batches.retrieve(b.id).id == b.id and c.batches.cancel(b.id).status == "cancelling"
    assert [x.id for x in c.batches.list()] == [b.id]
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(b.id)

    assert c.files.delete(f.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve(f.id)


def test_the_built_in_mock_provider_has_a_files_api_too(gateway_for):
    gw = gateway_for(base_config() | {"providers": {"mock": {"kind": "mock", "files": True}}})
    c = sdk(gw)
    f = c.files.create(file=("t.jsonl", io.BytesIO(TRAINING)), purpose="fine-tune")
    assert c.files.content(f.id).read() == TRAINING and [x.id for x in c.files.list()] == [f.id]
    job = c.fine_tuning.jobs.create(model="mock/echo", training_file=f.id)
    assert c.fine_tuning.jobs.retrieve(job.id).status == "queued"
    assert c.files.delete(f.id).deleted
