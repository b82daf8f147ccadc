"""Shared fixtures: a clean context for every test, and a handler that keeps what was logged."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import logging
import time
from collections.abc import Iterator

import pytest

import ctxlog
from ctxlog.testing import reset as reset_all


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


class SMTPServer:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that can be made slow, stopped and restarted."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.messages: list[email.message.Message] = []
        self.delay = 0.0
        self._controller = None

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self._controller.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until start() again."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[email.message.Message]:
        """Wait until at least ``count`` messages arrived; return them."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.messages)


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
