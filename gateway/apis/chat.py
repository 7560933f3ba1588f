"""Chat Completions (``POST /v1/chat/completions``): the hub every adapter speaks."""

from gateway.apis.base import Endpoint
from gateway.pipeline.validate import check_chat
from gateway.wire.types import CHAT

ENDPOINT = Endpoint("chat", ("/v1/chat/completions",), check_chat, CHAT)
