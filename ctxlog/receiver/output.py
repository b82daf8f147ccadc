r"""
What ``ctxlog receive`` writes: one escaped line per record, to standard output or a file.

:class:`LineFormatter` is the receiver's line, safe against forged lines; use it in your own
configuration too. With ``--format json`` the line is :class:`ctxlog.JSONFormatter`'s instead
(:func:`json_formatter`), in the schema ``--schema`` names (with ``--gcp-project`` for
``gcp``), for a log shipper to read.
:class:`LineStream` and :class:`LineFile` are the handlers the command line sets up without
``--config``: they write each record once and leave flushing to the receiver, which flushes once
per read from a connection (:meth:`Receiver.end_batch`), not per record.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import stat
from typing import Any, Final

from ctxlog.context import MISSING
from ctxlog.record import escape as _sanitize
from ctxlog.record.formatter import Formatter
from ctxlog.record.jsonformat import JSONFormatter
from ctxlog.record.schemas import DEFAULT_FIELDS
from ctxlog.wire import MAX_BODY

__all__ = [
    "CONTINUATION",
    "DEFAULT_FORMAT",
    "JSON_FIELDS",
    "LineFile",
    "LineFormatter",
    "LineStream",
    "json_formatter",
]

#: The default line: the sender's time, level, the request's fields, logger, message, then
#: where the record came from.
DEFAULT_FORMAT: Final = (
    "%(asctime)s %(levelname)s %(ip)s %(user)s %(request_id)s %(name)s %(message)s "
    "[pid %(process)s from %(peer)s]"
)
#: What starts each line of a traceback or stack that follows a record's line.
CONTINUATION: Final = _sanitize.CONTINUATION
_FIELD_CAP: Final = 1024
#: What ``--format json`` writes: JSONFormatter's fields (the sender's ``peer`` among them),
#: and the sending process's id, as the default line shows it.
JSON_FIELDS: Final = (*DEFAULT_FIELDS[:-1], "process", DEFAULT_FIELDS[-1])


class LineFormatter(Formatter):
    r"""
    Format received records as one line each, safe against forged lines.

    :class:`ctxlog.Formatter` with the receiver's defaults: the line format that shows the
    context fields and the peer, ``-`` for a field a sender did not send, and a length cap on
    every field (1024 characters) and on the message (the largest frame). Every field the
    format names, the message and extra fields included, has its control, bidi and separator
    characters escaped (``\n``, ``\x1b``): a record can never start a second line. A traceback
    or stack follows on lines that each begin with ``"  | "``, so it cannot pass for a record
    either.

    Args:
        fmt: A ``%``-style format; the default shows the context fields and the peer.
        datefmt: As for :class:`logging.Formatter`.

    Raises:
        ValueError: ``fmt`` contains a line break or is not a ``%``-style format.

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
       A subclass of :class:`ctxlog.Formatter`: one escaping rule for every line ctxlog writes.
    """

    _field_limit = _FIELD_CAP
    _message_limit = MAX_BODY

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt or DEFAULT_FORMAT, datefmt, defaults={"peer": MISSING})


def json_formatter(schema: str | None = None, *, gcp_project: str | None = None) -> JSONFormatter:
    """
    Return the formatter of ``ctxlog receive --format json [--schema S] [--gcp-project ID]``.

    In a ``--config`` file, ``"()": "ctxlog.receiver.json_formatter"`` with the keys
    ``schema`` and ``gcp_project`` writes the same lines.

    Args:
        schema: As for :class:`ctxlog.JSONFormatter`: ``None``, ``"ecs"``, ``"otel"``, ``"gcp"``.
        gcp_project: With ``schema="gcp"``, the Cloud project the traces belong to.

    Raises:
        ValueError: As :class:`ctxlog.JSONFormatter` does for the same values.

    .. versionadded:: 0.4.0
    """
    return JSONFormatter(JSON_FIELDS, schema=schema, gcp_project=gcp_project)  # type: ignore[arg-type]


class LineStream(logging.StreamHandler):  # type: ignore[type-arg]
    """Standard output for ``ctxlog receive``: written per record, flushed per read."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record``'s line, without flushing."""
        try:
            self.stream.write(self.format(record) + self.terminator)
        except RecursionError:
            raise
        except Exception:  # the stdlib contract: report and go on
            self.handleError(record)


class LineFile(logging.handlers.RotatingFileHandler):
    """
    The ``--file`` handler: a RotatingFileHandler that costs one write per record.

    The standard library's formats a record twice when a size limit is set (once to measure
    it), looks at the file twice per record on 3.11 and 3.12 to decide whether to rotate, and
    flushes after every record. This one formats once, keeps count of the file's size itself,
    and leaves flushing to :meth:`Receiver.end_batch`.
    """

    _size = 0
    _regular = True

    def _open(self) -> Any:
        stream = super()._open()
        status = os.fstat(stream.fileno())
        self._size = status.st_size
        self._regular = stat.S_ISREG(status.st_mode)  # never rotate a pipe or a terminal
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record``'s line, rotating first if the line would take the file past its size."""
        try:
            line = self.format(record) + self.terminator
            size = len(line) if line.isascii() else len(line.encode("utf-8", "replace"))
            if self.stream is None:
                self.stream = self._open()
            if (
                self.maxBytes > 0
                and self._regular
                and self._size
                and self._size + size > self.maxBytes
            ):
                self.doRollover()
                if self.stream is None:
                    self.stream = self._open()
            self.stream.write(line)
            self._size += size
        except RecursionError:
            raise
        except Exception:  # the stdlib contract: report and go on
            self.handleError(record)
