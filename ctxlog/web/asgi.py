"""
:class:`ASGIMiddleware`: the request's context for Starlette, FastAPI and any ASGI 3 app.

::

    app = ctxlog.ASGIMiddleware(app, trusted_proxies=["10.0.0.0/8"])
    starlette_app.add_middleware(ctxlog.ASGIMiddleware, access_log=True)

It is a pure ASGI middleware: the app runs in the same task, so everything it starts (tasks,
``run_in_threadpool`` for sync views, background tasks, streaming bodies) inherits the request's
context. ``http`` and ``websocket`` connections get a context; other scope types are passed
through untouched. The context is reset with its token when the app returns, so a task the
server reuses carries nothing into the next request.

Wrapping an app changes nothing the server or the client sees but the request id header: the
app's messages reach the server as the app sent them (the header goes into a copy of
``http.response.start`` or ``websocket.accept``, and only when the app did not set that header
itself), and so do the app's own ``lifespan`` events and errors. At the ``lifespan`` shutdown,
what :func:`ctxlog.nonblocking` handlers still hold is delivered before the server hears that the
app has stopped: uvicorn ends the process after a SIGTERM without running exit handlers, so the
queue would be lost. An app that does not speak the lifespan protocol (Django's ``ASGIHandler``
refuses it) needs ``answer_lifespan=True``: the middleware then answers the server's lifespan
events itself, with the same flush, and never passes them to the app.

The request's fields live in one holder shared by the whole request, so a ``ctxlog.bind()`` made
in a view, in a sync view in the thread pool or inside a Starlette ``BaseHTTPMiddleware`` (which
runs the rest of the app in another task) is seen by everything the request logs afterwards,
including the access log line written here.

Security
--------
The client address is the peer (``scope["client"]``) unless the peer is one of
``trusted_proxies``. Only then is ``X-Forwarded-For`` (or ``Forwarded``, if ``proxy_header`` says
so) read, from the right, skipping our own proxies; the first other address is the client. A
header from a peer that is not trusted is ignored, so a client can never choose the address that
is logged for it. ``"*"`` trusts every peer: use it only when the app is reachable through your
proxy and nothing else. Every value taken from the request (path, user, headers) is escaped and
length-capped before it is stored: a request can never start a new log line, send a terminal
escape sequence or reorder text with bidi controls. The request id is accepted from the client
only when it is 1-200 printable ASCII characters without spaces or commas, otherwise a new one
is made (also when the header comes twice); it is echoed in the response, never anything else
from the request. A response that already has the header (the app set one, in any case) keeps
it as the app set it: the records of the request keep the id the middleware chose.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final, Literal

from ctxlog.context import MISSING, RequestState, request_var, reset_request, tag_exception
from ctxlog.queue import flush
from ctxlog.record.escape import REQUEST_ID_BYTES, new_request_id, sanitize
from ctxlog.web.settings import (
    MAX_PATH,
    METHODS,
    Settings,
    method_field,
    text,
    user_name,
)

__all__ = ["ASGIMiddleware"]

_VALID_ID = REQUEST_ID_BYTES.fullmatch
_MAX_CACHED = 256

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ASGIMiddleware:
    """
    Capture each request's ip, user, request_id, method and path for the records it logs.

    Args:
        app: The ASGI 3 application to wrap.
        trusted_proxies: Addresses or networks of your reverse proxies (``"10.0.0.0/8"``), or
            ``"*"`` to trust every peer. Empty (the default): the peer address is the client.
        proxy_header: The header your proxies set: ``"X-Forwarded-For"`` (default) or
            ``"Forwarded"`` (RFC 7239). The other one is ignored.
        request_id_header: Where an incoming request id is read and where the id is echoed in
            the response (and in a websocket's accept message).
        user: A callable given the scope, returning the user's name or ``None``. By default an
            authenticated ``scope["user"]`` (Starlette's ``AuthenticationMiddleware``, also
            when it sits inside this middleware). A ``ctxlog.bind(user=...)`` always wins.
        access_log: Log one line per HTTP request on the ``ctxlog.access`` logger.
        log_query: Include the query string in the access log (off: query strings carry tokens).
        trace_context: Add ``trace_id`` and ``span_id`` from a W3C ``traceparent`` header (``"-"``
            without a valid one), or from the current OpenTelemetry span when a record is
            logged. ``"request_id"``: also use the trace-id as the request id when a valid
            ``traceparent`` came in. See :doc:`/trace-context`.
        answer_lifespan: The app does not speak the ASGI lifespan protocol (Django's
            ``ASGIHandler``): the middleware answers the server's ``lifespan`` events itself,
            flushing the :func:`ctxlog.nonblocking` queues at the shutdown, and never passes
            them to the app. Off (the default): the app gets them, and its answers and errors
            reach the server as the app made them.

    Raises:
        TypeError: ``user`` is not callable, or ``answer_lifespan`` is not a bool.
        ValueError: An entry of ``trusted_proxies`` is not an address or network, a header
            name is not valid, or ``trace_context`` is not ``True``, ``False`` or
            ``"request_id"``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``trace_context``.
    .. versionchanged:: 0.3.0
       ``answer_lifespan``. A request id header the app sets itself is kept, not followed
       by a second one, and the app's messages are not changed.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: str | Iterable[str] = (),
        proxy_header: str = "X-Forwarded-For",
        request_id_header: str = "X-Request-ID",
        user: Callable[[Scope], Any] | None = None,
        access_log: bool = False,
        log_query: bool = False,
        trace_context: bool | Literal["request_id"] = False,
        answer_lifespan: bool = False,
    ) -> None:
        if not callable(app):
            msg = f"ASGIMiddleware: app {app!r} is not an ASGI application (not callable)"
            raise TypeError(msg)
        if not isinstance(answer_lifespan, bool):
            msg = f"answer_lifespan: {answer_lifespan!r} is not True or False"
            raise TypeError(msg)
        self.app = app
        self.answer_lifespan = answer_lifespan
        self.settings = Settings(
            trusted_proxies=trusted_proxies,
            proxy_header=proxy_header,
            request_id_header=request_id_header,
            user=user,
            access_log=access_log,
            log_query=log_query,
            trace_context=trace_context,
        )
        self._id_name = self.settings.request_id_header.encode("latin-1")
        self._trace = self.settings.trace_context
        client_ip = self.settings.client_ip
        # Client addresses by (peer, raw header bytes): a repeat visitor costs one cache hit.
        # Long headers are not cached (a client could fill the cache with big keys).
        self._walk = lambda peer, raw: client_ip.resolve(peer, None if raw is None else text(raw))
        self._client_ip = functools.lru_cache(maxsize=4096)(self._walk)
        header = self.settings.client_ip.header
        self._proxy_name = None if header is None else header.encode("latin-1")

    def _resolve_user(self, scope: Scope) -> str | None:
        return self.settings.resolve_user(scope, _scope_user)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection: set its context, run the app, echo the id, log access."""
        kind = scope["type"]
        if kind not in {"http", "websocket"}:
            if kind != "lifespan":
                await self.app(scope, receive, send)
            elif self.answer_lifespan:
                await _answer_lifespan(receive, send)
            else:
                await _lifespan(self.app, scope, receive, send)
            return
        settings = self.settings
        started = time.perf_counter() if settings.access_log else 0.0
        id_name = self._id_name
        proxy_name = self._proxy_name
        access_log = settings.access_log
        incoming: bytes | None = None
        proxy: bytes | None = None
        proxy_lines: list[bytes] | None = None
        duplicate_id = False
        user_agent = referer = b""
        for name, value in scope.get("headers") or ():
            if name == id_name:
                duplicate_id = incoming is not None
                incoming = value
            elif name == proxy_name:
                if proxy is None:
                    proxy = value
                elif proxy_lines is None:
                    proxy_lines = [proxy, value]
                else:
                    proxy_lines.append(value)  # joined once below: linear in the lines
            elif access_log:
                if name == b"user-agent":
                    user_agent = value
                elif name == b"referer":
                    referer = value
        if proxy_lines is not None:
            proxy = b",".join(proxy_lines)
        if incoming is not None and not duplicate_id and _VALID_ID(incoming) is not None:
            request_id = incoming.decode("ascii")
            echo = incoming
        else:
            request_id = new_request_id()
            echo = request_id.encode("ascii")
        client = scope.get("client")
        path = scope.get("path") or "/"
        if not (len(path) <= MAX_PATH and path.isascii() and path.isprintable()) or "\\" in path:
            path = sanitize(path, MAX_PATH)
        method = scope.get("method", "GET") if kind == "http" else "WS"
        fields = {
            "ip": (self._client_ip if proxy is None or len(proxy) <= _MAX_CACHED else self._walk)(
                client[0] if client else None, proxy
            ),
            "user": MISSING,
            "request_id": request_id,
            "method": method if method in METHODS else method_field(method),
            "path": path,
        }
        if self._trace:
            settings.add_trace(fields, _traceparent(scope))
            if fields["request_id"] != request_id:  # the trace-id became the request id
                request_id = fields["request_id"]
                echo = request_id.encode("ascii")
        state = RequestState(fields, self._resolve_user, scope)
        token = request_var.set(state)
        if settings.user is not None or "user" in scope:
            state.current()  # the user, if already known; a failing user= reports in context
        if not access_log:
            # Only the id to echo: the lean path of most deployments.
            async def send_with_id(message: Message) -> None:
                if message["type"] in {"http.response.start", "websocket.accept"}:
                    message = _with_id(message, id_name, echo)
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            except BaseException as error:
                tag_exception(error, state)
                raise
            finally:
                reset_request(token)
            return

        status = 0
        size = 0
        finished = 0.0

        async def send_and_measure(message: Message) -> None:
            nonlocal status, size, finished
            kind = message["type"]
            if kind in {"http.response.start", "websocket.accept"}:
                status = message.get("status", 101)
                message = _with_id(message, id_name, echo)
            elif kind == "http.response.body":
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    finished = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, send_and_measure)
        except BaseException as error:
            tag_exception(error, state)
            if status == 0:
                status = 500
            raise
        finally:
            try:
                if scope["type"] == "http":
                    settings.write_access(
                        method=state.fields["method"],
                        path=state.fields["path"],
                        query=text(scope.get("query_string", b"")),
                        protocol="HTTP/" + str(scope.get("http_version", "1.1")),
                        status=status or 500,
                        size=size,
                        duration_ms=((finished or time.perf_counter()) - started) * 1000.0,
                        referer=text(referer),
                        user_agent=text(user_agent),
                    )
            finally:
                reset_request(token)


_SHUTDOWN_DONE: Final = frozenset({"lifespan.shutdown.complete", "lifespan.shutdown.failed"})


def _with_id(message: Message, name: bytes, value: bytes) -> Message:
    """
    Return ``message`` with the request id header added, as a new message.

    The app's message is never changed: it may keep it, or send the same one again. A header of
    that name the app set itself, in any case, is kept as it is, and no second one is added.
    """
    headers = message.get("headers", ())
    if type(headers) is not list:
        headers = [*headers]  # a tuple, or any iterable: read it once, send what was read
    size = len(name)
    for key, _ in headers:
        if len(key) == size and key.lower() == name:
            break
    else:
        return dict(message, headers=[*headers, (name, value)])
    return message if headers is message.get("headers") else dict(message, headers=headers)


async def _lifespan(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """
    Pass the lifespan through; deliver the queued records before shutdown is reported.

    The app's messages and errors reach the server as the app made them. The flush runs in the
    event loop's thread, which holds the shutdown up until the targets have their records (or
    stop making progress). It is the server's last chance: uvicorn raises SIGTERM again once it
    hears the shutdown is complete.
    """

    async def send_flushed(message: Message) -> None:
        if message.get("type") in _SHUTDOWN_DONE:
            flush()
        await send(message)

    await app(scope, receive, send_flushed)


async def _answer_lifespan(receive: Receive, send: Send) -> None:
    """Report startup and shutdown complete for an app without lifespan, flushing at shutdown."""
    while True:
        message = await receive()
        kind = message.get("type")
        if kind == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            flush()
            await send({"type": "lifespan.shutdown.complete"})
            return


def _traceparent(scope: Scope) -> str | None:
    """Return the ``traceparent`` value; two header lines are joined with a comma, as in WSGI."""
    found: bytes | None = None
    for name, value in scope.get("headers") or ():
        if name == b"traceparent":
            found = value if found is None else found + b"," + value
    return None if found is None else found.decode("latin-1")


def _scope_user(scope: Scope) -> str | None:
    return user_name(scope.get("user"))
