"""
:class:`ContextFilter`: put the request's context on every record a handler sees.

Attach it to **handlers**, not to loggers: a filter on a logger only runs for records logged on
that very logger, never for records of its children or of third-party libraries that propagate
to the handler. On a handler it sees them all::

    handler.addFilter(ctxlog.ContextFilter())
    handler.setFormatter(logging.Formatter("%(ip)s %(user)s %(request_id)s %(message)s"))
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ctxlog.context import RESERVED
from ctxlog.record.stamp import stamp

__all__ = ["ContextFilter"]


class ContextFilter(logging.Filter):
    """
    Add ``ip``, ``user``, ``request_id``, ``method``, ``path`` and the bound fields to records.

    The context is read when the filter runs, in the thread that logs, so put the filter on a
    handler that runs in that thread (ctxlog's ``QueueHandler`` captures the context before a
    record crosses a queue). Outside a request every standard field is ``"-"``. An attribute the
    record already has, such as a caller's ``extra=``, is never overwritten. The filter lets every
    record through and never raises. Once a middleware has turned ``trace_context`` on, every
    record also gets ``trace_id`` and ``span_id`` (see :doc:`/trace-context`).

    Args:
        defaults: Values for fields the context does not hold, used instead of ``"-"``; useful
            for a format string that names a field which only some requests bind
            (``defaults={"tenant": "-"}``).

    Raises:
        ValueError: A default's name is an attribute every LogRecord already has.

    .. versionadded:: 0.1.0
    """

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        defaults = dict(defaults or {})
        clash = sorted(name for name in defaults if name in RESERVED)
        if clash:
            msg = f"ContextFilter: defaults name LogRecord attributes {clash}; rename them"
            raise ValueError(msg)
        self.defaults: Mapping[str, Any] = MappingProxyType(defaults)

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the context to ``record`` and let it through."""
        stamp(record, self.defaults)
        return True
