"""The vocabulary shared by the wire, the pipeline and the provider adapters.

It lives in the wire so that the wire needs nothing from ``providers/``: adapters produce
``UpstreamRequest``s and consume ``SSEEvent``s, the wire sends the one and parses the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

# Internal endpoint names of the chat-form APIs every adapter speaks (the route path is kept
# separately for usage and metrics).
CHAT = "chat"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"


# The OpenAI stream's end marker, as framed on the wire (relayed by the pipeline, recognised by adapters).
DONE = b"data: [DONE]\n\n"


class SSEEvent(NamedTuple):
    """One server-sent event: its ``event:`` name (None when absent) and joined ``data:`` bytes."""

    event: str | None
    data: bytes


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    stream: bool = False
