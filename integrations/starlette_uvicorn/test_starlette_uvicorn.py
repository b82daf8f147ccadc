"""Starlette (apps/starlette_app.py) under uvicorn, started for real: see integrations/README.md."""

from __future__ import annotations

import _asgi_suite as suite
import pytest

PAIRING = suite.Pairing("starlette_app", "uvicorn")

pytestmark = pytest.mark.timeout(120)


def test_concurrent_visitors_through_a_trusted_proxy(applog):
    """200 concurrent visitors: every record names its own request, and nothing leaks."""
    suite.concurrent_visitors(PAIRING, applog)


def test_spoofed_forwarded_for_from_an_untrusted_peer(applog):
    """X-Forwarded-For from a peer that is not a trusted proxy is ignored."""
    suite.untrusted_peer(PAIRING, applog)


def test_exception_in_a_view(applog):
    """An exception is logged with its request's fields and traceback; the 500 has the id."""
    suite.exception_in_view(PAIRING, applog)


def test_streaming_and_websockets(applog):
    """Streamed chunks and websocket messages keep their request's context."""
    suite.streaming_and_websockets(PAIRING, applog)


def test_graceful_shutdown_delivers_every_record(applog):
    """SIGTERM with records queued behind a slow destination and requests running: none lost."""
    suite.graceful_shutdown(PAIRING, applog)
