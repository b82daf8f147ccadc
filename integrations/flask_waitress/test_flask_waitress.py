"""Flask (apps/flask_shop.py) under waitress (apps/waitress_serve.py), started for real: see integrations/README.md."""

from __future__ import annotations

import _flask_django_suite as suite
import pytest

PAIRING = suite.Pairing("flask", "waitress", "fw")
#: waitress reads X-Forwarded-For (its trusted_proxy), ctxlog trusts no proxy.
WAITRESS_DECIDES = suite.Pairing("flask", "waitress", "fW", server_trusts=True)

pytestmark = pytest.mark.timeout(120)


def test_concurrent_visitors_through_a_trusted_proxy(applog):
    """200 concurrent visitors: every record names its own request, and nothing leaks."""
    suite.concurrent_visitors(PAIRING, applog)


def test_spoofed_forwarded_for_from_an_untrusted_peer(applog):
    """X-Forwarded-For from a peer that is not a trusted proxy is ignored."""
    suite.untrusted_peer(PAIRING, applog)


def test_spoofed_forwarded_for_when_waitress_decides(applog):
    """With waitress's trusted_proxy instead of ctxlog's, the same addresses are logged."""
    suite.untrusted_peer(WAITRESS_DECIDES, applog)


def test_exception_in_a_view(applog):
    """A view's exception is logged with its request's fields and traceback; the 500 has the id."""
    suite.exception_in_view(PAIRING, applog)


def test_exception_in_a_streamed_body(applog):
    """The server's own traceback for a body that fails mid-stream names the request."""
    suite.exception_in_stream(PAIRING, applog)


def test_streamed_body_keeps_the_context(applog):
    """Every chunk of a streamed body logs with its request's fields."""
    suite.streaming(PAIRING, applog)


def test_graceful_shutdown_delivers_every_record(applog):
    """SIGTERM with records queued behind a slow destination and a request running: none lost."""
    suite.graceful_shutdown(PAIRING, applog)
