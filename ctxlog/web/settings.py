"""What the WSGI and ASGI middleware share: their options, the user lookup and the access log."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

from ctxlog.context import MISSING, get_context
from ctxlog.record.adapter import get_logger
from ctxlog.record.escape import Escaped, quoted, sanitize, sanitize_once, token
from ctxlog.record.stamp import enable_trace
from ctxlog.web.proxies import ClientIP
from ctxlog.web.traceparent import parse_traceparent

__all__ = ["Settings", "latin1_text", "text"]

#: Length caps for values taken from a request.
MAX_PATH: Final = 1024
MAX_USER: Final = 256
MAX_HEADER: Final = 512
MAX_METHOD: Final = 32
MAX_PROTOCOL: Final = 16

METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}
)

#: Schemes whose URLs always have an authority, however many slashes follow (WHATWG "special").
_SPECIAL_SCHEMES: Final = frozenset({"http", "https", "ws", "wss", "ftp"})
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
#: What may be left of an authority once the userinfo is gone: a host (a name, an IPv4 address
#: or a bracketed IPv6 one) and an optional port. Anything else is not shown at all.
_HOST_PORT: Final = re.compile(r"(?:\[[0-9A-Za-z:.%]*\]|[^\s/\\?#@\[\]:]*)(?::[0-9]*)?")
_AUTHORITY_END: Final = re.compile(r"[/\\]")
#: What a browser strips from both ends of a URL, and what it removes from anywhere in it.
_URL_SPACE: Final = "".join(map(chr, range(0x21)))
_URL_IGNORED: Final = dict.fromkeys(map(ord, "\t\n\r"))

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
            enable_trace()

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
        """
        Log one access line on ``ctxlog.access``, in the style of the combined log format.

        Every column can be read by an anchored pattern whatever the request held (see
        docs/access-log.md): ``method``, ``path`` and ``protocol`` arrive escaped, the user and
        the method and protocol are written without whitespace, and the quoted parts have their
        ``"`` escaped. The line is :class:`~ctxlog.record.escape.Escaped`, so
        :class:`ctxlog.Formatter` does not escape it a second time.
        """
        if not access_logger.isEnabledFor(logging.INFO):
            return
        # The path and method were escaped when captured (Escaped, if anything needed it); a
        # developer may have bound others in their place, raw: escape what is not escaped yet.
        target = sanitize_once(path, MAX_PATH)
        if self.log_query and query:
            target = f"{target}?{sanitize(query, MAX_PATH)}"
        referer = referer_field(referer, keep_query=self.log_query) if referer else MISSING
        referer = sanitize(referer or MISSING, MAX_HEADER)
        user_agent = sanitize(user_agent, MAX_HEADER) if user_agent else MISSING
        fields = get_context()
        user = fields.get("user", MISSING)
        line = '%s - %s "%s %s %s" %s %s "%s" "%s" %.1fms' % (  # noqa: UP031 - one C call
            fields.get("ip", MISSING),
            # A bound user is trusted, but this line is parsed by column: no controls in it.
            token(sanitize_once(user if isinstance(user, str) else str(user), MAX_USER)),
            token(sanitize_once(method, MAX_METHOD)),
            quoted(target),
            token(sanitize_once(protocol, MAX_PROTOCOL)),
            status,
            size or "-",
            quoted(referer),
            quoted(user_agent),
            duration_ms,
        )
        access_logger.info(
            Escaped(line),
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


def referer_field(value: str, *, keep_query: bool) -> str:
    r"""
    Return what the access log shows of a ``Referer``: ``scheme://host[:port]/path``.

    The userinfo (``user:password@``) and the fragment are never kept; the query only with
    ``keep_query``. The URL is read as a browser reads it (``https:host``, ``https:///host`` and
    ``https:\\host`` all name ``host``), so no spelling slips a password through. A reference
    without a scheme keeps its path (and query). A URL whose authority, once the userinfo is
    removed, is not a host and port cannot be cut apart safely (``https://alice:pa/ss@host``):
    it is shown as ``-``.

    .. versionadded:: 0.3.0
    """
    value = value.strip(_URL_SPACE)
    if not value.isprintable():
        value = value.translate(_URL_IGNORED)  # a browser drops tabs and line breaks
    value = value.partition("#")[0]
    base, mark, query = value.partition("?")
    if not keep_query:
        mark = query = ""
    match = _SCHEME.match(base)
    if match is not None:
        scheme = match.group()
        rest = base[match.end() :]
        if scheme[:-1].lower() in _SPECIAL_SCHEMES:
            rest = rest.lstrip("/\\")
        elif rest[:2] == "//":
            rest = rest[2:]
        else:  # no authority (urn:, about:, android-app:): nothing there may be a user name
            return scheme + rest.rpartition("@")[2] + mark + query
    elif len(base) >= 2 and base[0] in "/\\" and base[1] in "/\\":
        scheme, rest = "", base[2:]  # a network-path reference: //host/path
    else:
        return base + mark + query  # a path: it has no authority
    end = _AUTHORITY_END.search(rest)
    authority, path = (rest[: end.start()], rest[end.start() :]) if end else (rest, "")
    host = authority.rpartition("@")[2]
    if _HOST_PORT.fullmatch(host) is None:
        return MISSING
    return f"{scheme}//{host}{path}{mark}{query}"
