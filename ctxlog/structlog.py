"""
structlog glue: ctxlog's fields into structlog's event dict, and the event's secrets masked.

:func:`merge_context` adds the fields; :class:`Redactor` masks the secrets.

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

structlog's events are not :class:`logging.LogRecord` objects, so :class:`ctxlog.RedactFilter`
never sees them: add :class:`Redactor` to the chain, after ``merge_context`` and after the
processor that turns the exception into text (``format_exc_info``, ``dict_tracebacks``)::

    structlog.configure(
        processors=[
            ctxlog.structlog.merge_context,
            structlog.processors.format_exc_info,
            ctxlog.structlog.Redactor(),
            structlog.processors.JSONRenderer(),
        ],
    )

.. versionadded:: 0.4.0
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

from ctxlog.context import RESERVED, STAMPED, fields_for_record
from ctxlog.record.redact import RedactFilter

__all__ = ["Redactor", "merge_context"]

#: Keys structlog gives objects it reads later (the standard library record, the exception to
#: render): left as they are, a string in their place would break it.
_OBJECTS = frozenset({"_record", "_from_structlog", "exc_info"})


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


class Redactor:
    """
    A structlog processor that masks the secrets of the event dict, as ``RedactFilter`` does.

    Each value under a sensitive key becomes the mask; any other value (the ``event`` itself,
    bound values, a traceback already rendered as text) is masked by the patterns and, inside
    dicts and lists, by key; ``redact``'s :meth:`~ctxlog.RedactFilter.stats` count it. The
    request's ``ip``, ``request_id`` and ``method`` are left, and so are ``exc_info``,
    ``_record`` and ``_from_structlog``: structlog reads those objects later, so put the
    processor after the one that renders the exception (``format_exc_info``,
    ``dict_tracebacks``, ``ExceptionRenderer``), whose text it then masks.

    Args:
        redact: The filter whose keys, patterns, mask and counts are used (the one on the
            standard library's handlers, to count in one place); ``RedactFilter()`` if None.

    .. versionadded:: 0.4.0
    """

    def __init__(self, redact: RedactFilter | None = None) -> None:
        self.redact = RedactFilter() if redact is None else redact

    def __call__(
        self,
        logger: Any,  # noqa: ARG002 - structlog's processor signature
        method_name: str,  # noqa: ARG002 - same
        event_dict: MutableMapping[str, Any],
    ) -> MutableMapping[str, Any]:
        """Mask the secrets of ``event_dict`` in place and return it."""
        self.redact.redact_fields(event_dict, [key for key in event_dict if key not in _OBJECTS])
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
