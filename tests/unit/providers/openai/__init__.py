"""OpenAI's adapter under test: the harness the files here bind their helpers from."""

from providers.openai import OpenAIAdapter
from tests.unit.providers.harness import Harness

OPENAI = Harness(
    OpenAIAdapter, "openai", "gpt-4o-mini", api_key="sk-up", config={"base_url": "https://api.openai.com/v1/"}
)
