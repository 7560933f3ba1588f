"""Anthropic's adapter under test: the harness the files here bind their helpers from."""

from providers.anthropic import AnthropicAdapter, AnthropicReply
from tests.unit.providers.harness import Harness

ANTHROPIC = Harness(
    AnthropicAdapter,
    "anthropic",
    "claude-sonnet-4-5",
    api_key="sk-ant-provider",
    client_model="anthropic/claude",
    created=7,
    reply=AnthropicReply,
)
