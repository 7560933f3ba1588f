"""Files, fine-tuning jobs and batches through the running gateway, driven with the official OpenAI SDK.

The upstream is tests/support/files_upstream.py (aiohttp's server and multipart parser, OpenAI's and
Azure's object shapes). Covered: the upload streamed through (the very bytes, the provider's
credential, memory flat for a large file in a separate gateway process), list/retrieve/content/
delete, the job and batch lifecycles, ids that route by themselves, ownership between keys (404,
filtered lists, admin sees all, shared through Redis by two replicas), the documented errors,
Azure's URLs and key header, usage records and metrics.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import parse_config
from gateway.pipeline.routing import Router
from gateway.routes.objects import BATCH, FILE, JOB, decode_id, encode_id
from tests.e2e.conftest import ADMIN_KEY, CLIENT_KEY, OTHER_KEY, UPSTREAM_KEY, GatewayFor, base_config, sdk
from tests.support.files_upstream import FilesUpstream
from tests.support.redis import REDIS_URL
from tests.support.servers import ServerThread, free_port

AZURE_KEY = "az-upstream-key"
TRAINING = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' * 20


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilesUpstream]:
    with FilesUpstream(tmp_path_factory.mktemp("files-upstream"), UPSTREAM_KEY, AZURE_KEY) as u:
        yield u


def config(up: FilesUpstream, **overrides: Any) -> dict[str, Any]:
    cfg = base_config(
        keys=[
            {"name": "team-a", "key": CLIENT_KEY},
            {"name": "team-b", "key": OTHER_KEY},
            {"name": "ops", "key": ADMIN_KEY, "admin": True},
        ]
    )
    cfg["providers"]["openai"] = {
        "kind": "openai",
        "base_url": up.url + "/v1",
        "api_key": UPSTREAM_KEY,
        "files": True,
        "timeout": 10,
    }
    cfg["providers"]["anthropic"] = {"kind": "anthropic", "base_url": up.url, "api_key": "sk-ant"}
    cfg.update(overrides)
    return cfg


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def upload(c: openai.OpenAI, content: bytes = TRAINING, purpose: Any = "fine-tune", name: str = "train.jsonl") -> Any:
    return c.files.create(file=(name, io.BytesIO(content)), purpose=purpose)


@pytest.fixture
def gw(up: FilesUpstream, gateway_for: GatewayFor) -> ServerThread:
    return gateway_for(config(up))


# -- files -------------------------------------------------------------------------------------------
def test_upload_list_retrieve_content_delete(gw: ServerThread, up: FilesUpstream) -> None:
    c = sdk(gw)
    n = len(up.requests)
    f = upload(c)
    provider, upstream_id = decode_id(FILE, f.id, {"openai"}) or ("", "")
    assert provider == "openai" and upstream_id in up.files  # the id routes by itself
    assert (f.bytes, f.filename, f.purpose) == (len(TRAINING), "train.jsonl", "fine-tune")
    sent = up.requests[n]
    assert sent["path"] == "/v1/files"
    assert sent["headers"]["Authorization"] == f"Bearer {UPSTREAM_KEY}"  # the provider's key, never the client's
    assert CLIENT_KEY not in str(sent["headers"])
    assert sent["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert sent["upload"] == {"fields": {"purpose": "fine-tune"}, "filename": "train.jsonl", "bytes": len(TRAINING)}
    assert up.files[upstream_id]["sha256"] == hashlib.sha256(TRAINING).hexdigest()

    assert f.id in [x.id for x in c.files.list()]
    assert c.files.retrieve(f.id).model_dump() == f.model_dump()
    assert c.files.content(f.id).read() == TRAINING
    deleted = c.files.delete(f.id)
    assert (deleted.id, deleted.deleted) == (f.id, True)
    assert upstream_id not in up.files
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve(f.id)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_documented_curl_upload(gw: ServerThread, up: FilesUpstream, tmp_path: Path) -> None:
    # https://platform.openai.com/docs/api-reference/files/create (request example), aimed at the gateway:
    #   curl https://api.openai.com/v1/files -H "Authorization: Bearer $OPENAI_API_KEY" \
    #     -F purpose="fine-tune" -F file="@mydata.jsonl"
    (tmp_path / "mydata.jsonl").write_bytes(TRAINING)
    command = f'curl -sS {gw.url}/v1/files -H "Authorization: Bearer $OPENAI_API_KEY" -F purpose="fine-tune" -F file="@mydata.jsonl"'
    env = {"PATH": os.environ["PATH"], "OPENAI_API_KEY": CLIENT_KEY}
    out = subprocess.run(["sh", "-c", command], cwd=tmp_path, env=env, capture_output=True, timeout=30, check=True)
    obj = json.loads(out.stdout)
    assert (obj["object"], obj["bytes"], obj["filename"], obj["purpose"]) == (
        "file",
        len(TRAINING),
        "mydata.jsonl",
        "fine-tune",
    )
    assert sdk(gw).files.content(obj["id"]).read() == TRAINING


def test_purpose_after_the_file_is_still_checked(gw: ServerThread, up: FilesUpstream) -> None:
    def body(purpose: bytes) -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
        for _ in range(50):
            yield b"y" * 20_000
        yield b'\r\n--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n' + purpose + b"\r\n--b--\r\n"

    headers = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "multipart/form-data; boundary=b"}
    ok = httpx.post(gw.url + "/v1/files", content=body(b"batch"), headers=headers, timeout=30)
    assert ok.status_code == 200 and ok.json()["bytes"] == 1_000_000
    before = len(up.files)
    bad = httpx.post(gw.url + "/v1/files", content=body(b"nope"), headers=headers, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "purpose"
    wait_for(lambda: up.requests[-1].get("aborted") is True)  # the upstream saw a cut body...
    assert len(up.files) == before  # ...and made nothing


# -- fine-tuning jobs ---------------------------------------------------------------------------------
def test_job_lifecycle(gw: ServerThread, up: FilesUpstream) -> None:
    c = sdk(gw)
    train, valid = upload(c), upload(c, name="valid.jsonl")
    job = c.fine_tuning.jobs.create(
        model="openai/gpt-4o-mini",
        training_file=train.id,
        validation_file=valid.id,
        suffix="custom-model-name",
        seed=42,
        hyperparameters={"n_epochs": 2},
    )
    sent = up.requests[-1]["json"]
    assert sent["model"] == "gpt-4o-mini"  # the upstream's model name
    assert sent["training_file"] == decode_id(FILE, train.id, {"openai"})[1]  # type: ignore[index]
    assert sent["validation_file"] == decode_id(FILE, valid.id, {"openai"})[1]  # type: ignore[index]
    assert (sent["suffix"], sent["seed"], sent["hyperparameters"]) == ("custom-model-name", 42, {"n_epochs": 2})
    assert decode_id(JOB, job.id, {"openai"}) is not None
    assert (job.model, job.training_file, job.validation_file, job.status) == (
        "openai/gpt-4o-mini",
        train.id,
        valid.id,
        "queued",
    )

    assert job.id in [j.id for j in c.fine_tuning.jobs.list()]
    assert c.fine_tuning.jobs.retrieve(job.id).id == job.id
    assert [e.message for e in c.fine_tuning.jobs.list_events(job.id)] == [f"Created fine-tuning job: {sent_id(job)}"]
    assert c.fine_tuning.jobs.pause(job.id).status == "paused"
    assert c.fine_tuning.jobs.resume(job.id).status == "running"
    assert c.fine_tuning.jobs.cancel(job.id).status == "cancelled"

    done = c.fine_tuning.jobs.create(model="openai/gpt-4o-mini", training_file=train.id)
    up.complete_job(sent_id(done))
    finished = c.fine_tuning.jobs.retrieve(done.id)
    assert finished.status == "succeeded"
    assert finished.fine_tuned_model == "openai/ft:gpt-4o-mini:org-123::7p4lURel"
    # The fine-tuned model's name routes on the generation endpoints as it is.
    route = Router(parse_config(config(up), env={})).resolve(finished.fine_tuned_model)
    assert (route.deployments[0].provider, route.deployments[0].target.upstream_model) == (
        "openai",
        "ft:gpt-4o-mini:org-123::7p4lURel",
    )
    (result,) = finished.result_files
    assert c.files.content(result).read() == b"step,train_loss\n1,0.5\n"  # the result file is the job owner's
    (ckpt,) = c.fine_tuning.jobs.checkpoints.list(done.id)
    assert ckpt.fine_tuning_job_id == done.id
    assert ckpt.fine_tuned_model_checkpoint == finished.fine_tuned_model + ":ckpt-step-1000"


def sent_id(obj: Any) -> str:
    """The upstream id inside a client id."""
    kind = {"fine_tuning.job": JOB, "batch": BATCH}.get(obj.object, FILE)
    return (decode_id(kind, obj.id, {"openai", "azure"}) or ("", ""))[1]


def test_an_alias_trains_on_the_deployment_where_the_file_is(up: FilesUpstream, gateway_for: GatewayFor) -> None:
    cfg = config(up)
    cfg["models"].append(
        {
            "name": "tuned",
            "deployments": [{"provider": "anthropic", "upstream": "c"}, {"provider": "openai", "upstream": "gpt-4o"}],
        }
    )
    c = sdk(gateway_for(cfg))
    job = c.fine_tuning.jobs.create(model="tuned", training_file=upload(c).id)
    assert up.requests[-1]["json"]["model"] == "gpt-4o"
    assert job.model == "openai/gpt-4o"


# -- batches ---------------------------------------------------------------------------------------------
def test_batch_lifecycle(gw: ServerThread, up: FilesUpstream) -> None:
    c = sdk(gw)
    f = upload(c, b'{"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n', "batch")
    b = c.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"k": "v"}
    )
    sent = up.requests[-1]["json"]
    assert sent == {
        "input_file_id": decode_id(FILE, f.id, {"openai"})[1],  # type: ignore[index]
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "metadata": {"k": "v"},
    }
    assert (b.input_file_id, b.status, b.output_file_id) == (f.id, "validating", None)
    assert c.batches.retrieve(b.id).id == b.id
    assert b.id in [x.id for x in c.batches.list()]
    assert c.batches.cancel(b.id).status == "cancelling"

    b2 = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    up.complete_batch(sent_id(b2))
    done = c.batches.retrieve(b2.id)
    assert done.status == "completed" and done.output_file_id and done.error_file_id
    assert c.files.content(done.output_file_id).read() == b'{"custom_id": "request-1"}\n'
    assert c.files.content(done.error_file_id).read() == b'{"custom_id": "request-2"}\n'


# -- ownership -----------------------------------------------------------------------------------------
def test_another_keys_objects_are_404_and_lists_are_filtered(gw: ServerThread, up: FilesUpstream) -> None:
    a, b, admin = sdk(gw), sdk(gw, OTHER_KEY), sdk(gw, ADMIN_KEY)
    fa = upload(a)
    job = a.fine_tuning.jobs.create(model="openai/gpt-4o-mini", training_file=fa.id)
    batch = a.batches.create(input_file_id=fa.id, endpoint="/v1/chat/completions", completion_window="24h")
    fb = upload(b)

    for call in (
        lambda: b.files.retrieve(fa.id),
        lambda: b.files.content(fa.id),
        lambda: b.files.delete(fa.id),
        lambda: b.fine_tuning.jobs.retrieve(job.id),
        lambda: b.fine_tuning.jobs.cancel(job.id),
        lambda: b.fine_tuning.jobs.list_events(job.id),
        lambda: b.batches.retrieve(batch.id),
        lambda: b.batches.cancel(batch.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.BadRequestError) as e:
        b.fine_tuning.jobs.create(model="openai/gpt-4o-mini", training_file=fa.id)
    assert e.value.body["param"] == "training_file"  # type: ignore[index]

    b_files = {x.id for x in b.files.list()}
    assert fb.id in b_files and fa.id not in b_files
    assert job.id not in {j.id for j in b.fine_tuning.jobs.list()}
    assert batch.id not in {x.id for x in b.batches.list()}
    assert fb.id not in {x.id for x in a.files.list()}

    # Admin keys see everything.
    assert {fa.id, fb.id} <= {x.id for x in admin.files.list()}
    assert admin.fine_tuning.jobs.retrieve(job.id).id == job.id
    assert admin.batches.retrieve(batch.id).id == batch.id
    assert admin.files.content(fb.id).read() == TRAINING


def test_filtered_lists_page_through_only_the_callers_objects(gw: ServerThread) -> None:
    a, b = sdk(gw), sdk(gw, OTHER_KEY)
    mine = []
    for i in range(4):
        mine.append(upload(a, name=f"a{i}.jsonl").id)
        upload(b, name=f"b{i}.jsonl")
    first = a.files.list(limit=3, order="asc", purpose="fine-tune")
    assert [f.id for f in first.data] == mine[:3] and first.has_more
    assert first.last_id == mine[2]
    # The SDK follows `after` page by page: exactly the caller's files, in order.
    assert [f.id for f in a.files.list(limit=3, order="asc")] == mine


def test_two_replicas_share_ownership_through_redis(
    up: FilesUpstream, gateway_for: GatewayFor, redis_prefix: str
) -> None:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception:
        pytest.skip("no Redis at " + REDIS_URL)
    prefix = redis_prefix  # its keys are deleted after the test, and again once both replicas have stopped
    cfg = config(up, usage={"redis_url": REDIS_URL, "prefix": prefix, "flush_interval": 0.02})
    one, two = gateway_for(cfg), gateway_for(cfg)
    f = upload(sdk(one))
    assert sdk(two).files.retrieve(f.id).id == f.id
    with pytest.raises(openai.NotFoundError):
        sdk(two, OTHER_KEY).files.retrieve(f.id)
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    assert r.get(f"{prefix}obj:{f.id}") == "team-a"


# -- errors --------------------------------------------------------------------------------------------
def test_documented_validation_errors(gw: ServerThread, up: FilesUpstream) -> None:
    c = sdk(gw)
    n = len(up.requests)
    with pytest.raises(openai.BadRequestError) as e:
        upload(c, purpose="fine_tune")
    assert e.value.body["param"] == "purpose"  # type: ignore[index]
    assert len(up.requests) == n  # refused before any upstream call
    f = upload(c)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"suffix": "s" * 65}, "suffix"),
        ({"suffix": ""}, "suffix"),
        ({"seed": -1}, "seed"),
        ({"seed": 2147483648}, "seed"),
        ({"training_file": "file-abc123"}, "training_file"),  # not an id of this gateway
        ({"training_file": encode_id(FILE, "openai", sent_id(f) + "0")}, "training_file"),  # forged: no owner
        ({"validation_file": "file-nope"}, "validation_file"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            c.fine_tuning.jobs.create(**{"model": "openai/gpt-4o-mini", "training_file": f.id, **extra})
        assert e.value.body["param"] == param, extra  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)  # no vendor/: model_not_found
    with pytest.raises(openai.BadRequestError) as e:
        c.fine_tuning.jobs.create(model="anthropic/claude", training_file=f.id)
    assert "stored on provider 'openai'" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        c.batches.create(input_file_id="file-abc123", endpoint="/v1/chat/completions", completion_window="24h")
    assert e.value.body["param"] == "input_file_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve("file-abc123")
    with pytest.raises(openai.BadRequestError) as e:
        c.files.list(after="file-abc123")
    assert e.value.body["param"] == "after"  # type: ignore[index]
    r = httpx.post(gw.url + "/v1/files", json={"purpose": "batch"}, headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_content_type"
    r = httpx.put(gw.url + "/v1/files", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert r.status_code == 405
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, "sk-wrong").files.list()


def test_upstream_errors_keep_status_and_message(gw: ServerThread, up: FilesUpstream) -> None:
    c = sdk(gw)
    f = upload(c)
    up.files.pop(sent_id(f))  # gone upstream behind the gateway's back
    with pytest.raises(openai.NotFoundError) as e:
        c.files.retrieve(f.id)
    assert e.value.body["message"].startswith("openai: No such File object")  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as e:
        c.fine_tuning.jobs.create(model="openai/gpt-4o-mini", training_file=f.id)
    assert e.value.body["message"].startswith("openai: invalid training_file")  # type: ignore[index]


def test_providers_without_files_are_a_400_naming_them(up: FilesUpstream, gateway_for: GatewayFor) -> None:
    cfg = config(up)
    cfg["keys"][1]["files_provider"] = "anthropic"
    gw = gateway_for(cfg)
    for key, name in ((OTHER_KEY, "anthropic"),):
        c = sdk(gw, key)
        for call in (lambda c=c: upload(c), lambda c=c: c.files.list()):
            with pytest.raises(openai.BadRequestError) as e:
                call()
            assert f"Provider '{name}' ({name}) does not support" in e.value.message
    nothing = config(up)
    nothing["providers"]["openai"]["files"] = False
    with pytest.raises(openai.BadRequestError) as e:
        upload(sdk(gateway_for(nothing)))
    assert e.value.code == "files_not_configured"


def test_model_globs_bound_jobs_and_batches(up: FilesUpstream, gateway_for: GatewayFor) -> None:
    cfg = config(up)
    cfg["keys"][1]["models"] = ["mock/*"]
    c = sdk(gateway_for(cfg), OTHER_KEY)
    f = upload(c)  # files are not models: the key may store them
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.fine_tuning.jobs.create(model="openai/gpt-4o-mini", training_file=f.id)
    assert e.value.code == "model_not_allowed"
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert e.value.code == "provider_not_allowed"


def test_uploads_past_max_upload_bytes_are_413(up: FilesUpstream, gateway_for: GatewayFor) -> None:
    gw = gateway_for(config(up, server={"access_log": False, "max_upload_bytes": 64 * 1024, "max_body_bytes": 2048}))
    c = sdk(gw)
    n = len(up.files)
    for size in (70_000, 5_000_000):
        with pytest.raises(openai.APIStatusError) as e:
            upload(c, b"x" * size)
        assert e.value.status_code == 413
    assert len(up.files) == n
    assert upload(c, b"x" * 1000).bytes == 1000
    with pytest.raises(openai.APIStatusError) as e:  # JSON bodies: max_body_bytes
        c.fine_tuning.jobs.create(model="openai/gpt-4o-mini", training_file="file-x", metadata={"k": "v" * 4000})
    assert e.value.status_code == 413


def test_a_client_gone_mid_upload_aborts_the_upstream_upload(gw: ServerThread, up: FilesUpstream) -> None:
    n, before = len(up.files), len(up.requests)
    head = b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
    head += b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n' + b"x" * 100_000
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(
            b"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + CLIENT_KEY.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000\r\n\r\n" + head
        )  # fmt: skip
        wait_for(lambda: len(up.requests) > before and up.requests[-1]["path"] == "/v1/files")
    wait_for(lambda: up.requests[-1].get("aborted") is True)
    assert len(up.files) == n

    # Recorded as 499 (an error) for the key that sent it.
    def errors() -> int:
        return httpx.get(gw.url + "/v1/usage", headers={"authorization": f"Bearer {CLIENT_KEY}"}).json()["errors"]

    wait_for(lambda: errors() == 1)


# -- Azure -----------------------------------------------------------------------------------------------
def test_azure_files_and_jobs(up: FilesUpstream, gateway_for: GatewayFor) -> None:
    cfg = config(up)
    cfg["providers"]["azure"] = {"kind": "azure", "base_url": up.url, "api_key": AZURE_KEY, "api_version": "2024-10-21"}
    cfg["keys"][0]["files_provider"] = "azure"
    c = sdk(gateway_for(cfg))
    f = upload(c)  # Azure answers 201; the client sees OpenAI's 200 and object
    sent = up.requests[-1]
    assert (sent["path"], sent["query"]) == ("/openai/files", {"api-version": "2024-10-21"})
    assert sent["headers"]["api-key"] == AZURE_KEY and "Authorization" not in sent["headers"]
    assert decode_id(FILE, f.id, {"azure"}) is not None
    job = c.fine_tuning.jobs.create(model="azure/gpt-4o-mini", training_file=f.id)
    assert up.requests[-1]["path"] == "/openai/fine_tuning/jobs" and job.model == "azure/gpt-4o-mini"
    assert c.files.content(f.id).read() == TRAINING
    assert f.id in [x.id for x in c.files.list()]


# -- accounting --------------------------------------------------------------------------------------------
def test_usage_records_and_metrics(up: FilesUpstream, gateway_for: GatewayFor) -> None:
    gw = gateway_for(config(up))
    c = sdk(gw)
    f = upload(c)
    c.files.list()
    c.files.content(f.id).read()
    with pytest.raises(openai.NotFoundError):
        sdk(gw, OTHER_KEY).files.retrieve(f.id)
    c.fine_tuning.jobs.create(model="openai/gpt-4o-mini", training_file=f.id)

    usage = httpx.get(gw.url + "/v1/usage", headers={"authorization": f"Bearer {CLIENT_KEY}"}).json()
    assert (usage["requests"], usage["errors"], usage["total_tokens"]) == (4, 0, 0)
    assert usage["models"]["openai/gpt-4o-mini"]["requests"] == 1
    other = httpx.get(gw.url + "/v1/usage", headers={"authorization": f"Bearer {OTHER_KEY}"}).json()
    assert (other["requests"], other["errors"]) == (1, 1)

    text = httpx.get(gw.url + "/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }

    def sample(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert sample("switchyard_file_bytes_total", key="team-a", provider="openai", direction="upload") > len(TRAINING)
    assert sample("switchyard_file_bytes_total", key="team-a", provider="openai", direction="download") == len(TRAINING)
    files_ok = dict(key="team-a", vendor="openai", model="none", endpoint="/v1/files", status="200")
    assert sample("switchyard_requests_total", **files_ok) == 3
    # Refused before reaching a provider: vendor "none", as on the generation routes.
    refused = dict(key="team-b", vendor="none", model="none", endpoint="/v1/files", status="404")
    assert sample("switchyard_requests_total", **refused) == 1
    jobs = dict(
        key="team-a", vendor="openai", model="openai/gpt-4o-mini", endpoint="/v1/fine_tuning/jobs", status="200"
    )
    assert sample("switchyard_requests_total", **jobs) == 1


def test_requests_count_toward_rpm(up: FilesUpstream, gateway_for: GatewayFor) -> None:
    cfg = config(up)
    cfg["keys"][0]["limits"] = {"rpm": 2, "tpm": 1}
    c = sdk(gateway_for(cfg))
    c.files.list()
    c.files.list()  # token budgets do not apply to these routes
    with pytest.raises(openai.RateLimitError):
        c.files.list()


# -- memory -----------------------------------------------------------------------------------------------
def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_large_upload_and_download_keep_gateway_memory_flat(up: FilesUpstream, tmp_path: Path) -> None:
    size = 192 * 1024 * 1024
    big = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with big.open("wb") as fh:
        for _ in range(size >> 20):
            fh.write(block)
            digest.update(block)
    cfg_path = tmp_path / "gw.yaml"
    cfg_path.write_text(yaml.safe_dump(config(up)))
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(cfg_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)
        c = sdk(url, timeout=60)
        warm = upload(c)  # every code path imported and warmed before the baseline
        c.files.content(warm.id).read()
        baseline = peak_rss_kib(proc.pid)

        with big.open("rb") as fh:
            f = c.files.create(file=fh, purpose="batch")
        assert f.bytes == size
        assert up.files[sent_id(f)]["sha256"] == digest.hexdigest()
        after_upload = peak_rss_kib(proc.pid)

        got = hashlib.sha256()
        with c.files.with_streaming_response.content(f.id) as r:
            for chunk in r.iter_bytes():
                got.update(chunk)
        assert got.hexdigest() == digest.hexdigest()
        after_download = peak_rss_kib(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)
    # 192 MiB went through each way; the gateway's peak grew by a few MiB at most.
    assert (after_upload - baseline) < 32 * 1024, (baseline, after_upload)
    assert (after_download - baseline) < 32 * 1024, (baseline, after_download)
