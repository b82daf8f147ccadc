"""
The stamp: the one place where the current context is put on a :class:`logging.LogRecord`.

Every path that adds ctxlog's fields to a record goes through :func:`stamp`:
:class:`ctxlog.ContextFilter`, :func:`ctxlog.get_logger`'s adapter, ctxlog's ``QueueHandler``
and the handlers that run in the logging thread.
"""


import logging
from collections.abc import Callable, Mapping
from typing import Any

from ctxlog._stderr import write_line
from ctxlog.context import (
    DEFAULT_FIELDS,
    MISSING,
    add_trace_fields,
    local_var,
    request_of_exception,
    request_var,
)

__all__ = ["disable_trace", "enable_trace", "stamp"]

_Stamp = Callable[[logging.LogRecord, Mapping[str, Any] | None], None]

#: ``None`` until a middleware turns trace context on; then the stamp that adds the trace fields.
#: Keeping it ``None`` is what makes trace context cost nothing when it is off.
_traced: _Stamp | None = None
#: ``opentelemetry.trace.get_current_span`` once trace context is on and OpenTelemetry is there.
_current_span: Callable[[], Any] | None = None
#: How often reading the current span raised; reported the first time only.
_span_errors = 0


def stamp(record: logging.LogRecord, defaults: Mapping[str, Any] | None = None) -> None:
    """
    Put the current context on ``record``, keeping every attribute it already has.

    ``defaults`` fill fields the record lacks or holds as ``"-"`` (a record made by
    ``get_logger()`` outside a request already carries the placeholders).
    """
    if _traced is not None:
        _traced(record, defaults)
        return
    # This runs for every record, so fields_for_record() is inlined. Adding the fields one by
    # one keeps the record's compact attribute dict; dict.update() measured slower.
    request = request_var.get()
    if request is None and record.exc_info:
        # Outside any request, an exception that escaped one (logged by the server) still
        # names the request it came from.
        request = request_of_exception(record)
    if request is None:
        base = DEFAULT_FIELDS
    elif request.resolve_user is None:
        base = request.fields
    else:
        base = request.current()
    attrs = record.__dict__
    local = local_var.get()
    if local:
        for name, value in local.items():
            if name not in attrs:
                attrs[name] = value
    for name, value in base.items():
        if name not in attrs:
            attrs[name] = value
    if defaults:
        for name, value in defaults.items():
            current = attrs.get(name, MISSING)
            if isinstance(current, str) and current == MISSING:
                attrs[name] = value


def _stamp_traced(record: logging.LogRecord, defaults: Mapping[str, Any] | None = None) -> None:
    """
    Do what :func:`stamp` does, with ``trace_id`` and ``span_id`` on every record.

    The ids of the current OpenTelemetry span, when there is a valid one, come before the
    context's (an attribute the record already has still wins); a request whose middleware does
    not read ``traceparent`` gets ``"-"`` for both.
    """
    attrs = record.__dict__
    if _current_span is not None:
        ids = _span_ids(_current_span)
        if ids is not None:
            if "trace_id" not in attrs:
                attrs["trace_id"] = ids[0]
            if "span_id" not in attrs:
                attrs["span_id"] = ids[1]
    request = request_var.get()
    if request is None and record.exc_info:
        # Outside any request, an exception that escaped one (logged by the server) still
        # names the request it came from.
        request = request_of_exception(record)
    if request is None:
        base = DEFAULT_FIELDS
    elif request.resolve_user is None:
        base = request.fields
    else:
        base = request.current()
    local = local_var.get()
    if local:
        for name, value in local.items():
            if name not in attrs:
                attrs[name] = value
    for name, value in base.items():
        if name not in attrs:
            attrs[name] = value
    if "trace_id" not in attrs:
        attrs["trace_id"] = MISSING
    if "span_id" not in attrs:
        attrs["span_id"] = MISSING
    if defaults:
        for name, value in defaults.items():
            current = attrs.get(name, MISSING)
            if isinstance(current, str) and current == MISSING:
                attrs[name] = value


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
    _traced = _stamp_traced


def disable_trace() -> None:
    """Undo :func:`enable_trace` (:func:`ctxlog.testing.reset` calls this)."""
    global _traced, _current_span, _span_errors  # noqa: PLW0603 - see enable_trace
    _traced = None
    _current_span = None
    _span_errors = 0
