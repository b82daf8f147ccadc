"""
The request context: where ctxlog keeps ``ip``, ``user``, ``request_id`` and friends.

Everything lives in two :mod:`contextvars` variables and nowhere else:

``request_var``
    The current request, a small mutable holder that the WSGI/ASGI middleware creates when a
    request starts. Every task and thread of that request sees the *same* holder (tasks and
    thread pools copy the Context, and the copy points at the same object), so a ``bind()`` in a
    view, in a sync view run in a thread pool or in an inner middleware running in another task
    is seen by everything the request logs afterwards, including the access log line written by
    the outer middleware.

``local_var``
    An immutable mapping for ``scope()`` blocks and for ``bind()`` outside requests. Changing it
    means setting a new mapping, so it only ever changes the current Context.

The middleware leaves nothing in a thread's own Context: WSGI requests set and reset these
variables around the app call and every step of the body, and ASGI requests reset the variable
with their token, so nothing of a request is left behind in a reused thread or task.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "FIELDS",
    "MISSING",
    "bind",
    "get_context",
    "scope",
    "unbind",
]

#: The fields the middleware captures for every request, in the order they are usually logged.
FIELDS: Final = ("ip", "user", "request_id", "method", "path")

#: What a field holds when nothing is known about it.
MISSING: Final = "-"

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})

#: The fields a middleware with ``trace_context`` adds to a request's fields.
TRACE_FIELDS: Final = ("trace_id", "span_id")

#: The fields of a record made outside any request. ``DEFAULT_FIELDS`` is the same as a plain
#: dict, which ``dict.update`` and key views handle faster; only :func:`add_trace_fields` and
#: :func:`reset_context` change it, in place, so every module that imported it sees the change.
DEFAULT_FIELDS: Final[dict[str, Any]] = dict.fromkeys(FIELDS, MISSING)
DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType(DEFAULT_FIELDS)

#: The marks of a record stamped once (:mod:`ctxlog.record.stamp`) and of one redacted
#: (:mod:`ctxlog.record.redact`); a leading underscore, which JSON formatters leave out.
STAMPED: Final = "_ctxlog_stamped"
REDACTED: Final = "_ctxlog_redacted"

#: Attribute names a LogRecord has of its own, the two the Formatter adds, ``peer``, which the
#: receiver sets to the sender's address (a frame may not carry it), and ctxlog's marks. A bound
#: field with one of these names could never reach a record intact, so bind() refuses them, and
#: no encoder sends them as extras.
RESERVED: Final = frozenset(
    [*logging.makeLogRecord({}).__dict__, "message", "asctime", "taskName", "peer"]
).union([STAMPED, REDACTED])


#: Taken by the rare writes to a request's fields (bind, unbind, the user found), never by
#: readers; one lock for all requests costs nothing per request.
write_lock = threading.Lock()


class RequestState:
    """
    Hold the fields of one request; shared by every task and thread of that request.

    ``fields`` is replaced, never mutated, so a reader in another thread always sees a complete
    mapping without taking a lock.
    """

    __slots__ = ("fields", "parent", "resolve_user", "resolving", "source")

    def __init__(
        self,
        fields: dict[str, Any],
        resolve_user: Callable[[Any], str | None] | None = None,
        source: Any = None,
    ) -> None:
        self.fields = fields
        #: The request this one runs inside (an app calling another app), usually ``None``.
        self.parent = request_var.get()
        #: Called with ``source`` (the WSGI environ or ASGI scope) while the user is not known
        #: yet, for instance while an authentication middleware inside ours has not run;
        #: ``None`` once the user is known or bound.
        self.resolve_user = resolve_user
        self.source = source
        self.resolving = False

    def current(self) -> dict[str, Any]:
        """Return the fields, resolving the user first if it is still pending."""
        resolve = self.resolve_user
        if resolve is not None and not self.resolving:
            # The resolver may log (a failing user= callable reports itself): no re-entry.
            self.resolving = True
            try:
                user = resolve(self.source)
            finally:
                self.resolving = False
            if user is not None:
                with write_lock:
                    if self.resolve_user is resolve:  # nothing bound meanwhile
                        self.resolve_user = None
                        self.fields = {**self.fields, "user": user}
        return self.fields

    def update(self, fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` in; a bound ``user`` stops any pending user lookup."""
        with write_lock:  # two threads of one request binding at once: neither is lost
            if "user" in fields:
                self.resolve_user = None
            self.fields = {**self.fields, **fields}

    def remove(self, names: tuple[str, ...]) -> None:
        """Remove ``names``; a standard field goes back to ``"-"``."""
        with write_lock:
            if "user" in names:
                self.resolve_user = None
            fields = {k: v for k, v in self.fields.items() if k not in names}
            for name in names:
                if name in DEFAULTS:
                    fields[name] = MISSING
            self.fields = fields


