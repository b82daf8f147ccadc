"""
The stamp: the one place where the current context is put on a :class:`logging.LogRecord`.

Every path that adds ctxlog's fields to a record goes through :func:`stamp`:
:class:`ctxlog.ContextFilter`, :func:`ctxlog.get_logger`'s adapter, ctxlog's ``QueueHandler``
and the handlers that run in the logging thread. A record is stamped once, by the first of them,
in the thread that logged it; the others find the mark (:data:`ctxlog.context.STAMPED`) and
leave the record as it is, so a record handled again later keeps the context it was made in.

The fields are set one by one with ``setattr``, never through ``record.__dict__``: reading the
``__dict__`` of a record makes Python build the dict of an object that keeps its attributes
inline, and every later attribute access of the log call pays for that (measured: about 5% of a
whole ``logger.info`` call under callgrind, on CPython 3.11).
"""

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from ctxlog._stderr import write_line
from ctxlog.context import (
    FIELDS,
    MISSING,
    STAMPED,
    TRACE_FIELDS,
    add_trace_fields,
    fields_for_record,
)

_STANDARD: Final = len(FIELDS)
_NO_TRACE: Final = dict.fromkeys(TRACE_FIELDS, MISSING)

__all__ = ["disable_trace", "enable_trace", "stamp"]

#: ``None`` until a middleware turns trace context on; then the step that puts the current
#: OpenTelemetry span's ids on a record. Keeping it ``None`` is what makes trace context cost
#: nothing when it is off.
_traced: Callable[[logging.LogRecord], None] | None = None
#: ``opentelemetry.trace.get_current_span`` once trace context is on and OpenTelemetry is there.
_current_span: Callable[[], Any] | None = None
#: How often reading the current span raised; reported the first time only.
_span_errors = 0


def stamp(record: logging.LogRecord, defaults: Mapping[str, Any] | None = None) -> None:
    """
    Put the current context on ``record``, keeping every attribute it already has.

    A record stamped before is not stamped again. ``defaults`` fill fields the record lacks or
    holds as ``"-"``, whether it was stamped now or before (a record made by ``get_logger()``
    outside a request already carries the placeholders).
    """
    if not hasattr(record, STAMPED):
        record._ctxlog_stamped = True  # noqa: SLF001 - STAMPED, ctxlog's own mark
        traced = _traced
        if traced is not None:
            traced(record)  # the span's ids come before the context's
        base, local = fields_for_record(record)
        if local:
            _add_missing(record, local)  # a scope() wins over the request
        # The common case, the standard fields only and none on the record yet, stores them as
        # attributes of constant names: this runs for every record, and the loop of hasattr()
        # and setattr() calls below measured 6% of a plain logger.info call more (callgrind,
        # CPython 3.11).
        if (
            len(base) == _STANDARD
            and not hasattr(record, "ip")
            and not hasattr(record, "user")
            and not hasattr(record, "request_id")
            and not hasattr(record, "method")
            and not hasattr(record, "path")
        ):
            record.ip = base["ip"]
            record.user = base["user"]
            record.request_id = base["request_id"]
            record.method = base["method"]
            record.path = base["path"]
        else:  # fields bound to the request, the trace fields, or a caller's extra= among them
            _add_missing(record, base)
        if traced is not None:
            # A request whose middleware does not read traceparent has no trace fields.
            _add_missing(record, _NO_TRACE)
    if defaults:
        _fill_defaults(record, defaults)


def _add_missing(record: logging.LogRecord, fields: Mapping[str, Any]) -> None:
    """Give ``record`` each of ``fields`` it does not have."""
    for name, value in fields.items():
        if not hasattr(record, name):
            setattr(record, name, value)


def _fill_defaults(record: logging.LogRecord, defaults: Mapping[str, Any]) -> None:
    """Give ``record`` each of ``defaults`` it lacks or holds as ``"-"``."""
    for name, value in defaults.items():
        current = getattr(record, name, MISSING)
        if isinstance(current, str) and current == MISSING:
            setattr(record, name, value)


def _stamp_span(record: logging.LogRecord) -> None:
    """Put the ids of the current OpenTelemetry span, if there is a valid one, on ``record``."""
    if _current_span is None:
        return
    ids = _span_ids(_current_span)
    if ids is not None:
        if not hasattr(record, "trace_id"):
            record.trace_id = ids[0]
        if not hasattr(record, "span_id"):
            record.span_id = ids[1]


def _span_ids(current_span: Callable[[], Any]) -> tuple[str, str] | None:
    """Return the ids of the current OpenTelemetry span as hex, or ``None`` if it has none."""
    global _span_errors  # noqa: PLW0603 - a counter, reset by disable_trace()
    try:
        context = current_span().get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")
    except Exception as error:
        # A log call must never raise; the request's fields stand in. Said once, on stderr:
        # logging it from inside a log call could fail the same way again.
        _span_errors += 1
        if _span_errors == 1:
            write_line(
                f"ctxlog: reading the current OpenTelemetry span raised {error!r}; records "
                "take trace_id and span_id from the request instead (reported once)"
            )
        return None


def enable_trace() -> None:
    """
    Turn trace context on for every record: the fields, and the OpenTelemetry span if installed.

    OpenTelemetry is imported here, when a middleware asks for trace context, never by
    ``import ctxlog``.
    """
    global _traced, _current_span  # noqa: PLW0603 - the hook stamp() checks
    add_trace_fields()
    if _current_span is None:
        try:
            from opentelemetry import trace  # noqa: PLC0415 - optional, imported on demand
        except ImportError:
            pass
        else:
            _current_span = trace.get_current_span
    _traced = _stamp_span


def disable_trace() -> None:
    """Undo :func:`enable_trace` (:func:`ctxlog.testing.reset` calls this)."""
    global _traced, _current_span, _span_errors  # noqa: PLW0603 - see enable_trace
    _traced = None
    _current_span = None
    _span_errors = 0
