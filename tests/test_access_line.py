"""
The access line read column by column by an anchored pattern, whatever the request held.

Requests go through real servers on 127.0.0.1: wsgiref (which passes a method such as ``GET"``
through to the app) in a thread, and uvicorn with h11 in a process of its own. The pattern is the one docs/access-log.md documents.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

import ctxlog
from ctxlog.web.access import referer_field


def _documented_pattern() -> re.Pattern[str]:
    """The ACCESS pattern of docs/access-log.md, run from the page: the tests use that one."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "access-log.md").read_text("utf-8")
    code = page.split("### Reading it by column", 1)[1].split("```python\n", 1)[1].split("```")[0]
    names: dict[str, Any] = {}
    exec(code, names)  # noqa: S102 - our own documentation
    pattern: re.Pattern[str] = names["ACCESS"]
    return pattern


#: The combined-style access line, anchored at both ends, as docs/access-log.md documents it.
ACCESS = _documented_pattern()
SHORT = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\", '"': '"'}
_ESCAPE = re.compile(r'\\(?:([tnr\\"])|x([0-9a-f]{2})|u([0-9a-f]{4}))')
WAIT = 10.0
ROOT = Path(__file__).resolve().parents[1]
USER = 'alice "the admin" smith'
AGENT = 'agent "1" \\ x'
REFERER = "https://alice:PASSWORD@shop.example:8443/cart?token=SECRET#access_token=FRAGMENT"


def unescape(text: str) -> str:
    """Undo the line's escapes; a backslash that starts none fails the test."""
    out = []
    pos = 0
    for match in _ESCAPE.finditer(text):
        assert "\\" not in text[pos : match.start()], f"stray backslash in {text!r}"
        out += [
            text[pos : match.start()],
            SHORT[match[1]] if match[1] else chr(int(match[2] or match[3], 16)),
        ]
        pos = match.end()
    assert "\\" not in text[pos:], f"stray backslash in {text!r}"
    return "".join([*out, text[pos:]])


def columns(line: str) -> dict[str, str]:
    """The line's columns, unescaped; the test fails if the anchored pattern does not match."""
    match = ACCESS.match(line)
    assert match is not None, line
    return {name: unescape(value) for name, value in match.groupdict().items()}


def wait_for_access(capture: Any, count: int) -> list[logging.LogRecord]:
    """The access records, once ``count`` have been written (after the response was sent)."""
    deadline = time.monotonic() + WAIT
    while len(capture.named("ctxlog.access")) < count:
        assert time.monotonic() < deadline, capture.messages()
        time.sleep(0.005)
    return capture.named("ctxlog.access")


def raw_request(port: int, data: bytes) -> bytes:
    """Send ``data`` as it is and return the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def request(port: int, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


# --- a real wsgiref server ----------------------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    user = environ.get("HTTP_X_USER")
    if user:
        ctxlog.bind(user=user.encode("latin-1").decode("utf-8"))
    start_response("404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK", [])
    return [b"ok"]


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def wsgiref_server() -> Iterator[Callable[..., int]]:
    """Start wsgiref on 127.0.0.1 serving ``wsgi_app`` behind the middleware; return its port."""
    servers = []

    def start(**options: Any) -> int:
        server = make_server(
            "127.0.0.1", 0, ctxlog.WSGIMiddleware(wsgi_app, **options), handler_class=_Quiet
        )
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        servers.append((server, thread))
        return server.server_address[1]

    yield start
    for server, thread in servers:
        server.shutdown()
        thread.join(WAIT)
        server.server_close()


def test_wsgiref_method_with_a_quote_cannot_shift_the_columns(capture, wsgiref_server):
    """'GET" /missing HTTP/1.0' sent raw to wsgiref: the parser reads method GET", /missing, 404."""
    port = wsgiref_server(access_log=True)

    assert raw_request(port, b'GET" /missing HTTP/1.0\r\n\r\n').startswith(b"HTTP/1.0 404")

    (record,) = wait_for_access(capture, 1)
    line = record.getMessage()
    got = columns(line)
    assert ('GET"', "/missing", "HTTP/1.0", "404", "-") == (
        got["method"],
        got["target"],
        got["protocol"],
        got["status"],
        got["user"],
    )


