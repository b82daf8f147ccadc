"""
:class:`RedactFilter`: mask secrets on a record before it is formatted, queued or sent.

Put it on the handler, or on the ``ctxlog.nonblocking()`` handler so that nothing secret enters
the queue::

    handler.addFilter(ctxlog.RedactFilter())

It changes the record itself (a filter cannot hand a copy to the handlers on Python 3.11), so the
handlers that see the record after it see the masked one too; the objects the caller logged are
never changed (a dict with a secret in it is copied, and the copy masked).

What logs without a LogRecord is masked with the same rules and counts by
:meth:`RedactFilter.redact_fields`, which the structlog and loguru glue use.

**Security.** Redaction is a net under mistakes, not a guarantee: it finds the keys and patterns
it is told about (``docs/redaction.md`` lists them), not a password logged as a bare word. An
object of any other type is looked at through its ``str()``, the text formatters write of it. A
failure inside the filter never stops the record: the part that failed is masked whole instead,
and the failure is reported once on stderr.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, Final

from ctxlog._stderr import write_line
from ctxlog.context import MISSING, REDACTED, RESERVED, STAMPED, TRACE_FIELDS
from ctxlog.record.escape import Escaped, escape
from ctxlog.record.sensitive import DEFAULT_KEYS, SCALARS, KeyRule, Masker, compile_patterns
from ctxlog.record.stamp import stamp

__all__ = ["RedactFilter"]

_tokens: Final = itertools.count(1)
_exception_formatter: Final = logging.Formatter()
#: The request's fields that cannot hold a secret (made or checked by ctxlog): not looked at,
#: unless ``keys=`` names one. The ``path`` and the ``user`` are read like any text.
_REQUEST_FIELDS: Final = frozenset(["ip", "request_id", "method", *TRACE_FIELDS])
#: The types of a message's arguments that the merged message shows whole.
_ARGUMENTS: Final = SCALARS | {str}


class RedactFilter(logging.Filter):
    """
    Mask secrets in a record's extras, bound fields, message, traceback and stack.

    Masked: the value of every extra attribute and bound field whose key is sensitive, and of
    every sensitive key of a mapping inside any of them (or inside the message's arguments);
    what the patterns find in the message merged with its arguments, in the text of values
    (strings, bytes, other objects' ``str()``), in the request's ``path`` and ``user`` and in
    the traceback and stack text. A record in which something was masked carries its merged,
    masked message in ``msg`` with ``args`` set to ``None``; any other record is left as it
    was logged. The filter puts the context on the record first (as ``ContextFilter`` does), so
    the bound fields are checked wherever it is attached. It lets every record through and
    never raises.

    Args:
        keys: The sensitive keys, replacing :data:`DEFAULT_KEYS` (matched case-insensitively,
            word by word: ``token`` matches ``access_token`` and ``X-Auth-Token``).
        extra_keys: Keys added to ``keys``.
        patterns: Regular expressions added to the default ones (a list); a match's groups
            are masked, or the whole match if the pattern has no group.
        mask: What a secret is replaced by.
        default_patterns: ``False`` turns the default patterns off (keys are still masked).

    Raises:
        ValueError: A key is empty, ``keys`` or ``patterns`` is one string rather than a
            list, a pattern does not compile, or ``mask`` is not a non-empty printable string.

    .. versionadded:: 0.4.0
    """

    #: The default sensitive keys (see ``docs/redaction.md``).
    DEFAULT_KEYS: Final = DEFAULT_KEYS

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = None,
        extra_keys: Iterable[str] = (),
        patterns: Iterable[str | re.Pattern[str]] = (),
        mask: str = "***",
        default_patterns: bool = True,
    ) -> None:
        super().__init__()
        chosen = [*(DEFAULT_KEYS if keys is None else _keys("keys", keys))]
        chosen += _keys("extra_keys", extra_keys)
        if not isinstance(mask, str) or not mask or not mask.isprintable():
            msg = f"RedactFilter: mask={mask!r}; give a non-empty string without control characters"
            raise ValueError(msg)
        self.keys: tuple[str, ...] = tuple(chosen)
        self.mask = mask
        self._masker = Masker(
            KeyRule(chosen), compile_patterns(patterns), mask, defaults=bool(default_patterns)
        )
        self._token = next(_tokens)
        self._mark = (self._token,)
        # Not looked at: a LogRecord's own attributes, and the request's fields that hold no
        # secret (see _REQUEST_FIELDS) unless their name is itself a sensitive key.
        rule = self._masker.rule
        self._request_fields = frozenset(name for name in _REQUEST_FIELDS if not rule(name))
        self._skipped = RESERVED | self._request_fields
        self._lock = threading.Lock()
        self.records_redacted = 0
        self.values_masked = 0
        self.errors = 0

    def stats(self) -> dict[str, int]:
        """Return how many records had something masked, how many values, and failures."""
        with self._lock:
            return {
                "records_redacted": self.records_redacted,
                "values_masked": self.values_masked,
                "errors": self.errors,
            }

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the secrets of ``record`` (once per filter) and let it through."""
        marks = getattr(record, REDACTED, ())
        if type(marks) is not tuple:
            marks = ()  # not ctxlog's mark: redact as if there were none
        elif self._token in marks:
            return True
        if not hasattr(record, STAMPED):
            try:
                stamp(record)
            except Exception as error:
                self._failed("putting the context on a record", error)
        attrs = record.__dict__
        count = self._fields(attrs, attrs.keys() - self._skipped) + self._message(record)
        if record.exc_info or record.exc_text or record.stack_info:
            count += self._tracebacks(record)
        setattr(record, REDACTED, (*marks, self._token) if marks else self._mark)
        if count:
            self._count(count)
        return True

    def redact_fields(
        self, fields: MutableMapping[str, Any], keys: Iterable[str] | None = None
    ) -> int:
        """
        Mask the secrets of ``fields`` in place, as a record's extras are; return how many.

        For what logs without a :class:`logging.LogRecord` (structlog's event dict, loguru's
        record): each value under a sensitive key becomes the mask, any other value is
        replaced by its masked copy if it holds a secret. The request's fields that hold none
        (``ip``, ``request_id``, ``method``, trace ids) are left, as on a record. It counts in
        :meth:`stats` as one record when something was masked, and never raises.

        Args:
            fields: The values, by key.
            keys: The keys to look at; all of them if ``None``.

        .. versionadded:: 0.4.0
        """
        try:
            chosen = [
                key
                for key in (list(fields) if keys is None else keys)
                if key in fields and key not in self._request_fields
            ]
        except Exception as error:
            self._failed("reading the keys of fields", error)
            return 0
        count = self._fields(fields, chosen)
        if count:
            self._count(count)
        return count

    def _count(self, count: int) -> None:
        """Count a record in which ``count`` secrets were masked."""
        with self._lock:
            self.records_redacted += 1
            self.values_masked += count

    def _fields(self, fields: MutableMapping[str, Any], keys: Iterable[str]) -> int:
        """Mask the values of ``keys`` in ``fields``; return how many were masked."""
        masker = self._masker
        rule = masker.rule
        known = rule.known.get  # the verdicts so far: one C call for a key judged before
        count = 0
        for key in keys:
            try:
                value = fields[key]
                if value is MISSING:  # what ctxlog writes for "unknown": nothing to hide
                    continue
                sensitive = known(key)
                if sensitive or (sensitive is None and rule(key)):
                    if value is None or (isinstance(value, str) and value in {"", MISSING}):
                        continue
                    new, found = self.mask, 1
                elif type(value) is str:
                    new, found = masker.text(value)
                elif type(value) in SCALARS:
                    continue
                else:
                    new, found = masker.value(value)
            except Exception as error:
                self._failed(f"reading the extra {key!r}", error)
                new, found = self.mask, 1
            if found:
                fields[key] = new
                count += found
        return count

    def _message(self, record: logging.LogRecord) -> int:
        """Mask the merged message; return how many secrets it held."""
        masker = self._masker
        args = record.args
        count = 0
        try:
            if args and _holds_containers(args):
                args, count = masker.value(args, texts=False)
            try:  # merged as LogRecord.getMessage does (inline: this runs for every record)
                merged = str(record.msg)
                if args:
                    merged %= args
            except Exception as error:
                self._failed("merging a message with its arguments", error)
                merged = f"{record.msg!s} (arguments not shown: {type(error).__name__})"
                count += 1
            text, found = masker.text(merged)
        except Exception as error:
            self._failed("masking a message", error)
            text, found = f"(message not shown: redacting it raised {type(error).__name__})", 1
        count += found
        if count:
            if isinstance(record.msg, Escaped) and not record.args and text != record.msg:
                text = Escaped(text)  # masking ASCII into escaped text keeps it escaped
            record.msg = text
            record.args = None
            if "message" in record.__dict__:  # a formatter ran before: its cached text too
                record.message = text
        return count

    def _tracebacks(self, record: logging.LogRecord) -> int:
        """
        Mask the traceback (cached in ``exc_text``) and the stack; return how many.

        A traceback that held a secret leaves ``exc_info`` empty: the masked text stays in
        ``exc_text``, which the standard ``Formatter``, ctxlog's formatters and python-json-logger
        show, and nothing downstream can render the exception again from the object, secret and
        all (python-json-logger, structlog and OpenTelemetry's handler read ``exc_info`` first).
        """
        count = 0
        masker = self._masker
        for name in ("exc_text", "stack_info"):
            try:
                text = getattr(record, name, None)
                if name == "exc_text" and not text and record.exc_info:
                    text = _exception_formatter.formatException(record.exc_info)
                if not text or not isinstance(text, str):
                    continue
                text, found = masker.text(text)
            except Exception as error:
                self._failed(f"masking {name}", error)
                text, found = f"({name} not shown: redacting it raised {type(error).__name__})", 1
            if found:
                setattr(record, name, text)
                if name == "exc_text":
                    record.exc_info = None
                count += found
        return count

    def _failed(self, what: str, error: Exception) -> None:
        """Count a failure; report the first one on stderr."""
        with self._lock:
            self.errors += 1
            first = self.errors == 1
        if first:
            write_line(
                f"ctxlog: RedactFilter: {what} raised {type(error).__name__}: "
                f"{self._shown(error)}; that part is masked or left out, the record logged "
                "(reported once)"
            )

    def _shown(self, error: Exception) -> str:
        """Return the text of ``error`` masked, escaped and cut: it may quote what was logged."""
        try:
            text = self._masker.text(str(error)[:200])[0]
        except Exception:
            return "(its text cannot be read)"
        return escape(text)


def _holds_containers(args: Any) -> bool:
    """Tell whether a record's ``args`` is, or holds, anything but text and numbers (rarely)."""
    if type(args) is not tuple:
        return True
    for item in args:  # noqa: SIM110 - a loop: any() and its generator cost twice as much here
        if type(item) not in _ARGUMENTS:
            return True
    return False


def _keys(option: str, keys: Iterable[str]) -> list[str]:
    """Return ``keys`` as a list, refusing anything that is not a non-empty string."""
    if isinstance(keys, str):
        msg = f"RedactFilter: {option}={keys!r} is one string; give a list of keys"
        raise ValueError(msg)  # noqa: TRY004 - configuration, reported as ValueError
    chosen = list(keys)
    for key in chosen:
        if not isinstance(key, str) or not any(char.isalnum() for char in key):
            msg = f"RedactFilter: {option} holds {key!r}; every key must be a string with a letter"
            raise ValueError(msg)
    return chosen
