r"""
:class:`Formatter`: a :class:`logging.Formatter` whose output is one line per record.

A plain :class:`logging.Formatter` writes what a record holds as it is. ctxlog escapes what it
takes from a request, but the rest of a record is the application's: ``log.info("search for %s",
request.args["q"])``, ``extra={"sku": form["sku"]}``, ``ctxlog.bind(user=typed_name)``, an
exception whose message quotes the input, a logger named after a URL. Any of them may hold a line
feed, and the next line of the log then says whatever the client wanted.

:class:`Formatter` is the same formatter with one guarantee added: whatever the message, its
arguments, ``extra=`` values, bound values, exception messages, stack frames and logger name
hold, a record is exactly one line, followed by its traceback and stack (if any) on lines that
start with ``"  | "`` and so cannot pass for a record. The escaping is ctxlog's one rule
(:mod:`ctxlog.record.escape`): controls, bidi controls, line and paragraph separators,
surrogates and the backslash itself are written as ``\n``, ``\x1b``, ``\u202e``, ``\\``. The
format string's own characters are the developer's and are kept (an ANSI colour in a console
format stays a colour), but a format that contains a line break is refused.

Cost: a record whose line has nothing to escape (nearly every record) is formatted exactly as
:class:`logging.Formatter` formats it, plus one check of the line (``str.isprintable`` and a
search for a backslash). Only a record with something to escape, a traceback, or a missing field
the format names takes the longer way, which escapes each field the format names.
"""

from __future__ import annotations

import logging
import operator
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, Literal

from ctxlog.context import FIELDS, MISSING, TRACE_FIELDS
from ctxlog.record.escape import (
    CONTINUATION,
    LINE_BREAK,
    UNSAFE,
    Escaped,
    continuation_lines,
    escape_match,
    sanitize,
)

__all__ = ["Formatter"]

#: Field names a format may use, in any of the three styles (a superset is harmless).
_NAMES: Final = re.compile(r"%\(([^)]*)\)|\{([^{}!:.\[]*)|\$\{?([_a-zA-Z][_a-zA-Z0-9]*)")
_format_plainly: Final = logging.Formatter.format
_ABSENT: Final = object()
#: The escape of the space that would make a record's line start like a continuation line.
_LEADING_SPACE: Final = "\\x20"


def _field_names(fmt: str) -> frozenset[str]:
    return frozenset(name for match in _NAMES.finditer(fmt) for name in match.groups() if name)


class _Shown:
    """
    A value that is not text nor a number, shown escaped whichever way a format asks for it.

    ``%s``, ``%r``, ``{!r}``, ``{:spec}``, ``$name``, ``{value.attribute}`` and
    ``{value[key]}`` all give escaped text; ``%d`` and ``%f`` take the value's number.
    """

    __slots__ = ("_limit", "_value")

    def __init__(self, value: Any, limit: int) -> None:
        self._value = value
        self._limit = limit

    def __str__(self) -> str:
        return sanitize(str(self._value), self._limit)

    def __repr__(self) -> str:
        return sanitize(repr(self._value), self._limit)

    def __format__(self, spec: str) -> str:
        return sanitize(format(self._value, spec), self._limit)

    def __getattr__(self, name: str) -> Any:
        return _shown(getattr(self._value, name), self._limit)

    def __getitem__(self, key: Any) -> Any:
        return _shown(self._value[key], self._limit)

    def __int__(self) -> int:
        return int(self._value)

    def __float__(self) -> float:
        return float(self._value)

    def __index__(self) -> int:
        return operator.index(self._value)


def _shown(value: Any, limit: int) -> Any:
    """Return ``value`` as a format may show it: text escaped, numbers and ``None`` as they are."""
    if type(value) is str:
        return sanitize(value, limit)
    if value is None or isinstance(value, int | float | Escaped):
        return value
    return _Shown(value, limit)


def _unmerged(record: logging.LogRecord, error: Exception) -> str:
    """Return a record's message whose arguments did not merge: the parts, and why."""
    try:
        msg = str(record.msg)
    except Exception:  # the message object's own __str__ failed
        msg = f"<{type(record.msg).__name__} object>"
    try:
        args = repr(record.args)
    except Exception:
        args = "<arguments>"
    try:
        why = f"{type(error).__name__}: {error}"
    except Exception:
        why = type(error).__name__
    return f"{msg} {args} (the arguments did not fit the message: {why})"


