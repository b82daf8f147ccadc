"""
Celery glue: a task runs with the context of the request that published it.

Call :func:`install` once in every process that publishes or runs tasks (the web app and the
worker), after creating the Celery app::

    app = Celery("shop", broker=...)
    ctxlog.celery.install(app, fields=("tenant",))

Publishing a task inside a request adds the request's fields to the task message as plain
message headers, one string each, named ``ctxlog_`` + the field (``ctxlog_request_id``,
``ctxlog_user``, ``ctxlog_ip``, ``ctxlog_trace_id``, ``ctxlog_span_id`` when trace context is on,
and ``ctxlog_tenant`` for each bound field named in ``fields``). Another producer may set them
too. In the worker each task runs in a context of its own holding them, with ``task_id``,
``task_name`` and ``parent_task_id`` (the task that published this one, ``-`` if none); a task
published by a task carries the same fields on, so the root request's id follows the whole
chain, and a retry or an ETA task keeps them.

Header values are untrusted input, as request headers are: a request id that breaks the rule of
:func:`ctxlog.record.escape.valid_request_id` is replaced by a new one, and every other value is
cut and escaped, so no message can forge a line.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from contextvars import Token
from typing import Any, Final

from ctxlog.context import (
    DEFAULT_FIELDS,
    FIELDS,
    MISSING,
    TRACE_FIELDS,
    RequestState,
    check_names,
    fields_for_record,
    request_var,
)
from ctxlog.record.escape import new_request_id, sanitize, valid_request_id

__all__ = [
    "HEADER_PREFIX",
    "TASK_FIELDS",
    "install",
    "message_headers",
    "task_fields",
    "uninstall",
]

#: The prefix of the message headers that carry the context.
HEADER_PREFIX: Final = "ctxlog_"
#: The fields a task's records carry besides the publishing request's (``-`` outside tasks).
TASK_FIELDS: Final = ("task_id", "task_name", "parent_task_id")
#: The request's fields that always travel with a task.
SENT_FIELDS: Final = ("request_id", "user", "ip")
#: The header naming the task that published this one (Celery's own ``parent_id`` names the
#: task itself for a retry).
PARENT_HEADER: Final = HEADER_PREFIX + "parent_task_id"
#: The longest value kept from a header, in characters (longer ones are cut and end in ...).
MAX_VALUE: Final = 512
_HEX: Final = re.compile("[0-9a-f]{1,32}")
_MAX_USER: Final = 256
_MAX_IP: Final = 64

_lock = threading.Lock()
#: The names sent with each task (``SENT_FIELDS``, then those given to install()), once installed.
_sent: tuple[str, ...] | None = None
#: The token of each running task's context, by task id (reset when the task ends).
_tokens: dict[str, Token[RequestState | None]] = {}


def install(app: Any, *, fields: Iterable[str] | None = None) -> None:
    """
    Carry the request's context into the tasks of ``app``, and give tasks a context of their own.

    Call it once per process, in the web app and in the worker (the module that creates the
    Celery app is the usual place). Calling it again with the same ``fields`` does nothing.

    Args:
        app: The :class:`celery.Celery` application (its signals are connected).
        fields: Names of bound fields to send with each task, besides ``request_id``, ``user``,
            ``ip`` and, when trace context is on, ``trace_id`` and ``span_id``.

    Raises:
        TypeError: ``app`` is not a Celery application, or ``fields`` is a single string.
        ValueError: A name in ``fields`` is not an identifier, is reserved, or ctxlog was
            installed before with other fields.

    .. versionadded:: 0.4.0
    """
    global _sent  # noqa: PLW0603 - the process's one configuration
    if not hasattr(app, "send_task") or not hasattr(app, "conf"):
        msg = f"ctxlog.celery.install() needs a Celery application, got {app!r}"
        raise TypeError(msg)
    sent = (*SENT_FIELDS, *_extra_fields(fields))
    from celery import signals  # type: ignore[import-untyped]  # noqa: PLC0415 - lazily

    with _lock:
        if _sent is not None:
            if _sent != sent:
                msg = (
                    f"ctxlog.celery.install() was called before with fields={_sent[3:]!r}; "
                    f"call it once per process with every field to send (got {sent[3:]!r})"
                )
                raise ValueError(msg)
            return
        _sent = sent
        for name in TASK_FIELDS:
            DEFAULT_FIELDS.setdefault(name, MISSING)
        signals.before_task_publish.connect(_add_headers, weak=False, dispatch_uid="ctxlog")
        signals.task_prerun.connect(_enter_task, weak=False, dispatch_uid="ctxlog")
        signals.task_postrun.connect(_leave_task, weak=False, dispatch_uid="ctxlog")


def _extra_fields(fields: Iterable[str] | None) -> tuple[str, ...]:
    if fields is None:
        return ()
    if isinstance(fields, str):
        msg = f"ctxlog.celery.install(fields=) takes a sequence of names, not the string {fields!r}"
        raise TypeError(msg)
    names = tuple(fields)
    check_names(names)
    taken = [name for name in names if name in (*FIELDS, *TRACE_FIELDS, *TASK_FIELDS)]
    if taken:
        msg = (
            f"ctxlog.celery.install(fields=) names {taken[0]!r}, which ctxlog sends or sets "
            "itself; list only fields your app binds"
        )
        raise ValueError(msg)
    return tuple(dict.fromkeys(names))


def message_headers() -> dict[str, str]:
    """
    Return the message headers :func:`install` adds to a task published now.

    Empty outside a request (and outside a task), and before :func:`install`.
    """
    sent = _sent
    if sent is None:
        return {}
    base, local = fields_for_record()
    if base is DEFAULT_FIELDS and not local:
        return {}
    names = sent if "trace_id" not in DEFAULT_FIELDS else (*sent, *TRACE_FIELDS)
    found: dict[str, str] = {}
    for name in names:
        value = local.get(name, base.get(name))
        if value is not None and value != MISSING:
            found[HEADER_PREFIX + name] = str(value)
    return found


def _add_headers(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """
    ``before_task_publish``: put the current context on the message.

    Published from inside a task, the message also names its parent: the running task, or, for
    a retry of the running task (same id), the running task's own parent.
    """
    if headers is None:
        return
    for name, value in message_headers().items():
        headers.setdefault(name, value)
    base, _local = fields_for_record()
    task_id = base.get("task_id", MISSING)
    if task_id != MISSING:
        parent = base.get("parent_task_id", MISSING) if headers.get("id") == task_id else task_id
        headers.setdefault(PARENT_HEADER, str(parent))  # "-" too: a retried root stays a root


def task_fields(
    message: Mapping[str, Any], task_id: str, task_name: str, parent_id: Any
) -> dict[str, Any]:
    """
    Return the fields a task runs with: those the message carries, checked, and the task's own.

    ``message`` is the task's request (or any mapping of its headers). A field it lacks is
    ``-``; a request id that is not valid is replaced by a new one.
    """
    fields: dict[str, Any] = dict(DEFAULT_FIELDS)
    sent = _sent or SENT_FIELDS
    names = sent if "trace_id" not in DEFAULT_FIELDS else (*sent, *TRACE_FIELDS)
    for name in names:
        value = message.get(HEADER_PREFIX + name)
        if value is None:
            continue
        text = value if isinstance(value, str) else str(value)
        fields[name] = _checked(name, text)
    fields["task_id"] = sanitize(str(task_id), MAX_VALUE)
    fields["task_name"] = sanitize(str(task_name), MAX_VALUE)
    parent = message.get(PARENT_HEADER, parent_id)
    fields["parent_task_id"] = (
        MISSING if not parent or parent == MISSING else sanitize(str(parent), MAX_VALUE)
    )
    return fields


def _checked(name: str, text: str) -> str:
    """Return a header's value as safe to log: a valid request id, or cut and escaped text."""
    if name == "request_id":
        return text if valid_request_id(text) else new_request_id()
    if name in {"trace_id", "span_id"}:
        return text if text.isalnum() and text.isascii() and len(text) <= 32 else MISSING
    limit = _MAX_USER if name == "user" else _MAX_IP if name == "ip" else MAX_VALUE
    return sanitize(text, limit)


