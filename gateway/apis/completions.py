"""Legacy completions (``POST /v1/completions``, and Fireworks' ``/v4/beta/completions`` alias)."""

from gateway.apis.base import Endpoint
from gateway.pipeline.validate import check_completions
from gateway.wire.types import COMPLETIONS

ENDPOINT = Endpoint("completions", ("/v1/completions", "/v4/beta/completions"), check_completions, COMPLETIONS)
