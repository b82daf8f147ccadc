"""
The one place where a request's fields are built, for ASGI, WSGI and Django alike.

Each entry point reads what it needs from its own source (the ASGI scope's header list, the WSGI
environ, Django's ``request.META``) and hands the raw values to :class:`RequestFields`, which
turns them into the fields every record of the request carries::

    ip          the peer, or the client behind trusted proxies (ctxlog.web.proxies)
    user        "-" until found; looked up when a record is made (ctxlog.web.user)
    request_id  the incoming id if acceptable, else a new one (ctxlog.record.escape)
    method      the request method, escaped and capped unless a standard one
    path        the path, escaped and capped
    trace_id    with trace_context: from a valid ``traceparent`` header (ctxlog.web.traceparent)
    span_id

and puts them in the request's one :class:`~ctxlog.context.RequestState`, which the middleware
then sets for the request. Values taken from the request are escaped and length-capped here and
nowhere else; values a developer binds later are trusted as given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Final

from ctxlog._stderr import write_line
from ctxlog.context import DEFAULT_FIELDS, FIELDS, MISSING, RequestState
from ctxlog.record.escape import (
    MAX_REQUEST_ID,
    REQUEST_ID_BYTES,
    new_request_id,
    sanitize,
    token,
)
from ctxlog.record.stamp import enable_trace
from ctxlog.web.settings import Settings
from ctxlog.web.text import MAX_METHOD, MAX_PATH, text
from ctxlog.web.traceparent import parse_traceparent
from ctxlog.web.user import UserLookup

__all__ = [
    "METHODS",
    "RequestFields",
    "RequestIds",
    "first_id",
    "method_field",
    "path_field",
    "request_id",
    "safe_id",
]

METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}
)

#: Proxy headers up to this length have the client address they give cached.
_MAX_CACHED: Final = 256
#: How many fields a request has when no other part of ctxlog added process-wide ones.
_STANDARD: Final = len(FIELDS)


def method_field(method: str) -> str:
    """Return the request method as a field value."""
    return method if method in METHODS else sanitize(method, MAX_METHOD)


def path_field(path: str) -> str:
    """Return the request path as a field value: escaped and capped, ``/`` if empty."""
    if not path:
        return "/"
    # Three C calls settle nearly every path; sanitize() only for the rest.
    if len(path) <= MAX_PATH and path.isascii() and path.isprintable() and "\\" not in path:
        return path
    return sanitize(path, MAX_PATH)


def request_id(incoming: str | bytes | None) -> str:
    r"""
    Return the incoming request id if it is acceptable, else a new one.

    Acceptable: 1-200 printable ASCII characters without spaces, commas, ``\\`` or ``"``
    (:func:`~ctxlog.record.escape.valid_request_id`). Header bytes (ASGI) and text (WSGI) are
    checked as bytes: a hex or alphanumeric id, nearly all of them, takes two C calls.
    """
    if incoming is None:
        return new_request_id()
    if type(incoming) is str:
        if not incoming.isascii():  # no valid id holds anything else
            return new_request_id()
        raw = incoming.encode()
    else:
        raw = incoming  # type: ignore[assignment]
    if (len(raw) <= MAX_REQUEST_ID and raw.isalnum()) or REQUEST_ID_BYTES.fullmatch(raw):
        return raw.decode() if raw is incoming else incoming  # type: ignore[return-value]
    return new_request_id()


def safe_id(value: str) -> str:
    r"""
    Return a request id a custom validator accepted, or a generator made, as safe to log.

    Cut at 200 characters and escaped as every captured value is, with whitespace and ``"``
    escaped too (it is one column of the access line), then made ASCII (``\xe9`` for ``é``),
    so it can also be sent back as a header.
    """
    text = token(sanitize(value, MAX_REQUEST_ID))
    return text if text.isascii() else text.encode("ascii", "backslashreplace").decode("ascii")


class RequestIds:
    """
    Choose each request's id by a policy other than the default one.

    Args:
        settings: The middleware's options: ``request_id_generator``, ``request_id_validator``
            and ``trust_request_id``.
    """

    __slots__ = ("_errors", "client_ip", "generator", "trust", "validator")

    def __init__(self, settings: Settings) -> None:
        self.generator = settings.request_id_generator
        self.validator = settings.request_id_validator
        self.trust = settings.trust_request_id
        self.client_ip = settings.client_ip
        self._errors = 0

    def choose(self, peer: str | None, incoming: str | bytes | None) -> str:
        """Return the id of a request from ``peer`` that sent ``incoming`` (or no id)."""
        if incoming is not None and (
            self.trust == "never" or (self.trust == "proxies" and not self.client_ip.trusts(peer))
        ):
            incoming = None
        if incoming is not None:
            text = incoming.decode("latin-1") if isinstance(incoming, bytes) else incoming
            if self.validator is None:
                if text.isascii() and REQUEST_ID_BYTES.fullmatch(text.encode()):
                    return text
            elif self._call("request_id_validator", self.validator, text):
                return safe_id(text)
        return self.new()

    def new(self) -> str:
        """Return a new id: the generator's, made safe, or ctxlog's own if it fails."""
        if self.generator is None:
            return new_request_id()
        made = self._call("request_id_generator", self.generator)
        if isinstance(made, str) and made:
            return safe_id(made)
        if made is not None:
            self._report("request_id_generator", f"returned {made!r}, not a non-empty str")
        return new_request_id()

    def _call(self, name: str, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except Exception as error:
            self._report(name, f"raised {error!r}")
            return None

    def _report(self, name: str, what: str) -> None:
        """Say on stderr, the first time, that a user's callable failed; ctxlog's own id stands."""
        self._errors += 1
        if self._errors == 1:
            write_line(
                f"ctxlog: {name} {what}; requests get ctxlog's own id instead (reported once)"
            )


class RequestFields:
    """
    Build the fields of each request of one middleware, from its checked options.

    Args:
        settings: The middleware's options.
        lookup_user: Finds the user in the request's source (the environ, the scope, Django's
            request) when no ``user=`` callable is set; see :mod:`ctxlog.web.user`.
    """

    __slots__ = ("_client_ip", "_walk", "ids", "resolve_user", "settings", "trace", "users")

    def __init__(self, settings: Settings, lookup_user: Callable[[Any], Any]) -> None:
        self.settings = settings
        self.trace = settings.trace_context
        #: ``None`` for the default policy (any client's valid id, else a new one), settled
        #: inline in :meth:`state`; else what chooses each request's id.
        self.ids = (
            None
            if settings.request_id_generator is None
            and settings.request_id_validator is None
            and settings.trust_request_id == "any"
            else RequestIds(settings)
        )
        if self.trace:
            enable_trace()
        resolve = settings.client_ip.resolve

        def walk(peer: str | None, forwarded: str | bytes | None) -> str:
            if type(forwarded) is bytes:
                forwarded = text(forwarded)
            return resolve(peer, forwarded)  # type: ignore[arg-type]

        self._walk = walk
        # By peer and raw header (bytes from ASGI, str from WSGI): a repeat visitor costs one
        # cache hit. Long headers are not cached (a client could fill the cache with big keys).
        self._client_ip = functools.lru_cache(maxsize=4096)(walk)
        self.users = UserLookup(settings.user)
        #: Given to each request's holder: the user, looked up when a record needs it.
        self.resolve_user = functools.partial(self.users.resolve, lookup=lookup_user)

    def client_ip(self, peer: str | None, forwarded: str | bytes | None) -> str:
        """Return the client address from the peer and the raw proxy header (or ``None``)."""
        if forwarded is None or len(forwarded) <= _MAX_CACHED:
            return self._client_ip(peer, forwarded)
        return self._walk(peer, forwarded)

    def state(  # noqa: PLR0917 - positional: a keyword call costs ~400 instructions a request
        self,
        source: Any,
        peer: str | None,
        forwarded: str | bytes | None,
        incoming_id: str | bytes | None,
        method: str,
        path: str,
        traceparent: str | None = None,
    ) -> RequestState:
        """
        Return the holder of a new request's fields.

        Args:
            source: What the user is looked up in later (the environ, scope or request).
            peer: The address of the connection's other end, as the server gives it.
            forwarded: The raw value of the trusted proxy header, or ``None``.
            incoming_id: The raw incoming request id, or ``None`` (also when it came twice).
            method: The request method, as sent.
            path: The decoded path, as sent (``"/"`` if empty).
            traceparent: The ``traceparent`` header; read only with ``trace_context``.
        """
        # The usual cases inline (this runs for every request): a cached client address, an
        # acceptable path and a standard method need no call of their own.
        fields = {
            "ip": (
                self._client_ip(peer, forwarded)
                if forwarded is None or len(forwarded) <= _MAX_CACHED
                else self._walk(peer, forwarded)
            ),
            "user": MISSING,
            "request_id": (
                incoming_id.decode()  # an ASGI header: bytes, nearly always a hex id
                if type(incoming_id) is bytes
                and len(incoming_id) <= MAX_REQUEST_ID
                and incoming_id.isalnum()
                and self.ids is None
                else request_id(incoming_id)
                if self.ids is None
                else self.ids.choose(peer, incoming_id)
            ),
            "method": method if method in METHODS else sanitize(method, MAX_METHOD),
            "path": (
                path
                if len(path) <= MAX_PATH
                and path.isascii()
                and path.isprintable()
                and "\\" not in path
                else path_field(path)
            ),
        }
        if self.trace:
            self._add_trace(fields, traceparent)
        if len(DEFAULT_FIELDS) > _STANDARD:
            # Fields other parts of ctxlog give every record (trace fields, Celery's task
            # fields): "-" in a request that does not set them, as outside requests.
            for name, value in DEFAULT_FIELDS.items():
                if name not in fields:
                    fields[name] = value
        return RequestState(fields, self.resolve_user, source)

    def _add_trace(self, fields: dict[str, Any], traceparent: str | None) -> None:
        """
        Put ``trace_id`` and ``span_id`` from a ``traceparent`` value into a request's fields.

        An invalid or missing value gives ``"-"`` for both. ``span_id`` is the caller's span (the
        header's parent-id): this process has no span of its own unless OpenTelemetry makes one,
        and then records take that span's id when they are logged.
        """
        ids = parse_traceparent(traceparent) if traceparent else None
        if ids is None:
            fields["trace_id"] = fields["span_id"] = MISSING
            return
        fields["trace_id"], fields["span_id"] = ids
        if self.settings.trace_is_request_id:
            fields["request_id"] = ids[0]


def first_id(environ: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """Return the request id under the first of ``keys`` the environ (or Django's META) has."""
    for key in keys:
        value = environ.get(key)
        if value is not None:
            return str(value)
    return None
