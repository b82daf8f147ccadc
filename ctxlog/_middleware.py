"""What the WSGI and ASGI middleware share: their options, the user lookup and the access log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

from ctxlog._proxy import ClientIP
from ctxlog._sanitize import sanitize
from ctxlog._trace import parse_traceparent
from ctxlog.adapters import get_logger
from ctxlog.context import MISSING, get_context
from ctxlog.filters import _enable_trace

__all__ = ["Settings", "latin1_text", "text"]

#: Length caps for values taken from a request.
MAX_PATH: Final = 1024
MAX_USER: Final = 256
MAX_HEADER: Final = 512
MAX_METHOD: Final = 32

METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}
)

_ctxlog = logging.getLogger("ctxlog")
access_logger = get_logger("ctxlog.access")


def text(raw: bytes) -> str:
    """Decode header bytes: UTF-8 when they are UTF-8, else latin-1 (never fails)."""
    if raw.isascii():
        return raw.decode("ascii")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def latin1_text(value: str) -> str:
    """Turn a PEP 3333 environ string (bytes decoded as latin-1) into the text it encodes."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def method_field(method: str) -> str:
    """Return the request method as a field value."""
    return method if method in METHODS else sanitize(method, MAX_METHOD)


def user_name(user: Any) -> str | None:
    """
    Return the name of an authenticated user object, or ``None``.

    Understands Starlette's ``BaseUser`` (``is_authenticated``, ``display_name``), objects with
    ``username``, and plain strings.
    """
    if user is None:
        return None
    if isinstance(user, str):
        return user or None
    if not getattr(user, "is_authenticated", False):
        return None
    name = getattr(user, "display_name", None) or getattr(user, "username", None) or str(user)
    return str(name) or None


def _header_name(name: str) -> str:
    if (
        not isinstance(name, str)
        or not name
        or not all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name)
    ):
        msg = f"request_id_header: {name!r} is not a valid HTTP header name"
        raise ValueError(msg)
    return name.lower()


class Settings:
    """
    The options of a middleware, checked once at construction.

    Raises:
        TypeError: ``user`` is not callable.
        ValueError: A proxy entry, the proxy header, the request id header or ``trace_context``
            is not valid.
    """

    __slots__ = (
        "access_log",
        "client_ip",
        "log_query",
        "request_id_header",
        "trace_context",
        "trace_is_request_id",
        "user",
        "user_errors",
    )

    def __init__(
        self,
        *,
        trusted_proxies: str | Iterable[str],
        proxy_header: str,
        request_id_header: str,
        user: Callable[[Any], Any] | None,
        access_log: bool,
        log_query: bool,
        trace_context: bool | Literal["request_id"] = False,
    ) -> None:
        if not (
            isinstance(trace_context, bool)
            or (isinstance(trace_context, str) and trace_context == "request_id")
        ):
            msg = f"trace_context: {trace_context!r} is not True, False or 'request_id'"
            raise ValueError(msg)
        if user is not None and not callable(user):
            msg = (
                f"user: {user!r} is not callable; pass a function that takes the WSGI environ "
                "or ASGI scope and returns the user's name (or None)"
            )
            raise TypeError(msg)
        self.client_ip = ClientIP(trusted_proxies, proxy_header)
        self.request_id_header = _header_name(request_id_header)
        self.user = user
        self.access_log = bool(access_log)
        self.log_query = bool(log_query)
        self.user_errors = 0
        #: Whether requests get ``trace_id``/``span_id`` from ``traceparent``.
        self.trace_context = bool(trace_context)
        #: Whether a valid ``traceparent``'s trace-id is also the request id.
        self.trace_is_request_id = trace_context == "request_id"
        if self.trace_context:
            _enable_trace()

    def add_trace(self, fields: dict[str, Any], traceparent: str | None) -> None:
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
        if self.trace_is_request_id:
            fields["request_id"] = ids[0]

    def resolve_user(self, source: Any, lookup: Callable[[Any], Any]) -> str | None:
        """
        Return the request's user: from the ``user=`` callable if set, else from ``lookup``.

        ``None`` means the user is not known (yet). This runs while records are being logged,
        where an exception would break the application's log call, so an exception (from the
        callable, from a user object, from its ``__str__``) is reported once with its traceback,
        and the user is logged as ``"-"`` for that request.
        """
        try:
            value = self.user(source) if self.user is not None else lookup(source)
            if value is None or value == "":
                return None
            return sanitize(str(value), MAX_USER)
        except Exception:
            self.user_errors += 1
            if self.user_errors == 1:
                _ctxlog.exception(
                    "looking up the user (%s) raised; the user of this request is logged as "
                    "'-' (reported once)",
                    "user=" + repr(self.user) if self.user is not None else "the default lookup",
                )
            return MISSING

    def write_access(
        self,
        *,
        method: str,
        path: str,
        query: str,
        protocol: str,
        status: int,
        size: int,
        duration_ms: float,
        referer: str,
        user_agent: str,
    ) -> None:
        """Log one access line on ``ctxlog.access``, in the style of the combined log format."""
        if not access_logger.isEnabledFor(logging.INFO):
            return
        target = path
        if self.log_query and query:
            target = f"{path}?{sanitize(query, MAX_PATH)}"
        if not self.log_query:
            referer = referer.partition("?")[0]
        referer = sanitize(referer, MAX_HEADER) if referer else MISSING
        user_agent = sanitize(user_agent, MAX_HEADER) if user_agent else MISSING
        fields = get_context()
        access_logger.info(
            '%s - %s "%s %s %s" %s %s "%s" "%s" %.1fms',
            fields.get("ip", MISSING),
            # A bound user is trusted, but this line is parsed by column: no controls in it.
            sanitize(str(fields.get("user", MISSING)), MAX_USER),
            method,
            _quoted(target),
            protocol,
            status,
            size or "-",
            _quoted(referer),
            _quoted(user_agent),
            duration_ms,
            extra={
                "status": status,
                "size": size,
                "duration_ms": round(duration_ms, 3),
                "protocol": protocol,
                "referer": referer,
                "user_agent": user_agent,
                **({"query": sanitize(query, MAX_PATH)} if self.log_query else {}),
            },
        )


def _quoted(value: str) -> str:
    return value.replace('"', '\\"') if '"' in value else value
