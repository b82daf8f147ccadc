"""Shared fixtures: a clean context for every test, and a handler that keeps what was logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import ctxlog
import pytest
from ctxlog.context import reset_all


class Capture(logging.Handler):
    """Keep every record, with ctxlog's fields added by a ContextFilter, and its formatted line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(ctxlog.ContextFilter())
        self.setFormatter(
            logging.Formatter("%(ip)s %(user)s %(request_id)s %(method)s %(path)s %(message)s")
        )
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    def named(self, name: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == name]

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture(autouse=True)
def _clean_context() -> Iterator[None]:
    reset_all()
    yield
    reset_all()


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
