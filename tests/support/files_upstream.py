"""A recording upstream for the files, fine-tuning and batch routes, in OpenAI's and Azure's shapes.

It is an independent oracle, on purpose: written for the tests from OpenAI's and Azure's API
references, sharing no code with the gateway or with ``simulators/files.py`` (the simulator that
`switchyard mock-upstream` ships), so a misreading of the API copied into both would not pass
unnoticed. Keep it separate rather than merging it with the simulator.

It runs on aiohttp's own web server in a background thread, so the multipart bodies the gateway
forwards are parsed by an implementation independent of the gateway's scanner (aiohttp's
streaming MultipartReader); the file part is hashed and spooled to disk, never held in memory.

Objects follow the examples of OpenAI's API reference (files:
https://platform.openai.com/docs/api-reference/files, fine-tuning:
https://platform.openai.com/docs/api-reference/fine-tuning, batches:
https://platform.openai.com/docs/api-reference/batch). Under ``/v1`` it wants OpenAI's Bearer key;
under ``/openai`` and ``/openai/v1`` Azure's ``api-key`` header and answers an upload with 201, as
Azure does (https://learn.microsoft.com/en-us/rest/api/azureopenai/files/upload).

``complete_job`` and ``complete_batch`` play the provider finishing its work: they create the
result, output and error files a real upstream would.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.servers import free_port

PREFIXES = ("/v1", "/openai", "/openai/v1")
CHUNK = 64 * 1024


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return web.json_response(body, status=status)


class FilesUpstream:
    def __init__(self, root: Path, key: str, azure_key: str | None = None) -> None:
        self.root = root
        self.key = key
        self.azure_key = azure_key or key
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, Any]] = {}  # id -> {"obj", "path", "sha256"}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- server --------------------------------------------------------------------------------
    def __enter__(self) -> FilesUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            runner = web.AppRunner(self._app(), access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("files upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        for p in PREFIXES:
            app.add_routes(
                [
                    web.post(p + "/files", self.upload),
                    web.get(p + "/files", self.list_files),
                    web.get(p + "/files/{id}", self.get_file),
                    web.delete(p + "/files/{id}", self.delete_file),
                    web.get(p + "/files/{id}/content", self.content),
                    web.post(p + "/fine_tuning/jobs", self.create_job),
                    web.get(p + "/fine_tuning/jobs", self.list_jobs),
                    web.get(p + "/fine_tuning/jobs/{id}", self.get_job),
                    web.post(p + "/fine_tuning/jobs/{id}/{action:cancel|pause|resume}", self.job_action),
                    web.get(p + "/fine_tuning/jobs/{id}/events", self.job_events),
                    web.get(p + "/fine_tuning/jobs/{id}/checkpoints", self.job_checkpoints),
                    web.post(p + "/batches", self.create_batch),
                    web.get(p + "/batches", self.list_batches),
                    web.get(p + "/batches/{id}", self.get_batch),
                    web.post(p + "/batches/{id}/cancel", self.cancel_batch),
                ]
            )
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
            }
        )
        azure = request.path.startswith("/openai")
        given = request.headers.get("api-key") if azure else request.headers.get("authorization")
        if given != (self.azure_key if azure else f"Bearer {self.key}"):
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")
        return await handler(request)

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}x"

    # -- files ---------------------------------------------------------------------------------
    def add_file(self, filename: str, purpose: str, content: bytes) -> str:
        fid = self._id("file-")
        path = self.root / fid
        path.write_bytes(content)
        obj = {
            "id": fid,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self.files[fid] = {"obj": obj, "path": path, "sha256": hashlib.sha256(content).hexdigest()}
        return fid

    async def upload(self, request: web.Request) -> web.Response:
        reader = await request.multipart()
        fields: dict[str, str] = {}
        fid = self._id("file-")
        path = self.root / fid
        digest = hashlib.sha256()
        size = 0
        filename = None
        record = self.requests[-1]
        try:
            while (part := await reader.next()) is not None:
                if part.filename is None:
                    fields[part.name or ""] = await part.text()
                    continue
                if part.name != "file":
                    return _error(400, "Unexpected file field.", "file")
                filename = part.filename
                with path.open("wb") as f:
                    while chunk := await part.read_chunk(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        f.write(chunk)
        except ConnectionResetError:
            # The sender aborted the body: nothing is created (and the answer reaches no one).
            record["aborted"] = True
            path.unlink(missing_ok=True)
            return _error(400, "The upload was cut off.")
        record["upload"] = {"fields": fields, "filename": filename, "bytes": size}
        if filename is None or "purpose" not in fields:
            return _error(400, "Missing file or purpose.")
        obj = {
            "id": fid,
            "object": "file",
            "bytes": size,
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": fields["purpose"],
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self.files[fid] = {"obj": obj, "path": path, "sha256": digest.hexdigest()}
        return web.json_response(obj, status=201 if request.path.startswith("/openai") else 200)

    async def list_files(self, request: web.Request) -> web.Response:
        objs = [f["obj"] for f in self.files.values()]
        if "purpose" in request.query:
            objs = [o for o in objs if o["purpose"] == request.query["purpose"]]
        if request.query.get("order", "desc") == "desc":
            objs.reverse()
        page, more = _page(objs, request, 10000)
        return web.json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": more,
            }
        )

    def _file(self, request: web.Request) -> dict[str, Any] | None:
        return self.files.get(request.match_info["id"])

    async def get_file(self, request: web.Request) -> web.Response:
        f = self._file(request)
        if f is None:
            return _error(404, f"No such File object: {request.match_info['id']}", "id")
        return web.json_response(f["obj"])

    async def delete_file(self, request: web.Request) -> web.Response:
        f = self.files.pop(request.match_info["id"], None)
        if f is None:
            return _error(404, f"No such File object: {request.match_info['id']}", "id")
        f["path"].unlink()
        return web.json_response({"id": f["obj"]["id"], "object": "file", "deleted": True})

    async def content(self, request: web.Request) -> web.StreamResponse:
        f = self._file(request)
        if f is None:
            return _error(404, f"No such File object: {request.match_info['id']}", "id")
        resp = web.StreamResponse(headers={"content-type": "application/octet-stream"})
        resp.content_length = f["path"].stat().st_size
        await resp.prepare(request)
        with f["path"].open("rb") as fh:
            while chunk := fh.read(CHUNK):
                await resp.write(chunk)
        await resp.write_eof()
        return resp

    # -- fine-tuning ---------------------------------------------------------------------------
    async def create_job(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests[-1]["json"] = body
        for param in ("training_file", "validation_file"):
            if body.get(param) is not None and body[param] not in self.files:
                return _error(400, f"invalid {param}: {body[param]}", param, f"invalid_{param}")
        jid = self._id("ftjob-")
        job = {
            "object": "fine_tuning.job",
            "id": jid,
            "model": body["model"],
            "created_at": int(time.time()),
            "fine_tuned_model": None,
            "organization_id": "org-123",
            "result_files": [],
            "status": "queued",
            "validation_file": body.get("validation_file"),
            "training_file": body["training_file"],
            "seed": body.get("seed", 42),
            "suffix": body.get("suffix"),
        }
        self.jobs[jid] = job
        self.events[jid] = [self._event(jid, f"Created fine-tuning job: {jid}")]
        return web.json_response(job)

    @staticmethod
    def _event(jid: str, message: str) -> dict[str, Any]:
        return {
            "object": "fine_tuning.job.event",
            "id": f"ft-event-{jid}-{time.monotonic_ns()}",
            "created_at": int(time.time()),
            "level": "info",
            "message": message,
            "data": None,
            "type": "message",
        }

    def complete_job(self, jid: str) -> str:
        """The job succeeds: a fine-tuned model and a result file appear."""
        job = self.jobs[jid]
        result = self.add_file("step_metrics.csv", "fine-tune-results", b"step,train_loss\n1,0.5\n")
        job.update(
            status="succeeded",
            fine_tuned_model=f"ft:{job['model']}:org-123:{job.get('suffix') or ''}:7p4lURel",
            result_files=[result],
            finished_at=int(time.time()),
        )
        self.events[jid].append(self._event(jid, "Fine tuning job successfully completed"))
        return result

    async def list_jobs(self, request: web.Request) -> web.Response:
        page, more = _page(list(reversed(self.jobs.values())), request, 20)
        return web.json_response({"object": "list", "data": page, "has_more": more})

    async def get_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return _error(404, f"Could not find fine tune: {request.match_info['id']}", "id")
        return web.json_response(job)

    async def job_action(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return _error(404, f"Could not find fine tune: {request.match_info['id']}", "id")
        job["status"] = {"cancel": "cancelled", "pause": "paused", "resume": "running"}[request.match_info["action"]]
        return web.json_response(job)

    async def job_events(self, request: web.Request) -> web.Response:
        events = self.events.get(request.match_info["id"])
        if events is None:
            return _error(404, f"Could not find fine tune: {request.match_info['id']}", "id")
        page, more = _page(list(reversed(events)), request, 20)
        return web.json_response({"object": "list", "data": page, "has_more": more})

    async def job_checkpoints(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return _error(404, f"Could not find fine tune: {request.match_info['id']}", "id")
        data = []
        if job["fine_tuned_model"]:
            data.append(
                {
                    "object": "fine_tuning.job.checkpoint",
                    "id": "ftckpt_zc4Q7MP6XxulcVzj4MZdwsAB",
                    "created_at": 1721764867,
                    "fine_tuned_model_checkpoint": job["fine_tuned_model"] + ":ckpt-step-1000",
                    "metrics": {"full_valid_loss": 0.134, "full_valid_mean_token_accuracy": 0.874},
                    "fine_tuning_job_id": job["id"],
                    "step_number": 1000,
                }
            )
        return web.json_response({"object": "list", "data": data, "first_id": None, "last_id": None, "has_more": False})

    # -- batches -------------------------------------------------------------------------------
    async def create_batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests[-1]["json"] = body
        if body.get("input_file_id") not in self.files:
            return _error(400, f"Invalid 'input_file_id': {body.get('input_file_id')}", "input_file_id")
        bid = self._id("batch_")
        batch = {
            "id": bid,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "in_progress_at": None,
            "expires_at": None,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        self.batches[bid] = batch
        return web.json_response(batch)

    def complete_batch(self, bid: str) -> tuple[str, str]:
        """The batch completes: an output and an error file appear."""
        batch = self.batches[bid]
        out = self.add_file("batch_output.jsonl", "batch_output", b'{"custom_id": "request-1"}\n')
        err = self.add_file("batch_errors.jsonl", "batch_output", b'{"custom_id": "request-2"}\n')
        batch.update(
            status="completed",
            output_file_id=out,
            error_file_id=err,
            completed_at=int(time.time()),
            request_counts={"total": 2, "completed": 1, "failed": 1},
        )
        return out, err

    async def list_batches(self, request: web.Request) -> web.Response:
        page, more = _page(list(reversed(self.batches.values())), request, 20)
        return web.json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": more,
            }
        )

    async def get_batch(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _error(404, f"No such Batch object: {request.match_info['id']}", "id")
        return web.json_response(batch)

    async def cancel_batch(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _error(404, f"No such Batch object: {request.match_info['id']}", "id")
        batch.update(status="cancelling", cancelling_at=int(time.time()))
        return web.json_response(batch)


def _page(objs: list[dict[str, Any]], request: web.Request, default_limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Cursor pagination as OpenAI documents it: the objects after ``after``, at most ``limit``."""
    after = request.query.get("after")
    if after:
        ids = [o["id"] for o in objs]
        objs = objs[ids.index(after) + 1 :] if after in ids else []
    limit = int(request.query.get("limit", default_limit))
    return objs[:limit], len(objs) > limit