def _enter_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """``task_prerun``: run the task in a context of its own."""
    if task_id is None or task is None:
        return
    request = task.request
    fields = task_fields(_MessageView(request), task_id, task.name, request.parent_id)
    _tokens[task_id] = request_var.set(RequestState(fields))


def _leave_task(task_id: str | None = None, **_: Any) -> None:
    """``task_postrun``: leave the task's context (nothing reaches the next task)."""
    token = _tokens.pop(task_id, None) if task_id is not None else None
    if token is not None:
        try:
            request_var.reset(token)
        except ValueError:
            # Entered in another Context (a pool that runs the signals apart from the task):
            # at least this Context holds no task afterwards.
            request_var.set(None)


class _MessageView(Mapping[str, Any]):
    """A task's request (:class:`celery.app.task.Context`) read as a mapping of its headers."""

    __slots__ = ("_request",)

    def __init__(self, request: Any) -> None:
        self._request = request

    def __getitem__(self, name: str) -> Any:
        value = self._request.get(name)
        if value is None:
            headers = getattr(self._request, "headers", None) or {}
            value = headers.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def uninstall() -> None:
    """Disconnect what :func:`install` connected (for tests: :func:`ctxlog.testing.reset`)."""
    global _sent  # noqa: PLW0603 - see install
    with _lock:
        if _sent is None:
            return
        _sent = None
        for name in TASK_FIELDS:
            DEFAULT_FIELDS.pop(name, None)
        _tokens.clear()
    from celery import signals  # noqa: PLC0415

    signals.before_task_publish.disconnect(dispatch_uid="ctxlog")
    signals.task_prerun.disconnect(dispatch_uid="ctxlog")
    signals.task_postrun.disconnect(dispatch_uid="ctxlog")