class Formatter(logging.Formatter):
    r"""
    Format each record as exactly one line, whatever its message, arguments and fields hold.

    The same constructor as :class:`logging.Formatter` (``%``, ``{`` and ``$`` styles,
    ``defaults=``), and the same output for every record that has nothing to escape. What a
    record holds is escaped with ctxlog's rule (CR, LF and every other control character, DEL,
    bidi controls, line and paragraph separators, surrogates, the backslash: ``\n``, ``\x1b``,
    ``\u2028``, ``\ud800``, ``\\``), so a value can never start a second line, drive a terminal
    or reorder what a reader sees:

    - the message, with its arguments merged (arguments that do not fit the message give the
      message, the arguments and the reason, instead of losing the record);
    - every field the format names: ``extra=`` values, bound values, the logger name, the
      function and file names; a value that is not text (an object whose ``__str__`` returns
      anything) is escaped after it is turned into text, whether by ``%s``, ``%r``, ``{!r}`` or a
      format spec;
    - the time, whatever ``datefmt`` makes of it.

    A traceback (``exc_info``, or ``exc_text`` from a sender) and a stack (``stack_info``) follow
    on lines of their own that each start with ``"  | "`` and are escaped too, so an exception
    message cannot end its record and start another. A record line that would itself begin with
    ``"  | "`` has its first space written as ``\x20``. Values ctxlog has already escaped (the
    request's path, its user, the access line) are not escaped a second time.

    ctxlog's fields (``ip``, ``user``, ``request_id``, ``method``, ``path``, ``trace_id``,
    ``span_id``) default to ``"-"``, so a format that names them never fails on a record made
    outside a request or by a handler without ctxlog's filter; ``defaults=`` adds to them or
    overrides them.

    The record is shared by every handler: this formatter leaves it exactly as
    :class:`logging.Formatter` would (``message``, ``asctime`` and the traceback text cached in
    ``exc_text`` as :meth:`formatException` returns it, never escaped), so a sibling handler's
    formatter sees what it would see without ctxlog.

    Args:
        fmt: The format, as for :class:`logging.Formatter`; it may not contain a line break.
        datefmt: As for :class:`logging.Formatter`.
        style: ``"%"``, ``"{"`` or ``"$"``.
        validate: Check ``fmt`` against ``style``, as :class:`logging.Formatter` does.
        defaults: Values for fields a record lacks.

    Raises:
        ValueError: ``fmt`` or ``datefmt`` contains a line break, or ``fmt`` does not fit
            ``style``.

    .. versionadded:: 0.3.0
    """

    #: Fields and messages are cut at these lengths before they are escaped (``ctxlog
    #: receive`` cuts what a sender sends); ``sys.maxsize`` cuts nothing.
    _field_limit: int = sys.maxsize
    _message_limit: int = sys.maxsize

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        validate: bool = True,
        *,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        for name, text in (("fmt", fmt), ("datefmt", datefmt)):
            if isinstance(text, str) and LINE_BREAK.search(text) is not None:
                msg = (
                    f"ctxlog.Formatter: {name}={text!r} contains a line break; its output is one "
                    "line per record (tracebacks follow on '  | ' lines by themselves)"
                )
                raise ValueError(msg)
        fields = dict.fromkeys((*FIELDS, *TRACE_FIELDS), MISSING)
        for name, value in (defaults or {}).items():
            fields[name] = _shown(value, self._field_limit)
        super().__init__(fmt, datefmt, style, validate)
        #: The fields the format names: the only ones worth escaping.
        self._names = tuple(
            _field_names(self._style._fmt) - {"message", "asctime"}  # noqa: SLF001
        )
        #: ctxlog's fields and ``defaults``, for a record that lacks them. They are kept here,
        #: not given to the style, which would merge them into every record's dict: a record
        #: that lacks one the format names fails the plain way and takes the escaping way,
        #: which fills it in.
        self._fallback = fields
        #: ctxlog's filter and adapter put all of ctxlog's fields on a record at once: the first
        #: the format names tells in one look whether a record went through them, and a record
        #: that did not takes the escaping way at once, without failing the plain way first.
        self._probe = next((name for name in (*FIELDS, *TRACE_FIELDS) if name in self._names), "")
        #: logging's own formatMessage() writes the escaped values and the format (which has no
        #: line break) and nothing else; a subclass's may add anything, and is checked.
        self._own_format_message = type(self).formatMessage is not logging.Formatter.formatMessage
        #: Whether a line may begin like a continuation line; not when the format begins with
        #: its own text (not a space), or with the time in the default layout.
        self._lead_check = self._may_lead_with_space(datefmt)
        #: Whether lines are cut (``ctxlog receive``): a line longer than the cap may hold a
        #: longer field.
        self._capped = self._field_limit < sys.maxsize

    def _may_lead_with_space(self, datefmt: str | None) -> bool:
        fmt = self._style._fmt  # noqa: SLF001 - the format as the style holds it
        style = type(self._style)
        if not fmt:
            return True
        opening = {logging.PercentStyle: "%", logging.StrFormatStyle: "{"}.get(style, "$")
        if fmt[0] != opening or fmt[:2] == opening * 2:
            return fmt[0].isspace()  # the format's own text comes first
        default_time = (
            datefmt is None
            and type(self).formatTime is logging.Formatter.formatTime
            and self.default_time_format == logging.Formatter.default_time_format
        )
        starts = ("%(asctime)", "{asctime", "$asctime", "${asctime}")
        return not (default_time and fmt.startswith(starts))

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as one escaped line, plus a ``"  | "`` line per traceback line."""
        if self._probe and self._probe not in record.__dict__:
            return self._format_escaped(record, prepared=False)
        try:
            line = _format_plainly(self, record)
        except Exception:
            # A field the format names is missing (the escaping way fills it in), or arguments
            # do not fit the message (the escaping way tells what they were).
            return self._format_escaped(record, prepared=False)
        # Every character that needs escaping is "not printable" to Python but the backslash. A
        # traceback or a stack adds a line feed: the escaping way writes it on "  | " lines.
        if (line.isprintable() and "\\" not in line) or UNSAFE.search(line) is None:
            # Nothing in the line to escape: no value in it had anything either.
            if self._capped and len(line) > self._field_limit:
                return self._format_escaped(record, prepared=True)
            if self._lead_check and line.startswith(CONTINUATION):
                return _LEADING_SPACE + line[1:]
            return line
        return self._format_escaped(record, prepared=True)

    def _format_escaped(self, record: logging.LogRecord, *, prepared: bool) -> str:
        """
        Format ``record`` with every value escaped: the way for what the plain way refused.

        ``prepared``: ``record.message`` and ``record.asctime`` are set for this formatter.
        """
        uses_time = self.usesTime()
        if prepared:
            message = record.message
        else:
            try:
                message = record.getMessage()
            except Exception as error:
                message = _unmerged(record, error)
            record.message = message
            if uses_time:
                record.asctime = self.formatTime(record, self.datefmt)
        values = self._escaped_values(record, message, uses_time=uses_time)
        escaped: logging.LogRecord = logging.LogRecord.__new__(logging.LogRecord)
        escaped.__dict__ = values
        line = self.formatMessage(escaped)
        if self._own_format_message and LINE_BREAK.search(line) is not None:
            # A subclass's formatMessage() added a line break: one line is the contract.
            line = LINE_BREAK.sub(escape_match, line)
        if line.startswith(CONTINUATION):
            line = _LEADING_SPACE + line[1:]
        return "\n".join([line, *self._continuation_lines(record)])

    def _escaped_values(
        self, record: logging.LogRecord, message: Any, *, uses_time: bool
    ) -> dict[str, Any]:
        """Return the record's attributes with every value the format names escaped and cut."""
        limit = self._field_limit
        values = self._fallback | record.__dict__
        for name in self._names:
            value = values.get(name, _ABSENT)
            if value is _ABSENT:
                continue
            if type(value) is str:
                if not (value.isprintable() and "\\" not in value):
                    values[name] = sanitize(value, limit)
                elif len(value) > limit:
                    values[name] = value[:limit] + "..."
            else:
                values[name] = _shown(value, limit)
        values["message"] = (
            message if isinstance(message, Escaped) else sanitize(message, self._message_limit)
        )
        if uses_time:
            values["asctime"] = sanitize(record.asctime, limit)
        values["exc_info"] = values["exc_text"] = values["stack_info"] = None
        return values

    def _continuation_lines(self, record: logging.LogRecord) -> list[str]:
        """Return the ``"  | "`` lines of the record's traceback and stack."""
        if record.exc_info and not record.exc_text:
            # Cached as logging.Formatter caches it: the plain text, for every formatter.
            record.exc_text = self.formatException(record.exc_info)
        lines = []
        if record.exc_text:
            lines += continuation_lines(record.exc_text, self._message_limit)
        if record.stack_info:
            lines += continuation_lines(self.formatStack(record.stack_info), self._message_limit)
        return lines