def test_wsgiref_hostile_user_path_query_referer_and_agent_read_back_exactly(
    capture, wsgiref_server
):
    """A bound user with spaces and quotes, a path with a quote: every column reads what was sent."""
    port = wsgiref_server(access_log=True, log_query=True)
    path = '/a" b HTTP/1.1" 200 - "x" "y" 1.0ms'
    encoded = path.replace(" ", "%20").replace('"', "%22") + "%0aFORGED\\"

    request(port, encoded + '?q="x"', {"X-User": USER, "Referer": REFERER, "User-Agent": AGENT})
    raw_request(port, b'GET /q?a="b\\ HTTP/1.0\r\nX-User: bob\tsmith\r\n\r\n')

    first, second = wait_for_access(capture, 2)
    got = columns(first.getMessage())
    assert USER == got["user"]
    assert ("GET", f'{path}\nFORGED\\?q="x"', "200") == (
        got["method"],
        got["target"],
        got["status"],
    )
    assert "https://shop.example:8443/cart?token=SECRET" == got["referer"]
    assert AGENT == got["user_agent"]
    got = columns(second.getMessage())
    assert ("bob\tsmith", "GET", '/q?a="b\\') == (got["user"], got["method"], got["target"])


def test_request_id_with_a_literal_backslash_n_is_replaced(capture, wsgiref_server):
    r"""X-Request-ID: r1\nFORGED (a backslash and an n) is refused: a new id is made and echoed."""
    port = wsgiref_server(access_log=True)

    response = request(port, "/", {"X-Request-ID": "r1\\nFORGED"})

    (record,) = wait_for_access(capture, 1)
    new_id = response.getheader("X-Request-ID")
    assert re.fullmatch("[0-9a-f]{32}", new_id or ""), new_id
    assert new_id == record.request_id
    assert [] == [line for line in capture.lines if "r1\\nFORGED" in line]


# --- a real uvicorn server, in a process of its own ---------------------------------------------

#: The app uvicorn serves: binds the user a header names, answers 200; the access line is written
#: by ctxlog.Formatter("%(request_id)s %(message)s") to the file named by $ACCESS_LOG.
UVICORN_APP = """
import logging
import os

import ctxlog

handler = logging.FileHandler(os.environ["ACCESS_LOG"], encoding="utf-8")
handler.setFormatter(ctxlog.Formatter("%(request_id)s %(message)s"))
access = logging.getLogger("ctxlog.access")
access.addHandler(handler)
access.setLevel(logging.INFO)
access.propagate = False


async def bare(scope, receive, send):
    for name, value in scope["headers"]:
        if name == b"x-user":
            ctxlog.bind(user=value.decode("utf-8"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


app = ctxlog.ASGIMiddleware(bare, access_log=True)
"""


@pytest.fixture
def uvicorn_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Run uvicorn (h11) on a socket bound here; yield its port and the access log's path."""
    (tmp_path / "access_app.py").write_text(UVICORN_APP, encoding="utf-8")
    log_path = tmp_path / "access.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCESS_LOG": str(log_path)}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "access_app:app",
                "--fd",
                str(sock.fileno()),
                "--http",
                "h11",
                "--lifespan",
                "off",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=tmp_path,
            env=env,
            pass_fds=[sock.fileno()],
            stdin=subprocess.DEVNULL,
        )
        try:
            yield sock.getsockname()[1], log_path
        finally:
            process.terminate()
            process.wait(WAIT)


