"""OpenAI's files, fine-tuning jobs and batches, simulated in memory for ``mock-upstream``.

Shapes follow OpenAI's API reference (File, FineTuningJob, FineTuningJobEvent, Batch objects and
their list forms); jobs and batches stay where they were created (``queued``/``validating``) until
cancelled, so a demo or a test sees a stable lifecycle. Written independently of the gateway's
files routes (gateway/routes/files.py, jobs.py, batches.py).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import orjson

from gateway.wire.asgi import Scope, Send

PREFIXES = ("/v1/files", "/v1/fine_tuning/jobs", "/v1/batches")
_DISPOSITION = re.compile(rb'name="([^"]*)"(?:; filename="([^"]*)")?')


def _id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def _error(status: int, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}


def parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form field name -> (filename, value). Enough for one upload held in memory."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        return {}
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in raw.split(b"--" + m.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.partition(b"\r\n\r\n")
        d = _DISPOSITION.search(head)
        if d:
            filename = d.group(2).decode("utf-8", "replace") if d.group(2) is not None else None
            fields[d.group(1).decode()] = (filename, value.removesuffix(b"\r\n"))
    return fields


class FilesSimulator:
    def __init__(self) -> None:
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}

    async def handle(self, scope: Scope, raw: bytes, send: Send) -> None:
        headers = {k.decode(): v.decode("latin-1") for k, v in scope["headers"]}
        status, body, ctype = self.respond(
            scope["method"],
            scope["path"],
            scope.get("query_string", b"").decode(),
            headers.get("content-type", ""),
            raw,
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def respond(
        self, method: str, path: str, query_string: str, content_type: str, raw: bytes
    ) -> tuple[int, bytes, str]:
        """One request: (status, body, content type). Shared by the HTTP simulator and the in-process one."""
        query = dict(p.split("=", 1) for p in query_string.split("&") if "=" in p)
        parts = path.removeprefix("/v1/").split("/")
        if parts[0] == "files" and len(parts) == 3 and parts[2] == "content" and method == "GET":
            f = self.files.get(parts[1])
            if f is not None:
                return 200, f[1], "application/octet-stream"
            status, obj = _error(404, f"No such File object: {parts[1]}", "id")
        else:
            status, obj = self.route(method, parts, query, content_type, raw)
        return status, orjson.dumps(obj), "application/json"

    def route(self, method: str, parts: list[str], query: dict[str, str], ctype: str, raw: bytes) -> tuple[int, Any]:
        kind, rest = parts[0], parts[1:]
        if kind == "files":
            if not rest:
                return (
                    self.upload(ctype, raw)
                    if method == "POST"
                    else (200, self._list([f for f, _ in self.files.values()], query))
                )
            f = self.files.get(rest[0])
            if f is None:
                return _error(404, f"No such File object: {rest[0]}", "id")
            if method == "DELETE":
                del self.files[rest[0]]
                return 200, {"id": rest[0], "object": "file", "deleted": True}
            return 200, f[0]
        if kind == "fine_tuning":
            rest = rest[1:]  # after "jobs"
            if not rest:
                return (
                    self.create_job(orjson.loads(raw or b"{}"))
                    if method == "POST"
                    else (200, self._list(list(self.jobs.values()), query))
                )
            job = self.jobs.get(rest[0])
            if job is None:
                return _error(404, f"Could not find fine tune: {rest[0]}", "id")
            action = rest[1] if len(rest) > 1 else ""
            if action == "cancel":
                job["status"] = "cancelled"
            elif action == "events":
                event = {
                    "object": "fine_tuning.job.event",
                    "id": "ftevent-" + job["id"][6:],
                    "created_at": job["created_at"],
                    "level": "info",
                    "message": f"Job {job['status']}",
                    "data": {},
                    "type": "message",
                }
                return 200, {"object": "list", "data": [event], "has_more": False}
            return 200, job
        if kind == "batches":
            if not rest:
                return (
                    self.create_batch(orjson.loads(raw or b"{}"))
                    if method == "POST"
                    else (200, self._list(list(self.batches.values()), query))
                )
            batch = self.batches.get(rest[0])
            if batch is None:
                return _error(404, f"No such Batch object: {rest[0]}", "id")
            if len(rest) > 1 and rest[1] == "cancel":
                batch.update(status="cancelling", cancelling_at=int(time.time()))
            return 200, batch
        return _error(404, "Unknown path")

    def upload(self, ctype: str, raw: bytes) -> tuple[int, Any]:
        fields = parse_multipart(ctype, raw)
        if "file" not in fields or "purpose" not in fields:
            return _error(400, "A 'file' and a 'purpose' are required.", "file")
        filename, content = fields["file"]
        obj = {
            "id": _id("file-"),
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename or "upload",
            "purpose": fields["purpose"][1].decode(),
            "status": "processed",
            "status_details": None,
        }
        self.files[obj["id"]] = (obj, content)
        return 200, obj

    def create_job(self, body: dict[str, Any]) -> tuple[int, Any]:
        for field in ("training_file", "validation_file"):
            fid = body.get(field)
            if fid is not None and fid not in self.files:
                return _error(400, f"invalid {field}: {fid}", field)
        if not body.get("model") or not body.get("training_file"):
            return _error(400, "'model' and 'training_file' are required.", "model")
        job = {
            "object": "fine_tuning.job",
            "id": _id("ftjob-"),
            "model": body["model"],
            "created_at": int(time.time()),
            "finished_at": None,
            "fine_tuned_model": None,
            "organization_id": "org-mock",
            "result_files": [],
            "status": "queued",
            "validation_file": body.get("validation_file"),
            "training_file": body["training_file"],
            "hyperparameters": {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"},
            "trained_tokens": None,
            "error": None,
            "user_provided_suffix": body.get("suffix"),
            "seed": body.get("seed", 42),
            "estimated_finish": None,
            "integrations": [],
            "metadata": body.get("metadata"),
        }
        self.jobs[job["id"]] = job
        return 200, job

    def create_batch(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("input_file_id") not in self.files:
            return _error(400, f"invalid input_file_id: {body.get('input_file_id')}", "input_file_id")
        now = int(time.time())
        batch = {
            "id": _id("batch_"),
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 86400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        self.batches[batch["id"]] = batch
        return 200, batch

    @staticmethod
    def _list(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
        items = sorted(items, key=lambda o: o["created_at"], reverse=True)
        after = query.get("after")
        if after:
            ids = [o["id"] for o in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        limit = int(query.get("limit") or 10000)
        page = items[:limit]
        out = {"object": "list", "data": page, "has_more": len(items) > limit}
        if page:
            out["first_id"], out["last_id"] = page[0]["id"], page[-1]["id"]
        return out
