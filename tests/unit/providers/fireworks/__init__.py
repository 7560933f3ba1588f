"""Fireworks's adapter under test: the harness the files here bind their helpers from."""

from providers.fireworks import FireworksAdapter
from tests.unit.providers.harness import Harness

KEY = "fw-secret-key"
FIREWORKS = Harness(FireworksAdapter, "fireworks", "llama-v3p1-8b-instruct", api_key=KEY)
