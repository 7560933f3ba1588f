"""The batches of a background writer (rate-limit settlements, thought signatures): off the request
path, many small writes become one round trip."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def batches(q: asyncio.Queue[T], most: int) -> AsyncIterator[list[T]]:
    """Forever: wait for one item, take up to ``most`` already queued. The items count as done
    (``q.join()`` returns) once the writer's work on their batch has run, failed or not."""
    while True:
        batch = [await q.get()]
        while len(batch) < most and not q.empty():
            batch.append(q.get_nowait())
        try:
            yield batch
        finally:
            for _ in batch:
                q.task_done()
