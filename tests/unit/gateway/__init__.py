"""Unit tests of gateway/: one file per module, no servers, no Redis, no subprocesses."""

from __future__ import annotations

import hashlib

from gateway.config import parse_config


def cfg():
    """A config with a restricted key, a hashed key, three providers, a rename and a ranked alias."""
    return parse_config(
        {
            "keys": [
                {"name": "a", "key": "sk-a", "models": ["openai/gpt-4o*", "mock/*", "smart"]},
                {"name": "b", "sha256": hashlib.sha256(b"sk-b").hexdigest()},
            ],
            "providers": {
                "openai": {"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key": "sk-up"},
                "fw": {
                    "kind": "openai",
                    "base_url": "https://fw.example/v1",
                    "context_length_exceeded_behavior": "truncate",
                },
                "mock": {"kind": "mock"},
            },
            "models": [
                {"name": "openai/gpt-4o-mini", "context_window": 128000, "tokenizer": "o200k_base"},
                {"name": "openai/renamed", "upstream": "gpt-4o-2024-08-06"},
                {"name": "fw/llama", "upstream": "accounts/fireworks/models/llama"},
                {
                    "name": "smart",
                    "context_window": 1000,
                    "deployments": [
                        {"provider": "mock", "upstream": "echo", "rank": 1},
                        {"provider": "openai", "upstream": "gpt-4o", "weight": 2, "rank": 0},
                    ],
                },
            ],
        },
        env={},
    )
