r"""
loguru glue: ctxlog's fields into each loguru record's ``extra``, and its secrets masked.

:func:`patch` adds the fields; :class:`Redactor` adds them and masks the secrets.

loguru is not imported by this module nor by ``import ctxlog``; use it where loguru is
installed (``pip install loguru``). Patch the logger once, at start-up::

    from loguru import logger
    import ctxlog.loguru

    logger.configure(patcher=ctxlog.loguru.patch)
    logger.add(sys.stderr, serialize=True)

or patch one logger: ``log = logger.patch(ctxlog.loguru.patch)``. A sink's format then reads
the fields as ``{extra[ip]}``, ``{extra[request_id]}`` ...

The patcher reads the context of the thread or task that logs, as :class:`ctxlog.ContextFilter`
does: inside a request, the request's fields and what was bound to it, outside one the standard
names as ``"-"``, and what :func:`ctxlog.bind` or :func:`ctxlog.scope` added. A key ``extra``
already has (from loguru's ``bind()`` or ``contextualize()``) is never replaced.

loguru's records are not :class:`logging.LogRecord` objects, so :class:`ctxlog.RedactFilter`
never sees them. To mask secrets in the message and in ``extra``, patch with a
:class:`Redactor` instead (loguru takes one patcher: it puts the fields in too)::

    logger.configure(patcher=ctxlog.loguru.Redactor())

**Security.** The fields taken from a request are escaped by the middleware, so they cannot
break a line, but loguru writes the *message* as it is: a text sink writes a message holding a
line break as two lines, and the second one can pass for a record of its own. Use
``serialize=True`` (one JSON object per line, where a line break is ``\n``), or escape what
the application logs from a request.

.. versionadded:: 0.4.0
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Final

from ctxlog.context import fields_for_record
from ctxlog.record.redact import RedactFilter

__all__ = ["Redactor", "patch"]

#: What of a loguru record is text the application wrote: the rest is loguru's own
#: (``template``, the message before its arguments, is in loguru 0.8's serialized records).
_MASKED: Final = ("message", "template", "extra")


def patch(record: Mapping[str, Any]) -> None:
    """
    Add ctxlog's current fields to ``record["extra"]``, keeping every key it already has.

    A loguru patcher, for ``logger.patch()`` or ``logger.configure(patcher=...)``.

    Args:
        record: loguru's record dict; its ``extra`` dict is changed in place.

    .. versionadded:: 0.4.0
    """
    extra = record["extra"]
    base, local = fields_for_record()
    for fields in (local, base):  # a scope() or bind() wins over the request
        for name, value in fields.items():
            if name not in extra:
                extra[name] = value


class Redactor:
    """
    A loguru patcher: ctxlog's fields into ``extra`` (as :func:`patch`), then secrets masked.

    The message (already merged with its arguments, and its ``template``) is masked by the
    patterns, and ``extra`` as a record's extras are: each value under a sensitive key becomes
    the mask, the others are masked by the patterns and, inside dicts and lists, by key.
    ``redact``'s :meth:`~ctxlog.RedactFilter.stats` count it. The exception is not masked:
    loguru renders it from the exception object, in the sink (with ``diagnose=True``, with the
    values of the variables of each frame: turn it off in production).

    Args:
        redact: The filter whose keys, patterns, mask and counts are used (the one on the
            standard library's handlers, to count in one place); ``RedactFilter()`` if None.

    .. versionadded:: 0.4.0
    """

    def __init__(self, redact: RedactFilter | None = None) -> None:
        self.redact = RedactFilter() if redact is None else redact

    def __call__(self, record: MutableMapping[str, Any]) -> None:
        """Add ctxlog's fields to ``record["extra"]``, then mask the record's secrets."""
        patch(record)
        self.redact.redact_fields(record, _MASKED)
