"""
Helpers for test suites: run code as inside a request, and put ctxlog back between tests.

Your views and tasks log with the request's fields; to test that without a server, run them
inside :func:`request`::

    import logging
    import ctxlog.testing

    def test_payment_is_logged_with_the_user(caplog):
        with ctxlog.testing.request(user="alice", request_id="r-1"):
            pay(42)
        assert caplog.records[-1].user == "alice"

An autouse fixture keeps one test's context and switches (``trace_context``) out of the next::

    import pytest
    import ctxlog.testing

    @pytest.fixture(autouse=True)
    def _ctxlog_reset():
        ctxlog.testing.reset()
        yield  # the test runs here
        ctxlog.testing.reset()

.. versionadded:: 0.3.0
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from ctxlog.context import (
    DEFAULT_FIELDS,
    MISSING,
    RequestState,
    check_names,
    request_var,
    reset_context,
    reset_request,
)
from ctxlog.record.escape import new_request_id
from ctxlog.record.stamp import disable_trace

__all__ = ["request", "reset"]


@contextlib.contextmanager
def request(
    *,
    ip: str = MISSING,
    user: str = MISSING,
    request_id: str | None = None,
    method: str = "GET",
    path: str = "/",
    **bound: Any,
) -> Iterator[dict[str, Any]]:
    """
    Run the ``with`` block as inside one request with these fields, as the middleware sets them.

    Everything the block logs, in this task or thread and in tasks and threads it starts the
    way a request's would (``asyncio`` tasks, :func:`ctxlog.wrap`), carries the fields; a
    ``ctxlog.bind()`` in the block changes the request's fields as it does in a view. The
    previous context is back after the block. Works in synchronous and asynchronous code.

    Args:
        ip: The client address.
        user: The user.
        request_id: The request id; a new one if not given.
        method: The request method.
        path: The path.
        **bound: Further fields, as if bound by the app.

    Yields:
        The request's fields when the block starts.

    Raises:
        ValueError: A bound name is not an identifier or is reserved, as for :func:`ctxlog.bind`.

    .. versionadded:: 0.3.0
    """
    check_names(bound)
    fields: dict[str, Any] = {
        "ip": ip,
        "user": user,
        "request_id": new_request_id() if request_id is None else request_id,
        "method": method,
        "path": path,
        **bound,
    }
    for name, value in DEFAULT_FIELDS.items():  # trace or task fields: "-", as a request has
        fields.setdefault(name, value)
    token = request_var.set(RequestState(fields))
    try:
        yield dict(fields)
    finally:
        reset_request(token)


def reset() -> None:
    """
    Put ctxlog's process-wide state back as it was at import.

    The current Context holds no request and nothing bound; records made outside requests lose
    ``trace_id`` and ``span_id``, and the current OpenTelemetry span is no longer read, even for
    a middleware built earlier with ``trace_context``.

    ``ctxlog.celery`` is uninstalled, if it was installed. Running handlers and delivery
    threads are not forgotten: the process lifecycle registry keeps them, so a
    :func:`ctxlog.nonblocking` worker still delivers what it holds at exit. The caches of pure
    functions (client addresses parsed, keys derived) need no reset: they give the same answers
    whatever ran before.

    .. versionadded:: 0.3.0
    """
    reset_context()
    disable_trace()
    # Optional glue is reset only if the application loaded it (importing ctxlog.celery would
    # import Celery).
    celery_glue = sys.modules.get("ctxlog.celery")
    if celery_glue is not None:
        celery_glue.uninstall()
