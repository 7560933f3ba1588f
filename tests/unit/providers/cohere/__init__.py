"""Cohere's adapter under test: the harness the files here bind their helpers from."""

from providers.cohere import CohereAdapter
from tests.unit.providers.harness import Harness

KEY = "co-secret-key"
COHERE = Harness(CohereAdapter, "cohere", "command-a-03-2025", api_key=KEY)
