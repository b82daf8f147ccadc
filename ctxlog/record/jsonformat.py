r"""
:class:`JSONFormatter`: each record as one JSON object on one line, for a log store.

A line holds the time (ISO 8601, UTC, milliseconds: ``2026-12-08T01:02:03.456Z``), the level,
the message with its arguments merged, the logger, ctxlog's fields (those it knows: a field
that holds ``"-"`` is left out), every ``extra=`` value and bound field (one whose key the line
already holds is merged into that object or written as ``extra_KEY``: it never overwrites the
line's own values and is never lost), and the traceback and stack as text. ``schema=`` names
the fields for Elasticsearch (``"ecs"``), an OpenTelemetry collector (``"otel"``) or Google
Cloud Logging (``"gcp"``): see :mod:`ctxlog.record.schemas`.

Whatever a record holds, the line is one line of valid JSON: values JSON cannot hold are
written as their ``str()`` (:mod:`ctxlog.record.jsonvalue`), control characters are escaped by
JSON and the other characters ctxlog never writes raw (U+2028, bidi controls, lone surrogates)
as ``\uNNNN``, and a record that cannot be formatted at all gives a line that says so. A log call
never raises because of a value.

Cost: the line is built from the record's ``__dict__`` in one pass and written by orjson when it
is installed (``pip install ctxlog[orjson]``), by the standard library's C encoder otherwise,
with the same bytes either way.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

from ctxlog.context import RESERVED
from ctxlog.record.errortext import error_in_text, error_message, error_type
from ctxlog.record.formatter import _unmerged
from ctxlog.record.jsonlayout import Layout, check_options
from ctxlog.record.jsonvalue import (
    Encoder,
    Key,
    add_extras,
    add_fields,
    fresh,
    graft,
    plain,
    put_path,
    shown,
)
from ctxlog.record.schemas import (
    CTXLOG_FIELDS,
    DEFAULT_FIELDS,
    KNOWN,
    SPECIAL,
    check_fields,
    gcp_severity,
    gcp_trace_prefix,
    severity_number,
)

__all__ = ["JSONFormatter"]

#: The fields a record of one shape holds (name, key, known, change), its extras (name, key),
#: and whether an extra's key may be one the line holds already (then merged or moved).
_Plan = tuple[tuple[tuple[str, Key, bool, Any], ...], tuple[tuple[str, str], ...], bool]
#: Record shapes remembered (then forgotten all at once): far more than an application's.
_SHAPES: Final = 256
_MILLISECONDS: Final = tuple(f".{ms:03d}Z" for ms in range(1000))
_LEVELS: Final[dict[str | None, Callable[[logging.LogRecord], str]]] = {
    None: lambda record: record.levelname,
    "ecs": lambda record: record.levelname.lower(),
    "otel": lambda record: record.levelname,
    "gcp": lambda record: gcp_severity(record.levelno),
}


class JSONFormatter(logging.Formatter):
    """
    Format each record as one JSON object on one line.

    Args:
        fields: The fields a line holds, in order (the default: ``time``, ``level``,
            ``logger``, ``message``, ctxlog's fields, ``exception``, ``stack``, ``extras``).
            ``extras`` stands for every ``extra=`` value and bound field; any other name is one
            such field; ``process``, ``thread``, ``threadName``, ``lineno``, ``funcName``,
            ``filename``, ``pathname``, ``module``, ``processName``, ``taskName``, ``levelno``
            add those record attributes.
        rename: The key to write a field under, by field name: ``{"ip": "client_ip"}``. With
            ``schema="ecs"`` a dotted key becomes nested objects.
        static: Keys and values written on every line (``{"service": "shop"}``). An object
            that fields are written into (``{"httpRequest": {"protocol": "HTTP/1.1"}}``) is
            copied for each line that does.
        schema: ``None`` (ctxlog's names), ``"ecs"``, ``"otel"`` or ``"gcp"``.
        gcp_project: With ``schema="gcp"``: the project id (``my-project-123``, or
            ``example.com:my-project`` for a domain-scoped project), so that the trace is written
            as ``projects/PROJECT/traces/TRACE_ID``, the form Cloud Logging links to Cloud Trace.
        use_orjson: Write with orjson when it is installed (the same bytes, faster).
        datefmt: Only ``None``; ``style``: only ``"%"``; ``validate``: ignored;
            ``defaults``: only ``None``. :class:`logging.Formatter`'s arguments, which
            :func:`logging.config.dictConfig` passes to a ``"class":`` formatter by position:
            a ``"class": "ctxlog.JSONFormatter"`` entry gives the default formatter, and any
            other value is refused with a message pointing at the ``"()"`` form.

    Raises:
        ValueError: A field name it cannot write, a field named twice, two fields (or
            ``static=`` or ``rename=`` keys) under one key or one inside the other's object
            (:mod:`ctxlog.record.jsonlayout`), an unknown schema, ``gcp_project`` without
            ``schema="gcp"`` or not a project id, a ``datefmt``, ``style`` or ``defaults``
            other than the defaults.

    .. versionadded:: 0.4.0
    .. versionchanged:: 0.4.0
       ``datefmt``, ``style``, ``validate``, ``defaults``: dictConfig's ``"class":`` form.
    """

    def __init__(  # logging.config passes fields, datefmt, style, validate by position
        self,
        fields: Sequence[str] | None = None,
        datefmt: str | None = None,
        style: str = "%",
        validate: bool = True,
        *,
        defaults: Mapping[str, Any] | None = None,
        rename: Mapping[str, str] | None = None,
        static: Mapping[str, Any] | None = None,
        schema: Literal["ecs", "otel", "gcp"] | None = None,
        gcp_project: str | None = None,
        use_orjson: bool = True,
    ) -> None:
        super().__init__()
        del validate  # no format string to check
        check_options(schema, gcp_project, datefmt, style, defaults)
        names = check_fields(DEFAULT_FIELDS if fields is None else fields)
        layout = Layout(schema, names, rename or {})
        key = layout.key
        self._encoder = Encoder(use_orjson=use_orjson)
        self._rename = layout.rename
        self._time_key = key("time") if "time" in names else None
        self._level_key = key("level") if "level" in names else None
        self._level = _LEVELS[schema]
        self._severity_key = (
            key("level.number")
            if self._level_key is not None and "level.number" in layout.table
            else None
        )
        self._message_key = key("message") if "message" in names else None
        self._logger_key = key("logger") if "logger" in names else None
        #: Whether a static value is a float orjson writes otherwise: every line the stdlib way.
        self._static_tiny: list[bool] = []
        static_values = layout.statics(static or {}, self._static_tiny)
        trace = self._gcp_trace(gcp_project) if schema == "gcp" else None
        self._plan = tuple(
            (name, key(name), name in KNOWN, trace if name == "trace_id" else None)
            for name in names
            if name not in SPECIAL
        )
        self._exc_keys = self._exception_keys(layout) if "exception" in names else None
        self._stack_key = key("stack") if "stack" in names else None
        self._extras = "extras" in names
        #: Each static key, its value, and the objects in it to copy for each line (or None).
        self._static = layout.checked(static_values)
        # A record attribute named like a field that is not one (time, logger) is an extra.
        self._skip = frozenset({*RESERVED, *CTXLOG_FIELDS, *(set(names) - SPECIAL)})
        #: The top-level keys a line may hold: an extra field of one of these names may meet one.
        self._taken = layout.taken()
        head = (self._time_key, self._level_key, self._message_key, self._logger_key)
        self._flat_head = all(type(key) is not tuple for key in head) and all(
            type(key) is str for key, _, _ in self._static
        )
        #: With a flat head: the static keys as one dict, and those to copy for each line.
        self._static_flat = {key: value for key, value, _ in self._static}
        self._static_fresh = tuple(item for item in self._static if item[2] is not None)
        self._shapes: dict[tuple[str, ...], _Plan] = {}
        self._second: tuple[int, str] = (-1, "")

    @property
    def uses_orjson(self) -> bool:
        """Whether orjson writes the lines (installed, and not turned off)."""
        return self._encoder.uses_orjson

    # -- construction ------------------------------------------------------------------------

    @staticmethod
    def _exception_keys(layout: Layout) -> tuple[Key, Key | None, Key | None]:
        text = layout.key("exception")
        kind = layout.key("exception.type") if "exception.type" in layout.table else None
        message = layout.key("exception.message") if "exception.message" in layout.table else None
        return text, kind, message

    @staticmethod
    def _gcp_trace(project: str | None) -> Callable[[Any], Any] | None:
        if project is None:
            return None
        prefix = gcp_trace_prefix(project)
        return lambda trace_id: prefix + trace_id if type(trace_id) is str else trace_id

    # -- a record ----------------------------------------------------------------------------

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as one line of JSON (never raising because of what it holds)."""
        try:
            attributes = record.__dict__
            # Records made by one call site have the same attributes in the same order: which
            # fields and extras a record holds is worked out once per such shape.
            shape = tuple(attributes)
            plan = self._shapes.get(shape)
            if plan is None:
                plan = self._learn(shape)
            tiny: list[bool] = []
            out = self._head(record, tiny)
            add_fields(plan[0], attributes, out, tiny)
            if record.exc_info or record.exc_text or record.stack_info:
                self._error(record, out)
            if plan[2]:  # an extra's key the line may hold: merged or moved, never lost
                add_extras(plan[1], attributes, out, tiny)
            else:
                for name, key in plan[1]:
                    value = attributes[name]
                    out[key] = value if type(value) is str else plain(value, tiny)
            return self._encoder.encode(out, tiny=bool(tiny or self._static_tiny))
        except Exception as error:  # a record no line can be made of: say so, in a line
            return self._unformatted(record, error)

    def _learn(self, shape: tuple[str, ...]) -> _Plan:
        """Return which planned fields and which extras a record of this shape holds."""
        present = set(shape)
        fields = tuple(item for item in self._plan if item[0] in present)
        extras: list[tuple[str, str]] = []
        contested = False
        if self._extras:
            keys: set[str] = set()
            for name in shape:
                # A LogRecord attribute, a field, or ctxlog's marks.
                if name in self._skip or (type(name) is str and name.startswith("_ctxlog")):
                    continue
                key = self._rename.get(name, name) if type(name) is str else shown(name)
                contested = contested or key in self._taken or key in keys
                keys.add(key)
                extras.append((name, key))
        plan = (fields, tuple(extras), contested)
        if len(self._shapes) >= _SHAPES:
            self._shapes.clear()
        self._shapes[shape] = plan
        return plan

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        """Return the record's time as ISO 8601 in UTC with milliseconds (``datefmt`` unused)."""
        del datefmt
        created = record.created
        second = int(created)
        cached = self._second
        if cached[0] != second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            cached = self._second = (second, text)
        try:
            return cached[1] + _MILLISECONDS[int(record.msecs)]
        except (IndexError, TypeError):  # a record made by hand with its own msecs
            return cached[1] + _MILLISECONDS[int((created - second) * 1000) % 1000]

    def _head(self, record: logging.LogRecord, tiny: list[bool]) -> dict[str, Any]:
        """Return the line's first keys: time, level, message, logger, the static keys."""
        if self._flat_head:
            out: dict[str, Any] = {}
            if self._time_key is not None:
                out[self._time_key] = self.formatTime(record)  # type: ignore[index]
            if self._level_key is not None:
                out[self._level_key] = self._level(record)  # type: ignore[index]
                if self._severity_key is not None:
                    out[self._severity_key] = severity_number(record.levelno)  # type: ignore[index]
            if self._message_key is not None:
                try:
                    message = record.getMessage()
                except Exception:  # arguments that do not fit: _message() tells what they were
                    message = self._message(record, tiny)
                out[self._message_key] = (  # type: ignore[index]
                    message if type(message) is str else plain(message, tiny)
                )
            if self._logger_key is not None:
                name = record.name
                out[self._logger_key] = name if type(name) is str else plain(name, tiny)  # type: ignore[index]
            out.update(self._static_flat)  # type: ignore[arg-type]
            for key, value, tree in self._static_fresh:  # objects a field is written into
                out[key] = fresh(value, tree)  # type: ignore[arg-type,index]
            return out
        return self._head_nested(record, tiny)

    def _head_nested(self, record: logging.LogRecord, tiny: list[bool]) -> dict[str, Any]:
        """Return the first keys, some of them nested objects (``schema="ecs"``, ``"gcp"``)."""
        out: dict[str, Any] = {}
        put = self._set
        if self._time_key is not None:
            put(out, self._time_key, self.formatTime(record))
        if self._level_key is not None:
            put(out, self._level_key, self._level(record))
            if self._severity_key is not None:
                put(out, self._severity_key, severity_number(record.levelno))
        if self._message_key is not None:
            put(out, self._message_key, self._message(record, tiny))
        if self._logger_key is not None:
            put(out, self._logger_key, plain(record.name, tiny))
        for key, value, tree in self._static:
            if tree is None:
                put(out, key, value)
            else:  # an object a field or a static key is written into: this line's own copy
                graft(out, key, fresh(value, tree))
        return out

    @staticmethod
    def _message(record: logging.LogRecord, tiny: list[bool]) -> Any:
        try:
            message = record.getMessage()
        except Exception as error:  # arguments that do not fit: keep what there is
            message = _unmerged(record, error)
        return message if type(message) is str else plain(message, tiny)

    def _error(self, record: logging.LogRecord, out: dict[str, Any]) -> None:
        """Add the traceback (and the exception's type and message) and the stack."""
        keys = self._exc_keys
        if keys is not None:
            if record.exc_info and not record.exc_text:
                # Cached as logging.Formatter caches it, for every formatter of the record.
                record.exc_text = self.formatException(record.exc_info)
            if record.exc_text:
                text = plain(record.exc_text, [])
                self._set(out, keys[0], text)
                error = record.exc_info[1] if record.exc_info else None
                found: tuple[str, Any] | None
                if error is not None:
                    found = (error_type(error), error_message(error, text))
                else:
                    found = error_in_text(text) if isinstance(text, str) else None
                for key, value in zip(keys[1:], found or (), strict=False):
                    if key is not None:
                        self._set(out, key, value)
        if self._stack_key is not None and record.stack_info:
            self._set(out, self._stack_key, self.formatStack(plain(record.stack_info, [])))

    @staticmethod
    def _set(out: dict[str, Any], key: Key, value: Any) -> None:
        if isinstance(key, str):
            out[key] = value
        else:
            put_path(out, key, value)

    def _unformatted(self, record: logging.LogRecord, error: Exception) -> str:
        """Return a line saying the record could not be formatted, and why (no record value)."""
        out: dict[str, Any] = {}
        with contextlib.suppress(Exception):  # a record without a usable time: the rest
            out["time"] = self.formatTime(record)
        out["level"] = plain(getattr(record, "levelname", "ERROR"), [])
        out["logger"] = plain(getattr(record, "name", "?"), [])
        out["message"] = f"ctxlog.JSONFormatter could not format a record: {type(error).__name__}"
        return self._encoder.encode(out)
