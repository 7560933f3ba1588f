"""Azure OpenAI's adapter under test: the harness the files here bind their helpers from."""

from providers.azure import AzureAdapter
from tests.unit.providers.harness import Harness

KEY = "azure-secret-key"
ENDPOINT = "https://aoairesource.openai.azure.com"
AZURE = Harness(
    AzureAdapter, "azure", "gpt-35-turbo", api_key=KEY, config={"base_url": ENDPOINT, "api_version": "2024-10-21"}
)
