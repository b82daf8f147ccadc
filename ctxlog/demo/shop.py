"""
The demo's shop, its server and its customers: a plain WSGI app behind ctxlog's middleware.

:func:`shop` is the app: a catalogue, a payment that a declined card fails (an ERROR record,
e-mailed) and a receipt streamed after the view has returned. :func:`serve` runs it behind
:class:`ctxlog.WSGIMiddleware` on ``wsgiref`` with one thread per request, trusting the proxy
on 127.0.0.1. :func:`visit_shop` plays that proxy and a customer at once: it appends the customer's
address to ``X-Forwarded-For`` and logs in with Basic authentication.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import ctxlog

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["DECLINED", "USERS", "Result", "ShopServer", "Visit", "serve", "shop", "visit_shop"]

#: user -> (password, the address the proxy saw them come from)
USERS: Final = {
    "alice": ("wonderland", "203.0.113.7"),
    "bob": ("builder", "198.51.100.23"),
    "carol": ("singer", "2001:db8::c0:1"),
}
DECLINED: Final = "/pay?card=declined"

log = ctxlog.get_logger("demo.shop")


def _authenticate(environ: WSGIEnvironment) -> str | None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    known = USERS.get(name)
    return name if known is not None and known[0] == password else None


def shop(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Serve the demo shop: a catalogue, a payment (which a declined card fails) and a receipt."""
    user = _authenticate(environ)
    if user is not None:
        ctxlog.bind(user=user)  # after authentication, as a view would
    path = environ.get("PATH_INFO", "/")
    # The raw path, as a view might log it: ctxlog.Formatter escapes it in the line.
    log.info("looking at %s", path)
    if path == "/pay":
        if user is None:
            log.warning("refused: payment without login")
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"log in first\n"]
        card = parse_qs(environ.get("QUERY_STRING", "")).get("card", [""])[0]
        if card == "declined":
            log.error("payment of %s EUR failed: card declined", 42)  # e-mailed
            start_response("402 Payment Required", [("Content-Type", "text/plain")])
            return [b"card declined\n"]
        ctxlog.bind(basket="3 items")
        log.info("paid %s EUR", 42)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _receipt()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"welcome\n"]


def _receipt() -> Iterator[bytes]:
    # Runs while the server sends the body, after shop() has returned: the context is still there.
    log.info("streaming the receipt")
    yield b"receipt line 1\n"
    yield b"receipt line 2\n"


class ShopServer(ThreadingMixIn, WSGIServer):
    """wsgiref with a thread per request, which can wait until no request is in progress."""

    daemon_threads = False  # server_close() waits for them

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy = 0
        self._idle = threading.Condition()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Count the request in, then serve it in a thread of its own."""
        with self._idle:
            self._busy += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one request (the access line is logged when its response is closed)."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every request has been served to the end, access line included."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)


class _QuietHandler(WSGIRequestHandler):
    timeout = 30  # seconds a client may take to send its request

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Stay quiet: the access log comes from ctxlog."""


def serve(stack: contextlib.ExitStack) -> ShopServer:
    """Serve the shop behind ctxlog's middleware on a free port; ``stack`` stops it."""
    app = ctxlog.WSGIMiddleware(shop, trusted_proxies=["127.0.0.1", "::1"], access_log=True)
    server = make_server("127.0.0.1", 0, app, server_class=ShopServer, handler_class=_QuietHandler)
    stack.callback(server.server_close)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="ctxlog-demo-shop", daemon=True
    )
    thread.start()
    stack.callback(thread.join)
    stack.callback(server.shutdown)
    return server


@dataclass(frozen=True)
class Visit:
    """One customer's request: who (``None``: a stranger), what, and from which address."""

    user: str | None
    path: str
    forwarded_for: str


@dataclass(frozen=True)
class Result:
    """What a visit got: the status, the request id echoed, the seconds the client waited."""

    status: int
    request_id: str
    seconds: float


def visit_shop(port: int, visit: Visit) -> Result:
    """Make ``visit`` to the shop on ``port``, through the proxy; return what it got."""
    headers = {"X-Forwarded-For": visit.forwarded_for, "User-Agent": "ctxlog-demo/1"}
    if visit.user is not None:
        token = base64.b64encode(f"{visit.user}:{USERS[visit.user][0]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", visit.path, headers=headers)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    return Result(response.status, response.getheader("X-Request-ID") or "-", seconds)
