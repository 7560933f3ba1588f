"""Marks every test by its folder: ``tests/e2e/`` ``e2e``, ``tests/deploy/`` ``deploy``.

``pytest tests/unit`` (or ``-m "not e2e and not deploy"``) is the quick loop; a bare ``pytest`` runs all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

MARKED_FOLDERS = {"e2e": pytest.mark.e2e, "deploy": pytest.mark.deploy}  # tests/<folder>/ -> marker


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        folder = item.path.relative_to(here).parts[0] if item.path.is_relative_to(here) else None
        if folder in MARKED_FOLDERS:
            item.add_marker(MARKED_FOLDERS[folder])
