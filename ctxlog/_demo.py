"""
``ctxlog demo``: a small shop served on 127.0.0.1, visited by several users through a proxy.

Standard library only: the app is a plain WSGI app behind :class:`ctxlog.WSGIMiddleware`, served
by ``wsgiref`` with one thread per request; the client plays a reverse proxy on 127.0.0.1 that
appends each user's address to ``X-Forwarded-For``. Every line the app logs is printed with the
fields ctxlog added.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import logging
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from socketserver import ThreadingMixIn
from typing import IO, TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import ctxlog

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["run"]

FORMAT = (
    "%(asctime)s %(ip)-15s %(user)-6s %(request_id).12s %(levelname)-7s %(name)-13s %(message)s"
)

#: user -> (password, the address the proxy saw them come from)
USERS = {
    "alice": ("wonderland", "203.0.113.7"),
    "bob": ("builder", "198.51.100.23"),
    "carol": ("singer", "2001:db8::c0:1"),
}

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
    """Serve the demo shop: a catalogue, a basket and a streamed receipt."""
    user = _authenticate(environ)
    if user is not None:
        ctxlog.bind(user=user)  # after authentication, as a view would
    path = environ.get("PATH_INFO", "/")
    log.info("looking at %s", ctxlog.get_context()["path"])  # the escaped path
    if path == "/pay":
        if user is None:
            log.warning("refused: payment without login")
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"log in first\n"]
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


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Stay quiet: the access log comes from ctxlog."""


def _visit(port: int, user: str | None, path: str, forwarded_for: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"X-Forwarded-For": forwarded_for, "User-Agent": "ctxlog-demo/1"}
    if user is not None:
        token = base64.b64encode(f"{user}:{USERS[user][0]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("X-Request-ID") or "-"
    finally:
        connection.close()


def run(out: IO[str] | None = None) -> int:
    """Serve the shop, send a burst of requests from several users, print what was logged."""
    out = out or sys.stdout
    handler = logging.StreamHandler(out)
    handler.addFilter(ctxlog.ContextFilter())
    handler.setFormatter(logging.Formatter(FORMAT, "%H:%M:%S"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    app = ctxlog.WSGIMiddleware(shop, trusted_proxies=["127.0.0.1", "::1"], access_log=True)
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_QuietHandler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="demo-server", daemon=True)
    thread.start()
    visits: list[tuple[str | None, str, str]] = [
        (name, path, USERS[name][1]) for name in USERS for path in ("/", "/pay")
    ]
    visits += [
        (None, "/pay", "192.0.2.99"),
        # A client that claims to be 10.0.0.1: the proxy appends the real address, which wins.
        (None, "/", "10.0.0.1, 192.0.2.44"),
        # A path that tries to forge a second log line: it is escaped.
        (None, "/search%0d%0a2024-01-01%20admin%20logged%20in", "192.0.2.45"),
    ]
    try:
        print(
            f"ctxlog demo: serving on http://127.0.0.1:{port}, trusting the proxy at 127.0.0.1",
            file=out,
        )
        print(f"format: {FORMAT}\n", file=out)
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda visit: _visit(port, *visit), visits))
        handler.flush()
        print(
            f"\n{len(results)} requests, statuses {sorted({s for s, _ in results})}; "
            "each response echoed its X-Request-ID.",
            file=out,
        )
    finally:
        server.shutdown()
        server.server_close()
        root.removeHandler(handler)
        root.setLevel(old_level)
    return 0
