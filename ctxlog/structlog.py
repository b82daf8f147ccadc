"""
structlog glue: :func:`merge_context` puts ctxlog's fields into structlog's event dict.

structlog is not imported by this module nor by ``import ctxlog``; use it where structlog is
installed (``pip install structlog``). Add the processor to structlog's chain, before the
renderer::

    import structlog
    import ctxlog.structlog

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            ctxlog.structlog.merge_context,
            structlog.processors.add_log_level,
            structlog.processors.JSONRenderer(),
        ],
    )

Records of the standard library's loggers get the same fields when they are rendered by
structlog's ``ProcessorFormatter`` with the processor in its ``foreign_pre_chain``; a record
ctxlog has stamped (:class:`ctxlog.ContextFilter`, :func:`ctxlog.get_logger`,
:func:`ctxlog.nonblocking`) brings the fields it was stamped with, so it may be formatted in
another thread.

The processor reads the context of the thread or task that runs it, as
:class:`ctxlog.ContextFilter` does: inside a request, the request's fields (``ip``, ``user``,
``request_id``, ``method``, ``path`` and what was bound to it), outside one the same names as
``"-"``, and what :func:`ctxlog.bind` or :func:`ctxlog.scope` added. A key the event already has
is never replaced: an event's own ``user=`` wins over the request's.

.. versionadded:: 0.4.0
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

from ctxlog.context import RESERVED, STAMPED, fields_for_record

__all__ = ["merge_context"]


def merge_context(
    logger: Any,  # noqa: ARG001 - structlog's processor signature
    method_name: str,  # noqa: ARG001 - same
    event_dict: MutableMapping[str, Any],
) -> MutableMapping[str, Any]:
    """
    Add ctxlog's current fields to ``event_dict``, keeping every key it already has.

    A structlog processor. For a standard library record rendered by structlog's
    ``ProcessorFormatter`` (``event_dict["_record"]``) that ctxlog has stamped already (a
    :class:`ctxlog.ContextFilter` on the handler, :func:`ctxlog.get_logger`, or
    :func:`ctxlog.nonblocking`'s queue), the fields come from the record: those of the context it
    was made in, whichever thread formats it, and its ``extra=`` values. Any other record takes
    the current context, and an exception that escaped a request brings that request's fields,
    as it does for :class:`ctxlog.ContextFilter`.

    Args:
        logger: The wrapped logger (unused).
        method_name: The name of the log method called (unused).
        event_dict: The event; changed in place.

    Returns:
        ``event_dict``.

    .. versionadded:: 0.4.0
    """
    record = event_dict.get("_record")
    if not isinstance(record, logging.LogRecord):
        record = None
    else:
        _add_traceback_text(event_dict, record)
        if hasattr(record, STAMPED):
            _merge(event_dict, _fields_on(record))
            return event_dict
    base, local = fields_for_record(record)
    _merge(event_dict, local)  # a scope() or bind() wins over the request
    _merge(event_dict, base)
    return event_dict


def _add_traceback_text(event_dict: MutableMapping[str, Any], record: logging.LogRecord) -> None:
    """
    Give the event the traceback text of a record that has no exception object.

    structlog renders a standard library record's traceback from ``exc_info`` only; a record
    from another process, or one whose traceback :class:`ctxlog.RedactFilter` masked (it then
    keeps the masked text in ``exc_text`` and drops the object), would show none.
    """
    text = record.exc_text
    if text and not record.exc_info and "exception" not in event_dict:
        event_dict["exception"] = text


def _fields_on(record: logging.LogRecord) -> dict[str, Any]:
    """Return what a stamped record carries beyond a LogRecord's own attributes."""
    return {
        name: value
        for name, value in vars(record).items()
        if name not in RESERVED and not name.startswith("_")
    }


def _merge(event_dict: MutableMapping[str, Any], fields: Mapping[str, Any]) -> None:
    """Add each of ``fields`` that ``event_dict`` does not have."""
    for name, value in fields.items():
        if name not in event_dict:
            event_dict[name] = value
