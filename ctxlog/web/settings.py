"""
The options every web entry point shares, checked once when the middleware is built.

:class:`ctxlog.ASGIMiddleware`, :class:`ctxlog.WSGIMiddleware`, ``ctxlog.flask.init_app`` and
Django's ``CTXLOG`` setting take the same options; :class:`Settings` checks them and keeps the
result, so a request never checks an option again. What the options are used for lives with
the concept: the fields in :mod:`ctxlog.web.request`, the user in :mod:`ctxlog.web.user`, the
access line in :mod:`ctxlog.web.access`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

from ctxlog.web.proxies import ClientIP

__all__ = ["TRUST_REQUEST_ID", "Settings", "environ_key"]

#: The values of ``trust_request_id``: whose incoming request id is taken.
TRUST_REQUEST_ID: Final = ("any", "proxies", "never")


def _header_name(name: str) -> str:
    if (
        not isinstance(name, str)
        or not name
        or not all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name)
    ):
        msg = f"request_id_header: {name!r} is not a valid HTTP header name"
        raise ValueError(msg)
    return name.lower()


def _header_names(value: str | Sequence[str]) -> tuple[str, ...]:
    """Return the request id header names, lowercase, in the order they are tried."""
    if isinstance(value, str):
        names: tuple[str, ...] = (value,)
    else:
        names = tuple(value) if isinstance(value, Sequence) else ()
    if not names:
        msg = f"request_id_header: {value!r} is not a header name or a sequence of them"
        raise ValueError(msg)
    lowered = tuple(_header_name(name) for name in names)
    if len(set(lowered)) < len(lowered):
        msg = f"request_id_header: {value!r} names a header twice"
        raise ValueError(msg)
    return lowered


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
        "echo_request_id",
        "log_query",
        "request_id_generator",
        "request_id_header",
        "request_id_headers",
        "request_id_validator",
        "response_id_header",
        "trace_context",
        "trace_is_request_id",
        "trust_request_id",
        "user",
    )

    def __init__(
        self,
        *,
        trusted_proxies: str | Iterable[str],
        proxy_header: str,
        request_id_header: str | Sequence[str],
        user: Callable[[Any], Any] | None,
        access_log: bool,
        log_query: bool,
        trace_context: bool | Literal["request_id"] = False,
        request_id_generator: Callable[[], str] | None = None,
        request_id_validator: Callable[[str], bool] | None = None,
        trust_request_id: Literal["any", "proxies", "never"] = "any",
        echo_request_id: bool = True,
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
        #: The names an incoming request id is read from, lowercase, in the order tried.
        self.request_id_headers = _header_names(request_id_header)
        #: The first of them, lowercase: the response's request id header.
        self.request_id_header = self.request_id_headers[0]
        #: The same name as given (its case), for the response.
        self.response_id_header = (
            request_id_header if isinstance(request_id_header, str) else request_id_header[0]
        )
        self._check_id_policy(
            request_id_generator, request_id_validator, trust_request_id, echo_request_id
        )
        self.request_id_generator = request_id_generator
        self.request_id_validator = request_id_validator
        #: Whose incoming id is taken: ``"any"`` client, trusted ``"proxies"`` only, or ``"never"``.
        self.trust_request_id = trust_request_id
        self.echo_request_id = echo_request_id
        self.user = user
        self.access_log = bool(access_log)
        self.log_query = bool(log_query)
        #: Whether requests get ``trace_id``/``span_id`` from ``traceparent``.
        self.trace_context = bool(trace_context)
        #: Whether a valid ``traceparent``'s trace-id is also the request id.
        self.trace_is_request_id = trace_context == "request_id"

    def _check_id_policy(
        self,
        generator: object,
        validator: object,
        trust: object,
        echo: object,
    ) -> None:
        """Refuse a request id policy that cannot work, naming the option and the value."""
        callables = (("request_id_generator", generator), ("request_id_validator", validator))
        for name, value in callables:
            if value is not None and not callable(value):
                msg = f"{name}: {value!r} is not callable (or None for ctxlog's own)"
                raise TypeError(msg)
        if not (isinstance(trust, str) and trust in TRUST_REQUEST_ID):
            choices = ", ".join(map(repr, TRUST_REQUEST_ID))
            msg = f"trust_request_id: {trust!r} is not one of {choices}"
            raise ValueError(msg)
        if trust == "proxies" and self.client_ip.header is None:
            msg = (
                "trust_request_id='proxies' takes an incoming request id only from a trusted "
                "proxy, and trusted_proxies is empty: list your proxies in trusted_proxies, or "
                "choose 'never' or 'any'"
            )
            raise ValueError(msg)
        if not isinstance(echo, bool):
            msg = f"echo_request_id: {echo!r} is not True or False"
            raise TypeError(msg)
