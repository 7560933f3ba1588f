"""What the tests run against but do not test: loopback servers, an independent files API, parsers."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
