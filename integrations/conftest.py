"""Fixtures of the integration suites; the helpers themselves are in _harness.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from _harness import AppLog


@pytest.fixture
def applog(tmp_path: Path) -> AppLog:
    """The JSON-lines log file of the server a test starts."""
    return AppLog(tmp_path)
