"""The ``Endpoint`` record: everything the pipeline needs to know about one client-facing API.

Chat Completions is the hub: every adapter speaks the chat form (and completions and embeddings,
which are chat's siblings on the OpenAI wire). Another client API is one record here plus, where
it is not one of those, a translator pair to and from the chat form; a provider that serves the
API itself declares it (``Capabilities.native``) and then gets the client's body as sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import GatewayError

DONE = b"data: [DONE]\n\n"


class ErrorShape(Protocol):
    """How a client API spells an error: the HTTP answer, and the event that ends a started stream."""

    def answer(self, err: GatewayError) -> tuple[int, bytes]: ...
    def event(self, err: GatewayError) -> bytes: ...


class OpenAIErrors:
    """``{"error": {"message", "type", "param", "code"}}``; mid-stream, one ``data:`` event."""

    def answer(self, err: GatewayError) -> tuple[int, bytes]:
        return err.status, err.to_bytes()

    def event(self, err: GatewayError) -> bytes:
        return err.sse_event()


OPENAI_ERRORS = OpenAIErrors()


@dataclass(frozen=True, slots=True, eq=False)
class Endpoint:
    """One generation API as clients speak it."""

    name: str  # "chat", "completions", "embeddings", "responses", "messages"
    paths: tuple[str, ...]  # the routes that serve it (the usage record's ``endpoint`` is the path)
    validate: Callable[[dict[str, Any]], None]  # the fields the gateway interprets; 400 with ``param``
    form: str  # the chat-form endpoint adapters are asked for (wire.types CHAT/COMPLETIONS/EMBEDDINGS)
    streams: bool = True  # may stream at all (embeddings never do)
    overflow_param: str = "max_tokens"  # the client's completion budget, for overflow handling
    errors: ErrorShape = OPENAI_ERRORS
    # OpenAI-wire APIs stream ``data:`` events and end with ``[DONE]``; the others end with an event.
    done: bytes | None = DONE
