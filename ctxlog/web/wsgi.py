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
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ctxlog.context import (
    MISSING,
    RequestState,
    local_var,
    request_var,
    reset_request,
    tag_exception,
)
from ctxlog.record.escape import new_request_id, sanitize, valid_request_id
from ctxlog.web.settings import (
    MAX_PATH,
    METHODS,
    Settings,
    latin1_text,
    method_field,
)

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
        request_id_header: Where an incoming request id is read and where the id is echoed in
            the response.
        user: A callable given the environ, returning the user's name or ``None``; by default
            ``REMOTE_USER``. A ``ctxlog.bind(user=...)`` in the app always wins.
        access_log: Log one line per request on the ``ctxlog.access`` logger.
        log_query: Include the query string in the access log (off: query strings carry tokens).
        trace_context: Add ``trace_id`` and ``span_id`` from a W3C ``traceparent`` header (``"-"``
            without a valid one), or from the current OpenTelemetry span when a record is
            logged. ``"request_id"``: also use the trace-id as the request id when a valid
            ``traceparent`` came in. See :doc:`/trace-context`.

    Raises:
        TypeError: ``user`` is not callable.
        ValueError: An entry of ``trusted_proxies`` is not an address or network, a header
            name is not valid, or ``trace_context`` is not ``True``, ``False`` or
            ``"request_id"``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``trace_context``.
    .. versionchanged:: 0.3.0
       The app runs in the server's Context, not in a copy of it; only ctxlog's context is set
       and reset around the app call and each step of the body. A request id header the app
       sets itself is kept, not followed by a second one.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        trusted_proxies: str | Iterable[str] = (),
        proxy_header: str = "X-Forwarded-For",
        request_id_header: str = "X-Request-ID",
        user: Callable[[WSGIEnvironment], Any] | None = None,
        access_log: bool = False,
        log_query: bool = False,
        trace_context: bool | Literal["request_id"] = False,
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
        )
        settings = self.settings
        self._id_key = "HTTP_" + settings.request_id_header.upper().replace("-", "_")
        self._id_header = request_id_header
        self._id_lower = settings.request_id_header
        self._trace = settings.trace_context
        header = settings.client_ip.header
        self._proxy_key = None if header is None else "HTTP_" + header.upper().replace("-", "_")

    def _resolve_user(self, environ: WSGIEnvironment) -> str | None:
        return self.settings.resolve_user(environ, _remote_user)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request with its context set; the caller's context is left as it was."""
        started = time.perf_counter()
        settings = self.settings
        incoming = environ.get(self._id_key)
        request_id = incoming if incoming and valid_request_id(incoming) else new_request_id()
        proxy = environ.get(self._proxy_key) if self._proxy_key else None
        path = latin1_text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
        if not (len(path) <= MAX_PATH and path.isascii() and path.isprintable()) or "\\" in path:
            path = sanitize(path, MAX_PATH)
        method = environ.get("REQUEST_METHOD", "GET")
        fields = {
            "ip": settings.client_ip.resolve(environ.get("REMOTE_ADDR"), proxy),
            "user": MISSING,
            "request_id": request_id,
            "method": method if method in METHODS else method_field(method),
            "path": path,
        }
        if self._trace:
            # A traceparent sent twice arrives joined with a comma: the parser refuses it.
            settings.add_trace(fields, environ.get("HTTP_TRACEPARENT"))
            request_id = fields["request_id"]
        state = RequestState(fields, self._resolve_user, environ)
        outer = local_var.get()
        response = _Response(state, settings, environ, started, outer)
        header = (self._id_header, request_id)
        id_lower = self._id_lower

        def _start_response(
            status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            response.status = status
            # A new list: the app may pass the same list object to every request. A header
            # the app set itself is kept, alone.
            size = len(id_lower)
            for name, _ in headers:
                if len(name) == size and name.lower() == id_lower:
                    break
            else:
                headers = [*headers, header]
            write = start_response(status, headers, exc_info)
            return response.counting(write) if settings.access_log else write

        token = request_var.set(state)
        try:
            if settings.user is not None or "REMOTE_USER" in environ:
                state.current()  # the user, if already known; a failing user= reports in context
            body = self.app(environ, _start_response)
        except BaseException as error:
            tag_exception(error, state)
            response.failed()
            raise
        finally:
            # ctxlog's own variables go back to what the caller had; the app's stay as it
            # left them, as without the middleware. A scope() the app left open is the
            # request's: it comes back for the body.
            local = response.local = local_var.get()
            if local is not outer:
                local_var.set(outer)
            reset_request(token)
        response.body = body
        if type(body) is list or type(body) is tuple:
            # Iterating these runs none of the app's code, and they have no close(): only the
            # access line, if any, needs the context.
            response.__class__ = _ListResponse
            return response
        if hasattr(type(body), "__len__"):
            # Servers ask for len() only when the body has one (waitress, gunicorn test with
            # hasattr); an unsized body must stay unsized, so only a sized one gets __len__.
            response.__class__ = _SizedResponse
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            # Keep the server's fast path (sendfile): hand back its own wrapper, with our close.
            closer = _Closer(getattr(body, "close", None))
            try:
                body.close = response.close  # type: ignore[attr-defined]
            except AttributeError:  # a wrapper with __slots__: wrap it like any body
                return response
            response.body = closer
            return body
        return response


class _Closer:
    """Stands in for a file wrapper's own close() once ours is attached to it."""

    __slots__ = ("close_body",)

    def __init__(self, close_body: Callable[[], object] | None) -> None:
        self.close_body = close_body

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        if self.close_body is not None:
            self.close_body()


def _remote_user(environ: WSGIEnvironment) -> str | None:
    user = environ.get("REMOTE_USER")
    return latin1_text(user) if user else None


class _Response:
    """
    Iterate and close the app's response with the request's context set, then log access.

    Each step sets ctxlog's variables in the Context it runs in and puts back what was there,
    so it works from any thread, any Context and from inside another step (a server calling
    ``close()`` while iterating), and leaves nothing behind when it raises.
    """

    __slots__ = (
        "body",
        "environ",
        "iterator",
        "local",
        "settings",
        "size",
        "started",
        "state",
        "status",
    )

    def __init__(
        self,
        state: RequestState,
        settings: Settings,
        environ: WSGIEnvironment,
        started: float,
        local: Mapping[str, Any],
    ) -> None:
        self.state = state
        self.settings = settings
        self.environ = environ
        self.started = started
        #: The request's scope() values, carried from one step to the next.
        self.local = local
        self.status: str | None = None
        self.size = 0
        self.body: Iterable[bytes] = ()
        self.iterator: Iterator[bytes] | None = None

    def counting(self, write: Callable[[bytes], object]) -> Callable[[bytes], object]:
        def counted(data: bytes) -> object:
            self.size += len(data)
            return write(data)

        return counted

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __bool__(self) -> bool:
        return True

    def __next__(self) -> bytes:
        outer = local_var.get()  # before any set(): a cache hit
        token = request_var.set(self.state)
        local = self.local
        if local is not outer:
            local_var.set(local)
        try:
            if self.iterator is None:
                self.iterator = iter(self.body)
            chunk = next(self.iterator)
        except StopIteration:
            raise
        except BaseException as error:
            tag_exception(error, self.state)
            if self.status is None:
                self.status = "500 Internal Server Error"
            raise
        finally:
            local = self.local = local_var.get()
            if local is not outer:
                local_var.set(outer)
            # reset_request(), inline: this runs for every step of every body.
            try:  # noqa: SIM105 - a plain try is cheaper than contextlib.suppress
                request_var.reset(token)
            except (ValueError, RuntimeError):
                pass
        self.size += len(chunk)
        return chunk

    def close(self) -> None:
        """Close the app's response and write the access log, with the request's context set."""
        outer = local_var.get()
        token = request_var.set(self.state)
        if self.local is not outer:
            local_var.set(self.local)
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        except BaseException as error:
            tag_exception(error, self.state)
            raise
        finally:
            try:
                self._log()
            finally:
                local = self.local = local_var.get()
                if local is not outer:
                    local_var.set(outer)
                reset_request(token)

    def failed(self) -> None:
        """Log access for an app that raised instead of returning a response."""
        self.status = "500 Internal Server Error"
        self._log()

    def _log(self) -> None:
        settings = self.settings
        if not settings.access_log or self.started < 0:
            return
        started, self.started = self.started, -1.0  # once only
        environ = self.environ
        status = self.status.split(" ", 1)[0] if self.status else "500"
        fields = self.state.fields
        settings.write_access(
            method=fields["method"],
            path=fields["path"],
            query=latin1_text(environ.get("QUERY_STRING", "")),
            protocol=sanitize(environ.get("SERVER_PROTOCOL", "HTTP/1.0"), 16),
            status=int(status) if status.isdigit() else 500,
            size=self.size,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            referer=latin1_text(environ.get("HTTP_REFERER", "")),
            user_agent=latin1_text(environ.get("HTTP_USER_AGENT", "")),
        )


class _SizedResponse(_Response):
    """A :class:`_Response` for a body with a length: servers send it as Content-Length."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.body)  # type: ignore[arg-type]


class _ListResponse(_SizedResponse):
    """A :class:`_Response` for a list or tuple body: nothing of the app runs while it is sent."""

    __slots__ = ()

    def __next__(self) -> bytes:
        if self.iterator is None:
            self.iterator = iter(self.body)
        chunk = next(self.iterator)
        self.size += len(chunk)
        return chunk

    def close(self) -> None:
        """Write the access log, if asked for, with the request's context set."""
        if self.settings.access_log:
            super().close()