request_var: ContextVar[RequestState | None] = ContextVar("ctxlog_request", default=None)
local_var: ContextVar[Mapping[str, Any]] = ContextVar("ctxlog_local", default=_EMPTY)


_RESERVED_WHY: Final = {
    "peer": "the sender's address, which the receiver sets",
    STAMPED: "the mark of a record ctxlog has stamped",
    REDACTED: "the mark of a record ctxlog has redacted",
}


def check_names(names: Iterable[str]) -> None:
    """Raise :class:`ValueError` for a name that cannot be a field (see :func:`bind`)."""
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            msg = f"ctxlog field names must be identifiers, got {name!r}"
            raise ValueError(msg)
        if name in RESERVED:
            what = _RESERVED_WHY.get(name, "an attribute every LogRecord already has")
            msg = f"ctxlog field name {name!r} is reserved ({what}); choose another name"
            raise ValueError(msg)


def bind(**fields: Any) -> None:
    """
    Add ``fields`` to the current context.

    Inside a request this changes the request's context: everything the request logs afterwards
    carries the fields, whichever task or thread of the request logs it, and so does the access
    log line. Outside a request it changes the current :class:`contextvars.Context` only.

    Args:
        **fields: Names and values; values are logged as given (they are trusted).

    Raises:
        ValueError: A name is not an identifier or is an attribute of every LogRecord
            (``name``, ``msg``, ``message`` ...), which a field could never replace.

    .. versionadded:: 0.1.0
    """
    if not fields:
        return
    check_names(fields)
    local = local_var.get()
    request = request_var.get()
    if request is not None:
        request.update(fields)
        # A scope() block that set one of these names would hide the new value; the latest
        # bind wins for the rest of the block too.
        if not local.keys().isdisjoint(fields):
            local_var.set(MappingProxyType({**local, **fields}))
    else:
        local_var.set(MappingProxyType({**local, **fields}))


def unbind(*names: str) -> None:
    """
    Remove fields from the current context; a standard field goes back to ``"-"``.

    Names that are not bound are ignored.

    .. versionadded:: 0.1.0
    """
    if not names:
        return
    request = request_var.get()
    if request is not None:
        request.remove(names)
    local = local_var.get()
    if not local.keys().isdisjoint(names):
        local_var.set(MappingProxyType({k: v for k, v in local.items() if k not in names}))


@contextlib.contextmanager
def scope(**fields: Any) -> Iterator[None]:
    """
    Add ``fields`` for the duration of a ``with`` block, then restore what was there.

    Works inside and outside requests, in threads and tasks alike: jobs, scripts, consumers.
    Only the current Context changes, so concurrent tasks never see each other's scopes. Inside
    the block, the scope's values take precedence over fields bound to the request.

    Raises:
        ValueError: As :func:`bind`.

    .. versionadded:: 0.1.0
    """
    check_names(fields)
    token = local_var.set(MappingProxyType({**local_var.get(), **fields}))
    try:
        yield
    finally:
        # A generator finalised in another Context (an abandoned stream) cannot reset its
        # token; the Context it set the value in is gone with it, so there is nothing to undo.
        with contextlib.suppress(ValueError, RuntimeError):
            local_var.reset(token)


def get_context() -> dict[str, Any]:
    """
    Return a snapshot of the current context as a plain ``dict``.

    Inside a request it holds the standard fields and everything bound; outside everything it is
    ``{}``.

    .. versionadded:: 0.1.0
    """
    request = request_var.get()
    local = local_var.get()
    if request is None:
        return dict(local)
    return {**request.current(), **local}


def reset_request(token: Token[RequestState | None]) -> None:
    """
    Undo a middleware's ``request_var.set()``, from whatever Context the request ends in.

    A coroutine cancelled by the server, or a streaming generator closed by the garbage
    collector, may finish in another Context, which never saw the value: there is nothing to
    undo there, so the error that ``reset()`` raises is ignored.
    """
    # A plain try is cheaper than contextlib.suppress on this path, which every request takes.
    try:  # noqa: SIM105 - see above
        request_var.reset(token)
    except (ValueError, RuntimeError):
        pass