def test_uvicorn_hostile_user_path_referer_and_agent_read_back_exactly(uvicorn_server):
    """Under uvicorn the same pattern reads the bound user, the path and the cleaned referer."""
    port, log_path = uvicorn_server
    path = '/a" b HTTP/1.1" 200 - "x"'

    request(
        port,
        path.replace(" ", "%20").replace('"', "%22") + "%1b[2J?token=SECRET",
        {"X-User": USER, "Referer": REFERER, "User-Agent": AGENT, "X-Request-ID": "r1\\nFORGED"},
    )

    deadline = time.monotonic() + WAIT
    while not (log_path.exists() and log_path.read_bytes().endswith(b"ms\n")):
        assert time.monotonic() < deadline, "no access line"
        time.sleep(0.01)
    (line,) = log_path.read_text(encoding="utf-8").splitlines()
    request_id, _, message = line.partition(" ")
    got = columns(message)
    assert (USER, "GET", f"{path}\x1b[2J", "HTTP/1.1", "200", "2") == (
        got["user"],
        got["method"],
        got["target"],
        got["protocol"],
        got["status"],
        got["size"],
    )
    assert ("https://shop.example:8443/cart", AGENT) == (got["referer"], got["user_agent"])
    assert "SECRET" not in line and "PASSWORD" not in line
    assert re.fullmatch("[0-9a-f]{32}", request_id)


# --- the referer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("referer", "default", "with_query"),
    [
        ("https://shop.example/cart", "https://shop.example/cart", "https://shop.example/cart"),
        (
            "https://shop.example:8443/c?x=1#f",
            "https://shop.example:8443/c",
            "https://shop.example:8443/c?x=1",
        ),
        ("https://alice:PASSWORD@shop.example/", "https://shop.example/", "https://shop.example/"),
        ("https://alice@shop.example", "https://shop.example", "https://shop.example"),
        ("https://a:p@ss@shop.example/x", "https://shop.example/x", "https://shop.example/x"),
        ("HTTPS:alice:PASSWORD@shop.example/x", "HTTPS://shop.example/x", "HTTPS://shop.example/x"),
        ("https:///alice:PASSWORD@shop.example", "https://shop.example", "https://shop.example"),
        (
            "https:\\\\alice:PASSWORD@shop.example\\x",
            "https://shop.example\\x",
            "https://shop.example\\x",
        ),
        (
            " \thttps://alice:PASSWORD@shop.example/",
            "https://shop.example/",
            "https://shop.example/",
        ),
        (
            "ht\ttps://alice:PASS\nWORD@shop.example/",
            "https://shop.example/",
            "https://shop.example/",
        ),
        ("//alice:PASSWORD@shop.example/p", "//shop.example/p", "//shop.example/p"),
        ("https://alice:PASS/WORD@shop.example/", "-", "-"),
        ("https://alice:PASS?WORD@shop.example/", "-", "-"),
        ("https://alice:PASS#WORD@shop.example/", "-", "-"),
        (
            "https://[2001:db8::1]:8443/p?q#f",
            "https://[2001:db8::1]:8443/p",
            "https://[2001:db8::1]:8443/p?q",
        ),
        (
            "https://shop.example/#access_token=SECRET",
            "https://shop.example/",
            "https://shop.example/",
        ),
        (
            "android-app://com.example.app/",
            "android-app://com.example.app/",
            "android-app://com.example.app/",
        ),
        ("mailto:alice:PASSWORD@example.com", "mailto:example.com", "mailto:example.com"),
        ("/relative/path?x=1#y", "/relative/path", "/relative/path?x=1"),
        ("\xff\xfe", "\xff\xfe", "\xff\xfe"),
    ],
)
def test_referer_never_keeps_userinfo_or_fragment(referer, default, with_query):
    """By default scheme://host[:port]/path; log_query keeps the query; never userinfo or fragment."""
    assert default == referer_field(referer, keep_query=False)
    assert with_query == referer_field(referer, keep_query=True)


def test_referer_on_the_record_and_in_the_line_are_the_same(capture, wsgiref_server):
    """The record's referer attribute is what the line shows: no password in either."""
    port = wsgiref_server(access_log=True)

    request(port, "/", {"Referer": REFERER})

    (record,) = wait_for_access(capture, 1)
    assert (
        "https://shop.example:8443/cart"
        == record.referer
        == columns(record.getMessage())["referer"]
    )
