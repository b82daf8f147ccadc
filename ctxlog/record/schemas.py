"""
The names :class:`ctxlog.JSONFormatter` gives a record's fields, per schema.

A *field* is what ``fields=`` and ``rename=`` name: ``time``, ``level``, ``logger``,
``message``, ``exception``, ``stack``, ctxlog's fields (``ip``, ``user``, ``request_id``,
``method``, ``path``, the trace and task fields, the receiver's ``peer``), a few LogRecord
attributes (``process``, ``thread``, ``lineno``...), and ``extras`` (every other attribute:
``extra=`` values and bound fields). Each schema gives each field a *path*: one key, or the keys
of nested objects.

- ``None``: ctxlog's own names, flat.
- ``"ecs"``: Elastic Common Schema (ecs-logging's layout: ``@timestamp``, ``log.level``,
  ``message`` first, ``log.level`` and ``ecs.version`` as dotted top-level keys, every other
  dotted name as nested objects).
- ``"otel"``: the OpenTelemetry log data model's top-level names (``timestamp``,
  ``severity_text``, ``severity_number``, ``body``, ``trace_id``, ``span_id``) and semantic
  convention attribute names, flat with dots in the keys as OpenTelemetry attributes are.
- ``"gcp"``: Cloud Logging's structured logging keys (``severity``, ``time``,
  ``logging.googleapis.com/trace`` and ``spanId``, ``httpRequest``, ``sourceLocation``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from ctxlog.context import RESERVED

__all__ = [
    "CTXLOG_FIELDS",
    "DEFAULT_FIELDS",
    "ECS_VERSION",
    "KNOWN",
    "RECORD_ATTRIBUTES",
    "SCHEMAS",
    "SPECIAL",
    "check_fields",
    "gcp_severity",
    "gcp_trace_prefix",
    "paths",
    "severity_number",
]

#: ctxlog's fields: left out of a line when they hold ``"-"`` (unknown) or ``None``.
CTXLOG_FIELDS: Final = (
    "ip",
    "user",
    "request_id",
    "method",
    "path",
    "trace_id",
    "span_id",
    "task_id",
    "task_name",
    "parent_task_id",
    "peer",
)
#: LogRecord attributes a line may carry when ``fields=`` names them.
RECORD_ATTRIBUTES: Final = (
    "process",
    "processName",
    "thread",
    "threadName",
    "taskName",
    "module",
    "filename",
    "pathname",
    "lineno",
    "funcName",
    "levelno",
)
#: What a line holds when ``fields=`` is not given.
DEFAULT_FIELDS: Final = (
    "time",
    "level",
    "logger",
    "message",
    *CTXLOG_FIELDS,
    "exception",
    "stack",
    "extras",
)
#: The fields that are not record attributes.
SPECIAL: Final = frozenset({"time", "level", "logger", "message", "exception", "stack", "extras"})
#: Every field name that is not the name of one extra field.
KNOWN: Final = frozenset({*SPECIAL, *CTXLOG_FIELDS, *RECORD_ATTRIBUTES})
#: The version of ECS the ``"ecs"`` names follow (``ecs.version`` on every line).
ECS_VERSION: Final = "8.11.0"
#: The schemas ``schema=`` accepts.
SCHEMAS: Final = (None, "ecs", "otel", "gcp")

_ECS: Final = {
    "time": "@timestamp",
    "level": "log.level",
    "logger": "log.logger",
    "message": "message",
    "ip": "client.ip",
    "user": "user.name",
    "request_id": "http.request.id",
    "method": "http.request.method",
    "path": "url.path",
    "trace_id": "trace.id",
    "span_id": "span.id",
    "exception": "error.stack_trace",
    "exception.type": "error.type",
    "exception.message": "error.message",
    "process": "process.pid",
    "processName": "process.name",
    "thread": "process.thread.id",
    "threadName": "process.thread.name",
    "filename": "log.origin.file.name",
    "lineno": "log.origin.file.line",
    "funcName": "log.origin.function",
}
#: ECS names ecs-logging keeps as dotted top-level keys, for people reading the line.
_ECS_TOP: Final = frozenset({"@timestamp", "log.level", "ecs.version"})

_OTEL: Final = {
    "time": "timestamp",
    "level": "severity_text",
    "level.number": "severity_number",
    "logger": "otel.scope.name",
    "message": "body",
    "ip": "client.address",
    "user": "user.name",
    "method": "http.request.method",
    "path": "url.path",
    "trace_id": "trace_id",
    "span_id": "span_id",
    "exception": "exception.stacktrace",
    "exception.type": "exception.type",
    "exception.message": "exception.message",
    "stack": "code.stacktrace",
    "process": "process.pid",
    "thread": "thread.id",
    "threadName": "thread.name",
    "pathname": "code.file.path",
    "lineno": "code.line.number",
    "funcName": "code.function.name",
}

_GCP_SOURCE: Final = "logging.googleapis.com/sourceLocation"
_GCP: Final[dict[str, tuple[str, ...]]] = {
    "time": ("time",),
    "level": ("severity",),
    "message": ("message",),
    "ip": ("httpRequest", "remoteIp"),
    "method": ("httpRequest", "requestMethod"),
    "path": ("httpRequest", "requestUrl"),
    "trace_id": ("logging.googleapis.com/trace",),
    "span_id": ("logging.googleapis.com/spanId",),
    "exception": ("stack_trace",),
    "pathname": (_GCP_SOURCE, "file"),
    "lineno": (_GCP_SOURCE, "line"),
    "funcName": (_GCP_SOURCE, "function"),
}

#: A Cloud project id (6 to 30 lowercase letters, digits or hyphens, a letter first, no hyphen
#: last), after the domain of a legacy domain-scoped project (``example.com:my-project``).
_GCP_PROJECT: Final = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+:)?"
    r"[a-z][a-z0-9-]{4,28}[a-z0-9]"
)

#: OpenTelemetry's severity numbers for the standard library's levels (the lowest of each
#: range: DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21), a level between two taking a step up.
_SEVERITY_BASE: Final = (1, 5, 9, 13, 17, 21)


def ecs_path(key: str) -> tuple[str, ...]:
    """Return where an ECS name goes: a dotted top-level key, or nested objects."""
    return (key,) if key in _ECS_TOP else tuple(key.split("."))


def paths(schema: str | None) -> dict[str, tuple[str, ...]]:
    """Return each field's path under ``schema``; a field not listed keeps its own name."""
    if schema == "ecs":
        return {field: ecs_path(key) for field, key in _ECS.items()}
    if schema == "otel":
        return {field: (key,) for field, key in _OTEL.items()}
    if schema == "gcp":
        return dict(_GCP)
    return {"exception.type": ("exception_type",), "exception.message": ("exception_message",)}


