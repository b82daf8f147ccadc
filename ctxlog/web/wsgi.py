"""
:class:`WSGIMiddleware`: the request's context for Flask, Django and any PEP 3333 app.

::

    app.wsgi_app = ctxlog.WSGIMiddleware(app.wsgi_app, trusted_proxies=["10.0.0.0/8"])

The request's context is set for the app call, for every step of the response body and for the
final ``close()``, and taken away after each, in whatever thread and :class:`contextvars.Context`
the server runs them: a streaming body logs with its request's fields, and nothing of ctxlog's is
left in a thread the server reuses for the next request (a threaded server such as gunicorn's
gthread, waitress or cheroot reuses threads all the time), even when a step raises or the body is
never closed. Only ctxlog's own context variables are touched: the app runs in the server's
Context, as it would without the middleware, so a context manager or a
:class:`~contextvars.ContextVar` that the app enters in one step and leaves in another (Flask's
``stream_with_context``, its test client keeping the request context) works as before. The access
log is written when the server closes the response, which PEP 3333 requires it to do once it has
sent the body.

The request id is added to the response's headers (a new list: the app's is not changed), unless
the app set that header itself, in any case: then the app's header is sent as it is, alone, and
the request's records keep the id the middleware chose.

Security
--------
``REMOTE_ADDR`` is the client unless it is listed in ``trusted_proxies``; see
:class:`~ctxlog.web.asgi.ASGIMiddleware` for the rules, which are the same. Values taken from the
request are escaped and length-capped before they are stored, so a path or user name can never
start a new log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ctxlog.context import RequestState, local_var, request_var, reset_request, tag_exception
from ctxlog.web.request import RequestFields, first_id
from ctxlog.web.settings import Settings, environ_key
from ctxlog.web.text import latin1_text
from ctxlog.web.user import remote_user
from ctxlog.web.wsgi_response import ListBody, Response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["WSGIMiddleware"]

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class WSGIMiddleware:
    """
    Capture each request's ip, user, request_id, method and path for the records it logs.

    Args:
        app: The WSGI application to wrap.
        trusted_proxies: Addresses or networks of your reverse proxies (``"10.0.0.0/8"``), or
            ``"*"`` to trust every peer. Empty (the default): the peer address is the client.
        proxy_header: The header your proxies set: ``"X-Forwarded-For"`` (default) or
            ``"Forwarded"`` (RFC 7239). The other one is ignored.
        request_id_header: Where an incoming request id is read, and where the id is echoed in
            the response. A sequence of names is tried in order (``["X-Request-ID",
            "X-Correlation-ID"]``); the first is the one echoed.
        user: A callable given the environ, returning the user's name or ``None``; by default
            ``REMOTE_USER``. A ``ctxlog.bind(user=...)`` in the app always wins.
        access_log: Log one line per request on the ``ctxlog.access`` logger.
        log_query: Include the query string in the access log (off: query strings carry tokens).
        trace_context: Add ``trace_id`` and ``span_id`` from a W3C ``traceparent`` header (``"-"``
            without a valid one), or from the current OpenTelemetry span when a record is
            logged. ``"request_id"``: also use the trace-id as the request id when a valid
            ``traceparent`` came in. See :doc:`/trace-context`.
        request_id_generator: Makes the id of a request that brings none (or none that is
            taken): a callable with no arguments returning a str. Default: 32 random hex digits.
            What it returns is escaped and cut at 200 characters, as any captured value.
        request_id_validator: Decides which incoming ids are taken, instead of ctxlog's rule
            (1-200 printable ASCII characters, no space, comma, backslash or double quote): a
            callable given the header's text, returning true to take it. A taken id is still
            escaped and cut, for the log line and the echoed header alike.
        trust_request_id: Whose incoming id is taken: ``"any"`` client (the default),
            ``"proxies"``, only a request whose peer is one of ``trusted_proxies`` (behind a
            load balancer that sets the id), or ``"never"``.
        echo_request_id: Send the request id back in the response (the default); ``False``
            leaves the response as the app made it.

    Raises:
        TypeError: ``user``, ``request_id_generator`` or ``request_id_validator`` is not
            callable, or ``echo_request_id`` is not a bool.
        ValueError: An entry of ``trusted_proxies`` is not an address or network, a header
            name is not valid, ``trace_context`` is not ``True``, ``False`` or
            ``"request_id"``, or ``trust_request_id`` is not one of its three values (or is
            ``"proxies"`` with no ``trusted_proxies``).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``trace_context``.
    .. versionchanged:: 0.3.0
       The app runs in the server's Context, not in a copy of it; only ctxlog's context is set
       and reset around the app call and each step of the body. A request id header the app
       sets itself is kept, not followed by a second one.
    .. versionchanged:: 0.4.0
       ``request_id_generator``, ``request_id_validator``, ``trust_request_id``,
       ``echo_request_id``; ``request_id_header`` may name several headers.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        trusted_proxies: str | Iterable[str] = (),
        proxy_header: str = "X-Forwarded-For",
        request_id_header: str | Sequence[str] = "X-Request-ID",
        user: Callable[[WSGIEnvironment], Any] | None = None,
        access_log: bool = False,
        log_query: bool = False,
        trace_context: bool | Literal["request_id"] = False,
        request_id_generator: Callable[[], str] | None = None,
        request_id_validator: Callable[[str], bool] | None = None,
        trust_request_id: Literal["any", "proxies", "never"] = "any",
        echo_request_id: bool = True,
    ) -> None:
        if not callable(app):
            msg = f"WSGIMiddleware: app {app!r} is not a WSGI application (not callable)"
            raise TypeError(msg)
        self.app = app
        self.settings = Settings(
            trusted_proxies=trusted_proxies,
            proxy_header=proxy_header,
            request_id_header=request_id_header,
            user=user,
            access_log=access_log,
            log_query=log_query,
            trace_context=trace_context,
            request_id_generator=request_id_generator,
            request_id_validator=request_id_validator,
            trust_request_id=trust_request_id,
            echo_request_id=echo_request_id,
        )
        self.fields = RequestFields(self.settings, remote_user)
        keys = tuple(environ_key(name) for name in self.settings.request_id_headers)
        #: The environ key of the request id header, or ``None`` when several names are tried
        #: (``_id_keys``, in order).
        self._id_key = keys[0] if len(keys) == 1 else None
        self._id_keys = keys
        self._id_header = self.settings.response_id_header
        self._echo = self.settings.echo_request_id
        header = self.settings.client_ip.header
        self._proxy_key = None if header is None else environ_key(header)
        self._user_given = user is not None
        self._access_log = self.settings.access_log

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request with its context set; the caller's context is left as it was."""
        state = self._start(environ)
        if not self._access_log:
            body, local = self._call_app(environ, start_response, state, None)
            if type(body) is list or type(body) is tuple:
                # Sending these runs none of the app's code, and they have no close(): with
                # no access line to write, nothing needs the request's context any more.
                return ListBody(body)
            return Response(state, self.settings, environ, 0.0, local).wrap(body)
        response = Response(state, self.settings, environ, time.perf_counter(), local_var.get())
        body, response.local = self._call_app(environ, start_response, state, response)
        return response.wrap(body)

    def _call_app(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        state: RequestState,
        response: Response | None,
    ) -> tuple[Iterable[bytes], Mapping[str, Any]]:
        """Run the app with the request's context set; return its body and scope() values."""
        outer = local_var.get()
        token = request_var.set(state)
        try:
            if self._user_given or "REMOTE_USER" in environ:
                state.current()  # the user, if known already; a failing user= reports here
            body = self.app(environ, self._starter(start_response, state, response))
        except BaseException as error:
            tag_exception(error, state)
            if response is not None:
                response.failed()
            raise
        finally:
            # ctxlog's own variables go back to what the caller had; the app's stay as it
            # left them, as without the middleware. A scope() the app left open is the
            # request's: it comes back for the body.
            local = local_var.get()
            if local is not outer:
                local_var.set(outer)
            reset_request(token)
        return body, local

    def _start(self, environ: WSGIEnvironment) -> RequestState:
        """Build the request's holder from the environ."""
        return self.fields.state(
            environ,
            environ.get("REMOTE_ADDR"),
            environ.get(self._proxy_key) if self._proxy_key else None,
            # A header sent twice arrives joined with a comma, which no valid id holds.
            environ.get(self._id_key) if self._id_key else first_id(environ, self._id_keys),
            environ.get("REQUEST_METHOD", "GET"),
            latin1_text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/",
            # A traceparent sent twice arrives joined with a comma: the parser refuses it.
            environ.get("HTTP_TRACEPARENT") if self.fields.trace else None,
        )

    def _starter(
        self, start_response: StartResponse, state: RequestState, response: Response | None
    ) -> StartResponse:
        """Return ``start_response`` adding the request id header (noting what access needs)."""
        if not self._echo and response is None:
            return start_response
        header = (self._id_header, state.fields["request_id"])
        id_lower = self.settings.request_id_header
        echo = self._echo

        def start_with_id(
            status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            # A new list: the app may pass the same list object to every request. A header
            # the app set itself is kept, alone.
            size = len(id_lower)
            if echo:
                for name, _ in headers:
                    if len(name) == size and name.lower() == id_lower:
                        break
                else:
                    headers = [*headers, header]
            if response is None:
                return start_response(status, headers, exc_info)
            response.status = status
            return response.counting(start_response(status, headers, exc_info))

        return start_with_id

