"""
Helpers for test suites: put ctxlog back in its initial state between tests.

::

    import pytest
    import ctxlog.testing

    @pytest.fixture(autouse=True)
    def _ctxlog_reset():
        ctxlog.testing.reset()

Yield:
        ctxlog.testing.reset()

.. versionadded:: 0.3.0
"""

from __future__ import annotations

from ctxlog.context import reset_context
from ctxlog.record.stamp import disable_trace

__all__ = ["reset"]


def reset() -> None:
    """
    Put ctxlog's process-wide state back as it was at import.

    The current Context holds no request and nothing bound; records made outside requests lose
    ``trace_id`` and ``span_id``, and the current OpenTelemetry span is no longer read, even for
    a middleware built earlier with ``trace_context``.

    .. versionadded:: 0.3.0
    """
    reset_context()
    disable_trace()
