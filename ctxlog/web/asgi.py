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

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any, Final, Literal

from ctxlog.context import RequestState, request_var, reset_request, tag_exception
from ctxlog.web.access import write_access
from ctxlog.web.lifespan import answer_lifespan, pass_lifespan
from ctxlog.web.request import RequestFields
from ctxlog.web.settings import Settings
from ctxlog.web.text import text
from ctxlog.web.user import scope_user

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The scope types that are requests; any other is passed through.
_CONNECTIONS: Final = frozenset({"http", "websocket"})
#: The messages that carry the response headers.
_STARTS: Final = frozenset({"http.response.start", "websocket.accept"})


class ASGIMiddleware:
    """
    Capture each request's ip, user, request_id, method and path for the records it logs.

    Args:
        app: The ASGI 3 application to wrap.
        trusted_proxies: Addresses or networks of your reverse proxies (``"10.0.0.0/8"``), or
            ``"*"`` to trust every peer. Empty (the default): the peer address is the client.
        proxy_header: The header your proxies set: ``"X-Forwarded-For"`` (default) or
            ``"Forwarded"`` (RFC 7239). The other one is ignored.
        request_id_header: Where an incoming request id is read, and where the id is echoed in
            the response. A sequence of names is tried in order (``["X-Request-ID",
            "X-Correlation-ID"]``); the first is the one echoed.
        user: A callable given the scope, returning the user's name or ``None``. By default an
            authenticated ``scope["user"]`` (Starlette's ``AuthenticationMiddleware``, also
            when it sits inside this middleware). A ``ctxlog.bind(user=...)`` always wins.
        access_log: Log one line per HTTP request on the ``ctxlog.access`` logger.
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
        answer_lifespan: The app does not speak the ASGI lifespan protocol (Django's
            ``ASGIHandler``): the middleware answers the server's ``lifespan`` events itself,
            flushing the :func:`ctxlog.nonblocking` queues at the shutdown, and never passes
            them to the app. Off (the default): the app gets them, and its answers and errors
            reach the server as the app made them.

    Raises:
        TypeError: ``user``, ``request_id_generator`` or ``request_id_validator`` is not
            callable, or ``answer_lifespan`` or ``echo_request_id`` is not a bool.
        ValueError: An entry of ``trusted_proxies`` is not an address or network, a header
            name is not valid, ``trace_context`` is not ``True``, ``False`` or
            ``"request_id"``, or ``trust_request_id`` is not one of its three values (or is
            ``"proxies"`` with no ``trusted_proxies``).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``trace_context``.
    .. versionchanged:: 0.3.0
       ``answer_lifespan``. A request id header the app sets itself is kept, not followed
       by a second one, and the app's messages are not changed.
    .. versionchanged:: 0.4.0
       ``request_id_generator``, ``request_id_validator``, ``trust_request_id``,
       ``echo_request_id``; ``request_id_header`` may name several headers.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: str | Iterable[str] = (),
        proxy_header: str = "X-Forwarded-For",
        request_id_header: str | Sequence[str] = "X-Request-ID",
        user: Callable[[Scope], Any] | None = None,
        access_log: bool = False,
        log_query: bool = False,
        trace_context: bool | Literal["request_id"] = False,
        request_id_generator: Callable[[], str] | None = None,
        request_id_validator: Callable[[str], bool] | None = None,
        trust_request_id: Literal["any", "proxies", "never"] = "any",
        echo_request_id: bool = True,
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
            request_id_generator=request_id_generator,
            request_id_validator=request_id_validator,
            trust_request_id=trust_request_id,
            echo_request_id=echo_request_id,
        )
        self.fields = RequestFields(self.settings, scope_user)
        names = tuple(name.encode("latin-1") for name in self.settings.request_id_headers)
        #: The request id header when there is one name (the usual case, read inline), else
        #: ``None`` and the names in the order they are tried.
        self._id_name = names[0] if len(names) == 1 else None
        self._id_names = names if len(names) > 1 else None
        self._id_echo = names[0] if self.settings.echo_request_id else None
        header = self.settings.client_ip.header
        self._proxy_name = None if header is None else header.encode("latin-1")
        self._user_given = user is not None
        self._trace = self.settings.trace_context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection: set its context, run the app, echo the id, log access."""
        if scope["type"] not in _CONNECTIONS:
            await self._pass(scope, receive, send)
        elif self.settings.access_log:
            await self._serve_logged(scope, receive, send)
        else:
            # The lean path of most deployments: only the id to echo.
            state = self._start(scope)
            token = request_var.set(state)
            try:
                if self._user_given or "user" in scope:
                    state.current()  # the user, if known already; a failing user= reports here
                await self.app(scope, receive, self._sender(send, state))
            except BaseException as error:
                tag_exception(error, state)
                raise
            finally:
                # reset_request(), inline: this runs for every request.
                try:  # noqa: SIM105 - a plain try is cheaper than contextlib.suppress
                    request_var.reset(token)
                except (ValueError, RuntimeError):
                    pass

    async def _pass(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass a connection that is not a request through; flush the queues at shutdown."""
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
        elif self.answer_lifespan:
            await answer_lifespan(receive, send)
        else:
            await pass_lifespan(self.app, scope, receive, send)

    def _start(self, scope: Scope) -> RequestState:
        """Read the request id and proxy headers, and build the request's holder."""
        id_name = self._id_name
        proxy_name = self._proxy_name
        id_names = self._id_names
        incoming: bytes | None = None
        forwarded: bytes | None = None
        lines: list[bytes] | None = None
        ids: dict[bytes, bytes | None] | None = None
        duplicate = False
        for name, value in scope.get("headers") or ():
            if name == id_name:
                duplicate = incoming is not None
                incoming = value
            elif name == proxy_name:
                if forwarded is None:
                    forwarded = value
                elif lines is None:
                    lines = [forwarded, value]
                else:
                    lines.append(value)  # joined once below: linear in the lines
            elif id_names is not None and name in id_names:
                if ids is None:
                    ids = {}
                ids[name] = None if name in ids else value  # sent twice: None
        if lines is not None:
            forwarded = b",".join(lines)
        if ids is not None:
            incoming = _first_id(ids, id_names)  # type: ignore[arg-type]
            duplicate = False
        client = scope.get("client")
        return self.fields.state(
            scope,
            client[0] if client else None,
            forwarded,
            # A request id sent twice is not the client's to choose: a new one is made.
            None if duplicate else incoming,
            scope.get("method", "GET") if scope["type"] == "http" else "WS",
            scope.get("path") or "/",
            _traceparent(scope) if self._trace else None,
        )

    def _sender(self, send: Send, state: RequestState) -> Send:
        """Return ``send`` adding the request id header to the response's first message."""
        name = self._id_echo
        if name is None:  # echo_request_id=False
            return send
        value = state.fields["request_id"].encode()  # ASCII: checked or made so

        async def send_with_id(message: Message) -> None:
            if message["type"] in _STARTS:
                message = with_header(message, name, value)
            await send(message)

        return send_with_id

    async def _serve_logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection as ``__call__`` does, measuring the response for access."""
        started = time.perf_counter()
        state = self._start(scope)
        token = request_var.set(state)
        response = _Measured(self._sender(send, state))
        try:
            if self._user_given or "user" in scope:
                state.current()
            await self.app(scope, receive, response.send)
        except BaseException as error:
            tag_exception(error, state)
            response.status = response.status or 500
            raise
        finally:
            try:
                if scope["type"] == "http":
                    self._write_access(scope, state, response, started)
            finally:
                reset_request(token)

    def _write_access(
        self, scope: Scope, state: RequestState, response: _Measured, started: float
    ) -> None:
        """Write the access line of an HTTP request, with its context still set."""
        user_agent = referer = b""
        for name, value in scope.get("headers") or ():
            if name == b"user-agent":
                user_agent = value
            elif name == b"referer":
                referer = value
        write_access(
            log_query=self.settings.log_query,
            method=state.fields["method"],
            path=state.fields["path"],
            query=text(scope.get("query_string", b"")),
            protocol="HTTP/" + str(scope.get("http_version", "1.1")),
            status=response.status or 500,
            size=response.size,
            duration_ms=((response.finished or time.perf_counter()) - started) * 1000.0,
            referer=text(referer),
            user_agent=text(user_agent),
        )


class _Measured:
    """Pass the app's messages on, noting the status, the body size and when it ended."""

    __slots__ = ("finished", "send_on", "size", "status")

    def __init__(self, send_on: Send) -> None:
        self.send_on = send_on
        self.status = 0
        self.size = 0
        self.finished = 0.0

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind in _STARTS:
            self.status = message.get("status", 101)
        elif kind == "http.response.body":
            self.size += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.finished = time.perf_counter()
        await self.send_on(message)


def with_header(message: Message, name: bytes, value: bytes) -> Message:
    """
    Return ``message`` with the header ``name: value`` added, as a new message.

    The app's message is never changed: it may keep it, or send the same one again. A header of
    that name the app set itself, in any case, is kept as it is, and no second one is added.
    """
    headers = message.get("headers", ())
    if type(headers) is not list:
        headers = [*headers]  # a tuple, or any iterable: read it once, send what was read
    size = len(name)
    for key, _ in headers:
        if len(key) == size and key.lower() == name:
            return message if headers is message.get("headers") else {**message, "headers": headers}
    message = dict(message)  # cheaper than {**message, ...}
    message["headers"] = [*headers, (name, value)]
    return message


def _traceparent(scope: Scope) -> str | None:
    """Return the ``traceparent`` value; two header lines are joined with a comma, as in WSGI."""
    found: bytes | None = None
    for name, value in scope.get("headers") or ():
        if name == b"traceparent":
            found = value if found is None else found + b"," + value
    return None if found is None else found.decode("latin-1")


def _first_id(ids: dict[bytes, bytes | None], names: tuple[bytes, ...]) -> bytes | None:
    """Return the value of the first of ``names`` the request sent (``None`` if sent twice)."""
    for name in names:
        if name in ids:
            return ids[name]
    return None
