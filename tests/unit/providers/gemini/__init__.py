"""Gemini's adapter under test: the harness the files here bind their helpers from."""

from providers.gemini import GeminiAdapter, GeminiReply
from tests.unit.providers.harness import Harness

KEY = "AIza-test-key-123"
GEMINI = Harness(GeminiAdapter, "gemini", "gemini-2.0-flash", api_key=KEY, created=1700000000, reply=GeminiReply)
