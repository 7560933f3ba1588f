"""Thought signatures kept on the gateway's side of a tool loop, for upstreams that need them back.

Gemini wants each ``functionCall`` it made replayed with its ``thoughtSignature`` (else 400,
https://ai.google.dev/gemini-api/docs/thought-signatures). The adapter hands the signature out
in the OpenAI tool call as ``extra_content.google.thought_signature``, which many clients drop
(langchain-openai, the Vercel AI SDK). So for a provider whose ``Capabilities`` say
``keeps_thought_signatures`` the pipeline keeps every signature its adapter reports
(``CallContext.signatures``), keyed by the tool-call id, and puts it back into a replayed
assistant tool call that lacks one before the adapter translates the request. The chat form is
where this happens, so chat, Responses and Messages clients all benefit. A signature the client
sent always wins; an unknown id goes without (the upstream decides). Other providers pay nothing.

Where they are kept: ``{prefix}sig:{tool_call_id}`` in Redis (the shared connection of
``usage.redis_url``, standalone or Cluster) for ``TTL`` seconds when usage goes to Redis, and always in a bounded
dict in the process, so a loop that comes back to the same worker needs no Redis read. Writes
go through a bounded queue to one task that pipelines them: the answer never waits, and a Redis
failure is logged, never the request's. A read happens only for replayed calls without a
signature that this process does not know, bounded by ``READ_TIMEOUT``; after a failure Redis
is skipped for ``COOLDOWN`` so a dead Redis does not slow every tool loop. Signature values are
never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

from gateway.wire.queues import batches
from gateway.wire.redis import RedisSource

log = logging.getLogger("switchyard")

# A signature only matters while its tool loop runs (Gemini checks the calls of the current turn),
# so a day covers slow tools and a human approving a call; it is a constant, not a setting.
TTL = 86_400
MEMORY_MAX = 10_000  # signatures one process keeps (oldest dropped first)
QUEUE_MAX = 10_000  # answers whose signatures wait for Redis; beyond it they are kept in the process only
WRITE_BATCH = 256  # answers per pipelined write
WRITE_TIMEOUT = 2.0  # off the request path, so longer than a read may take
READ_TIMEOUT = 0.25  # the longest a request waits for Redis before it goes without
COOLDOWN = 1.0  # seconds Redis is not read after a failed read
MAX_ID_CHARS = 256  # a longer tool-call id was never one of ours: not looked up
MAX_LOOKUPS = 512  # ids looked up per request; the latest calls first (the current turn is at the end)


def _has_signature(call: dict[str, Any]) -> bool:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    sig = google.get("thought_signature") if isinstance(google, dict) else None
    return isinstance(sig, str) and sig != ""


def unsigned_ids(messages: list[Any]) -> list[str]:
    """Ids of the assistant tool calls in ``messages`` that carry no thought signature, latest first."""
    ids: list[str] = []
    for msg in reversed(messages):
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        calls = msg.get("tool_calls")
        if not isinstance(calls, list):
            continue
        for call in reversed(calls):
            if not isinstance(call, dict) or _has_signature(call):
                continue
            cid = call.get("id")
            if isinstance(cid, str) and 0 < len(cid) <= MAX_ID_CHARS:
                ids.append(cid)
                if len(ids) >= MAX_LOOKUPS:
                    return ids
    return ids


def _signed(call: dict[str, Any], sig: str) -> dict[str, Any]:
    """``call`` (a copy) carrying ``sig``; other ``extra_content`` members stay."""
    extra = call.get("extra_content")
    extra = extra if isinstance(extra, dict) else {}
    google = extra.get("google")
    google = google if isinstance(google, dict) else {}
    return {**call, "extra_content": {**extra, "google": {**google, "thought_signature": sig}}}


def restore(messages: list[Any], found: dict[str, str]) -> list[Any] | None:
    """``messages`` with each unsigned assistant tool call whose id is in ``found`` given its
    signature; None when nothing changed. Copy on write: the client's messages stay as sent
    (another deployment of another kind may get them next)."""
    out: list[Any] | None = None
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") != "assistant" or not isinstance(msg.get("tool_calls"), list):
            continue
        calls = msg["tool_calls"]
        new_calls: list[Any] | None = None
        for j, call in enumerate(calls):
            if not isinstance(call, dict) or _has_signature(call):
                continue
            cid = call.get("id")
            sig = found.get(cid) if isinstance(cid, str) else None
            if sig is None:
                continue
            if new_calls is None:
                new_calls = list(calls)
            new_calls[j] = _signed(call, sig)
        if new_calls is not None:
            if out is None:
                out = list(messages)
            out[i] = {**msg, "tool_calls": new_calls}
    return out


def _text(value: str | bytes) -> str:
    # The shared connection decodes replies; a client that does not gives bytes.
    return value.decode() if isinstance(value, bytes) else value


class SignatureStore:
    """``remember`` the signatures an answer handed out; ``restore_into`` a request that replays them."""

    def __init__(self, redis: RedisSource | None, prefix: str) -> None:
        self.redis = redis  # the shared ``RedisHandle`` (``client()``), or None: in the process only
        self.prefix = prefix
        self._memory: OrderedDict[str, str] = OrderedDict()
        self._queue: asyncio.Queue[dict[str, str]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._skip_until = 0.0
        self._failing = False  # a Redis failure was logged; the next success says it is over
        self.dropped = 0  # answers whose signatures the full queue kept from Redis

    def key(self, call_id: str) -> str:
        return f"{self.prefix}sig:{call_id}"

    def remember(self, sigs: dict[str, str]) -> None:
        """Keep ``sigs`` (tool-call id -> signature): at once in the process, soon in Redis."""
        self._keep(sigs)
        if self.redis is None:
            return
        if self._task is None:
            self._queue = asyncio.Queue(QUEUE_MAX)
            self._task = asyncio.get_running_loop().create_task(self._write_loop())
        assert self._queue is not None
        try:
            self._queue.put_nowait(sigs)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("thought signatures: %d answers not kept in Redis (its queue is full)", self.dropped)

    def _keep(self, sigs: dict[str, str]) -> None:
        mem = self._memory
        for cid, sig in sigs.items():
            mem[cid] = sig
            mem.move_to_end(cid)
        while len(mem) > MEMORY_MAX:
            mem.popitem(last=False)

    async def restore_into(self, body: dict[str, Any]) -> None:
        """Put the kept signatures back into ``body``'s replayed tool calls that lack one."""
        messages = body.get("messages")
        if not isinstance(messages, list):
            return
        ids = unsigned_ids(messages)
        if not ids:
            return
        found = await self.lookup(ids)
        if found:
            restored = restore(messages, found)
            if restored is not None:
                body["messages"] = restored

    async def lookup(self, ids: list[str]) -> dict[str, str]:
        """The kept signatures of ``ids``: the process's first, then Redis for the rest."""
        mem = self._memory
        found: dict[str, str] = {}
        rest: list[str] = []
        for cid in ids:
            sig = mem.get(cid)
            if sig is None:
                rest.append(cid)
            else:
                found[cid] = sig
                mem.move_to_end(cid)  # a loop replays its whole history each turn: keep what is in use
        if not rest or self.redis is None or time.monotonic() < self._skip_until:
            return found
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                r = await self.redis.client()
                pipe = r.pipeline(transaction=False)
                for cid in rest:
                    pipe.get(self.key(cid))
                values = await pipe.execute()
        except Exception as e:  # Redis down or slow: the calls go without; the upstream decides
            self._skip_until = time.monotonic() + COOLDOWN
            self._failed("read", e)
            return found
        self._recovered()
        fetched = {cid: _text(v) for cid, v in zip(rest, values, strict=True) if v}
        if fetched:
            self._keep(fetched)  # the loop's next turns will likely come here again: no second read
            found.update(fetched)
        return found

    async def _write_loop(self) -> None:
        assert self._queue is not None
        async for batch in batches(self._queue, WRITE_BATCH):
            try:
                await self._write(batch)
            except Exception as e:  # the task must outlive any one failed batch
                self._failed("write", e)
            else:
                self._recovered()

    async def _write(self, batch: list[dict[str, str]]) -> None:
        async with asyncio.timeout(WRITE_TIMEOUT):
            r = await self.redis.client()
            pipe = r.pipeline(transaction=False)
            for sigs in batch:
                for cid, sig in sigs.items():
                    pipe.set(self.key(cid), sig, ex=TTL)
            await pipe.execute()

    def _failed(self, what: str, e: BaseException) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "thought signatures: a Redis %s failed (%s); until it answers, only this process's are used",
                what,
                type(e).__name__,
            )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("thought signatures: Redis answers again")

    async def close(self, timeout: float = 1.0) -> None:
        """Write what is queued (within ``timeout``), then stop the writer."""
        task, q = self._task, self._queue
        if task is None or q is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await q.join()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = self._queue = None
