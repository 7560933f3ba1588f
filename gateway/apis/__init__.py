"""Client-facing generation APIs: one ``Endpoint`` record each (see ``base.py``)."""

from gateway.apis import chat, completions, embeddings, messages, responses
from gateway.apis.base import Endpoint

ENDPOINTS: tuple[Endpoint, ...] = (
    chat.ENDPOINT,
    completions.ENDPOINT,
    embeddings.ENDPOINT,
    responses.ENDPOINT,
    messages.ENDPOINT,
)