#: The attribute that carries a request's tag on an exception that escaped its middleware.
_EXC_ATTR: Final = "__ctxlog_request__"
#: How many exceptions (the chain of causes and contexts, members of groups) are searched.
_EXC_SEARCH: Final = 16
#: How many enclosing requests are followed to decide whether one request runs inside another.
_NESTING: Final = 32


class _Tag:
    """
    The request an exception escaped from, as the exception carries it.

    A copy of the exception (``pickle``, ``copy.deepcopy``: a process pool, Django's parallel
    test runner) carries an empty tag: the request's holder refers to the environ or scope and
    to the middleware, which neither can nor should be copied.
    """

    __slots__ = ("state",)

    def __init__(self, state: RequestState | None = None) -> None:
        self.state = state

    def __reduce__(self) -> tuple[type[_Tag], tuple[()]]:
        return (_Tag, ())

    def __deepcopy__(self, memo: dict[int, Any]) -> _Tag:
        return _Tag()


def _inside(inner: RequestState, outer: RequestState) -> bool:
    """Whether ``inner`` is ``outer`` or runs inside it (an app called by ``outer``'s app)."""
    state: RequestState | None = inner
    for _ in range(_NESTING):
        if state is None:
            return False
        if state is outer:
            return True
        state = state.parent
    return False


def tag_exception(error: BaseException, state: RequestState) -> None:
    """
    Remember on ``error`` the request it is escaping from.

    The server logs an exception the app raised only after the middleware has left the
    request's Context ("Exception in ASGI application", "Error handling request"); the tag on
    the exception lets :func:`request_of_exception` give that record the request's fields.

    A tag left by a request running inside this one is kept (the innermost request names the
    failure). Any other tag is replaced: the same exception object can escape several requests
    (a module-level instance, the result of a task that several requests await), and each
    escape must name its own request, which the server logs before the next one can escape.
    """
    current = getattr(error, _EXC_ATTR, None)
    if isinstance(current, _Tag) and current.state is not None and _inside(current.state, state):
        return
    # An exception type with __slots__ and no __dict__ cannot carry it; nothing to do.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(error, _EXC_ATTR, _Tag(state))


def request_of_exception(record: logging.LogRecord) -> RequestState | None:
    """
    Return the request that ``record``'s exception escaped from, or ``None``.

    The exception's causes and contexts are searched, and the members of an exception group
    (a task group around the app reports the app's exception inside one).
    """
    info = record.exc_info
    if not info or not isinstance(info, tuple) or len(info) < 2:
        return None
    pending = [info[1]]
    seen = 0
    while pending and seen < _EXC_SEARCH:
        error = pending.pop(0)
        if not isinstance(error, BaseException):
            continue
        seen += 1
        tag = getattr(error, _EXC_ATTR, None)
        if isinstance(tag, _Tag) and tag.state is not None:
            return tag.state
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        following = error.__cause__ or error.__context__
        if following is not None:
            pending.append(following)
    return None


def fields_for_record(
    record: logging.LogRecord | None = None,
) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """
    Return ``(base, local)``, ``local`` taking precedence: the one source of a record's fields.

    ``base`` always holds the standard fields. Outside any request, a ``record`` whose exception
    escaped a request (logged by the server after the request's Context is gone) gets its fields.
    """
    request = request_var.get()
    if request is None and record is not None and record.exc_info:
        request = request_of_exception(record)
    if request is None:
        return DEFAULT_FIELDS, local_var.get()
    if request.resolve_user is None:
        return request.fields, local_var.get()
    return request.current(), local_var.get()


def add_trace_fields() -> None:
    """
    Give records made outside a request ``trace_id`` and ``span_id`` of ``"-"`` too.

    Called when a middleware with ``trace_context`` is built, so a format string naming the two
    fields works for every record of the process from then on.
    """
    for name in TRACE_FIELDS:
        DEFAULT_FIELDS.setdefault(name, MISSING)


def reset_context() -> None:
    """
    Forget everything bound in the current Context and the trace fields of records made outside.

    Part of :func:`ctxlog.testing.reset`, which also stops reading the OpenTelemetry span.
    """
    request_var.set(None)
    local_var.set(_EMPTY)
    for name in TRACE_FIELDS:
        DEFAULT_FIELDS.pop(name, None)
