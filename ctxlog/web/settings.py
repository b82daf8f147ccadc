"""
The options every web entry point shares, checked once when the middleware is built.

:class:`ctxlog.ASGIMiddleware`, :class:`ctxlog.WSGIMiddleware`, ``ctxlog.flask.init_app`` and
Django's ``CTXLOG`` setting take the same options; :class:`Settings` checks them and keeps the
result, so a request never checks an option again. What the options are used for lives with
the concept: the fields in :mod:`ctxlog.web.request`, the user in :mod:`ctxlog.web.user`, the
access line in :mod:`ctxlog.web.access`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from ctxlog.web.proxies import ClientIP

__all__ = ["Settings", "environ_key"]


def _header_name(name: str) -> str:
    if (
        not isinstance(name, str)
        or not name
        or not all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name)
    ):
        msg = f"request_id_header: {name!r} is not a valid HTTP header name"
        raise ValueError(msg)
    return name.lower()


def environ_key(header: str) -> str:
    """Return the WSGI environ key of a header: ``X-Request-ID`` -> ``HTTP_X_REQUEST_ID``."""
    return "HTTP_" + header.upper().replace("-", "_")


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
        #: The request id header's name, lowercase.
        self.request_id_header = _header_name(request_id_header)
        self.user = user
        self.access_log = bool(access_log)
        self.log_query = bool(log_query)
        #: Whether requests get ``trace_id``/``span_id`` from ``traceparent``.
        self.trace_context = bool(trace_context)
        #: Whether a valid ``traceparent``'s trace-id is also the request id.
        self.trace_is_request_id = trace_context == "request_id"
