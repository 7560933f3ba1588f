"""The ``mock`` provider: the OpenAI dialect against the in-process simulated model.

The composition root mounts ``simulators.transport.InProcessTransport`` for ``mock://`` URLs, so
requests never leave the process; the adapter only points them there.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from providers.base import CallContext, FilesAPI, Target, UpstreamRequest, auth_headers
from providers.openai import OpenAIAdapter

if TYPE_CHECKING:
    from gateway.config import ProviderConfig


class MockAdapter(OpenAIAdapter):
    """The OpenAI dialect against the in-process simulator (``mock://`` URLs, no network)."""

    kind = "mock"
    responses_default = "translate"  # the simulated model speaks the chat form
    # Files go to the in-process files simulator; the simulated model has no exact tokenizer.
    capabilities = dataclasses.replace(OpenAIAdapter.capabilities, openai_tokenizers=False, needs_base_url=False)

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        super().__init__(name, cfg.model_copy(update={"base_url": "mock://" + name}))
        self._headers.pop("authorization", None)

    def build(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        req = super().build(endpoint, body, target, ctx)
        req.url = f"mock://{endpoint}"
        return req

    def files_api(self) -> FilesAPI:
        return FilesAPI("mock://files", auth_headers(self.cfg, None))  # simulators/files.py