def severity_number(levelno: object) -> int:
    """Return OpenTelemetry's SeverityNumber (1-24) for a standard library level number."""
    if not isinstance(levelno, int) or levelno < 10:
        return 1
    step = min(levelno // 10, 5)
    return min(_SEVERITY_BASE[step] + min(levelno - step * 10, 3), 24)


def gcp_severity(levelno: object) -> str:
    """Return Cloud Logging's LogSeverity name for a standard library level number."""
    if not isinstance(levelno, int):
        return "DEFAULT"
    if levelno >= 50:
        return "CRITICAL"
    if levelno >= 40:
        return "ERROR"
    if levelno >= 30:
        return "WARNING"
    if levelno >= 20:
        return "INFO"
    return "DEBUG" if levelno >= 10 else "DEFAULT"


def gcp_trace_prefix(project: object) -> str:
    """
    Return what goes before a trace id for Cloud Logging: ``projects/PROJECT/traces/``.

    Raises:
        ValueError: ``project`` is not a Cloud project id (or a domain-scoped one,
            ``example.com:my-project``).
    """
    if not isinstance(project, str) or _GCP_PROJECT.fullmatch(project) is None:
        msg = (
            f"JSONFormatter: gcp_project={project!r} is not a Cloud project id: give 6 to 30 "
            "lowercase letters, digits or hyphens, a letter first and no hyphen last "
            "('my-project-123'), or 'example.com:my-project' for a domain-scoped project"
        )
        raise ValueError(msg)
    return f"projects/{project}/traces/"


def check_fields(fields: Sequence[str]) -> tuple[str, ...]:
    """Return ``fields`` as a tuple, or raise :class:`ValueError` saying what is wrong with it."""
    if isinstance(fields, str) or not all(isinstance(name, str) for name in fields):
        msg = (
            f"JSONFormatter: fields={fields!r} must be a list of field names, like ['message'] "
            '(it takes no format string: in dictConfig give "()": "ctxlog.JSONFormatter" '
            'and fields=, not "format")'
        )
        raise ValueError(msg)
    for name in fields:
        if name not in KNOWN and (name in RESERVED or name.startswith("_ctxlog") or not name):
            msg = (
                f"JSONFormatter: fields= names {name!r}, which it does not write; choose from "
                f"{sorted(KNOWN)} or the name of an extra field"
            )
            raise ValueError(msg)
    if len(set(fields)) != len(fields):
        msg = f"JSONFormatter: fields={list(fields)!r} names a field twice"
        raise ValueError(msg)
    return tuple(fields)
