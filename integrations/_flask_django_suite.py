"""
The checks every Flask and Django pairing runs: Flask under gunicorn (sync and gthread workers)
and waitress, Django under gunicorn (WSGI) and uvicorn (ASGI).

A pairing's test module makes a :class:`Pairing` and calls one function of this module per
test. The apps are ``apps/flask_shop.py`` and the project ``apps/django_shop/``, with the same
routes; what they log is in the JSON-lines file of the ``applog`` fixture, read after the server
has stopped. Neither framework has websockets of its own (Django needs Channels, Flask an
extension), so the streaming checks are about streamed bodies only.
"""

from __future__ import annotations

import concurrent.futures
import functools
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _harness
from _harness import (
    ACCESS,
    APPS,
    GRACEFUL_TIMEOUT,
    INTEGRATIONS,
    KEEP_ALIVE,
    PROXY_IP,
    SPOOFED_IP,
    VIEW,
    AppLog,
    Reply,
    Visitor,
    check_records,
    drive,
    no_traceback_outside_requests,
    python,
    visitors,
    wait_closed,
    wait_until,
)
from _harness import messages as _messages
from _harness import records_of as _of

#: Another loopback address: a peer that is not among the apps' trusted proxies (127.0.0.1).
UNTRUSTED_IP = "127.0.0.2"
#: The routes that raise, per framework (Django: a sync and an async view).
BOOM = {"flask": ("/boom",), "django": ("/boom", "/aboom")}
#: The streamed routes, per framework (Django: a sync and an async iterator).
STREAMS = {"flask": ("/stream",), "django": ("/stream", "/astream")}
#: How each framework logs a view's exception: its logger, and the message for ``path``.
FRAMEWORK_ERROR = {
    "flask": ("flask_shop", "Exception on {path} [GET]"),
    "django": ("django.request", "Internal Server Error: {path}"),
}
#: Where each server logs an exception that escaped the app (a failing streamed body).
SERVER_ERROR = {
    "gunicorn": ("gunicorn.error", "Error handling request"),
    "waitress": ("waitress", "Exception while serving /stream-boom"),
    "uvicorn": ("uvicorn.error", "Exception in ASGI application"),
}
#: Starts of what each server logs outside any request.
OUTSIDE = {
    "gunicorn": ("Starting gunicorn", "Listening at", "Booting worker", "Worker exiting"),
    "waitress": ("Serving on",),
    "uvicorn": ("Started server process", "Uvicorn running on", "Shutting down"),
}


@dataclass(frozen=True)
class Pairing(_harness.Pairing):
    """The Flask app or the Django project under a server (gunicorn: with a worker class)."""

    framework: str
    server: str
    tag: str
    worker: str = ""
    #: waitress only: waitress, not ctxlog, reads X-Forwarded-For from the trusted proxy.
    server_trusts: bool = False

    @property
    def server_access(self) -> tuple[str, ...]:
        """The server's access logger, where it logs inside the request (uvicorn only)."""
        # gunicorn logs gunicorn.access after the response, outside the request: see
        # gunicorn_access_lines. waitress has no access log.
        return ("uvicorn.access",) if self.server == "uvicorn" else ()

    def modules(self) -> tuple[str, ...]:
        """Return the framework and the server."""
        return (self.framework, self.server)

    def command(self, port: int, applog: AppLog, pause: float) -> list[str]:
        """Return the server's command line, as a user would type it."""
        bind = f"127.0.0.1:{port}"
        if self.server == "gunicorn":
            app = "flask_shop:app" if self.framework == "flask" else "django_shop.wsgi:application"
            threads = ["--threads", "4"] if self.worker == "gthread" else []
            return python(
                "-m", "gunicorn", "-c", str(APPS / "gunicorn_conf.py"), "--bind", bind,
                "--worker-class", self.worker, *threads, app,
            )  # fmt: skip
        if self.server == "waitress":
            trust = [f"--trusted-proxy={PROXY_IP}"] if self.server_trusts else []
            return python(
                str(APPS / "waitress_serve.py"), "flask_shop:app", f"--listen={bind}", *trust
            )
        return python(
            "-m", "uvicorn", "django_shop.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--log-config", str(applog.config(pause=pause)),
            # ctxlog reads X-Forwarded-For itself, from the proxies the app trusts.
            "--no-proxy-headers",
            "--timeout-keep-alive", KEEP_ALIVE, "--timeout-graceful-shutdown", GRACEFUL_TIMEOUT,
        )  # fmt: skip

    def environment(self, applog: AppLog, pause: float) -> dict[str, str]:
        """Return the log's variables, and for Django a copy of the project's database."""
        env = applog.env(pause=pause)
        if self.server_trusts:
            env["CTXLOG_INTEGRATION_TRUSTED"] = ""  # ctxlog trusts no proxy: waitress decided
        if self.framework == "django":
            database = applog.directory / "django_shop.sqlite3"
            shutil.copyfile(_django_database(), database)
            env["CTXLOG_DJANGO_DB"] = str(database)
        return env


#: The Django database's directory, kept (and removed at exit) with the object that made it.
_KEEP: list[tempfile.TemporaryDirectory[str]] = []


@functools.cache
def _django_database() -> Path:
    """Create the Django project's database once per test run; each server gets a copy."""
    directory = tempfile.TemporaryDirectory(prefix="ctxlog-django-shop-")
    _KEEP.append(directory)  # removed when the test run ends
    path = Path(directory.name) / "template.sqlite3"
    paths = os.pathsep.join([str(APPS), str(INTEGRATIONS)])
    subprocess.run(
        python("-m", "django_shop.prepare"),
        cwd=APPS,
        env={**os.environ, "PYTHONPATH": paths, "CTXLOG_DJANGO_DB": str(path)},
        check=True,
        timeout=120,
    )
    return path


def request_from(source: str, url: str, path: str, headers: dict[str, str]) -> Reply:
    """Send one GET from the local address ``source`` (a loopback address) and return the reply."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(source, 0))
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        try:
            body = response.read()
        except http.client.IncompleteRead as cut:  # the server gave up mid-body
            body = cut.partial
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Reply(None, response.status, headers, body)
    finally:
        connection.close()


def _gunicorn_access_lines(records: list[dict[str, Any]], request_ids: list[str]) -> None:
    """gunicorn's own access line names each request's id in its message (by its format)."""
    lines = [r["message"] for r in records if r["name"] == "gunicorn.access"]
    named = [line.rpartition(" request_id=")[2] for line in lines if " /health " not in line]
    assert sorted(request_ids) == sorted(named), lines[:5]


def concurrent_visitors(pairing: Pairing, applog: AppLog) -> None:
    """200 visitors at once, each followed by a request without any header."""
    visits = visitors(200, pairing.tag)
    django = pairing.framework == "django"
    framework_logger = FRAMEWORK_ERROR[pairing.framework][0]

    def path(visitor: Visitor | None) -> str:
        if visitor is None or not django:
            return "/view"
        # Django logs on its own logger only for 4xx and 5xx: a third of the visitors ask for
        # a page that does not exist, the anonymous requests get 401 from /view.
        return ("/no-such-page", "/view", "/aview")[visitor.seq % 3]

    with pairing.start(applog) as server:
        replies = drive(server.url, visits, path=path, concurrency=50)
        assert pairing.stopped == server.stop(), server.output()

    anonymous = []
    for reply in replies:
        if reply.visitor is None:
            assert reply.request_id is not None
            anonymous.append(reply.request_id)
            if django:
                assert (401, b"login required\n") == (reply.status, reply.body), reply
            else:
                assert 200 == reply.status, reply
                expected = {"ip": PROXY_IP, "user": "-", "request_id": reply.request_id}
                assert expected == json.loads(reply.body), reply
            continue
        v = reply.visitor
        assert v.request_id == reply.request_id, reply
        if path(v) == "/no-such-page":
            assert 404 == reply.status, reply
        else:
            assert 200 == reply.status, reply
            expected = {"ip": v.ip, "user": v.user, "request_id": v.request_id}
            assert expected == json.loads(reply.body), reply

    records = applog.records()
    named = [ACCESS, *pairing.server_access]
    checked = check_records(
        records,
        visits,
        required_names=named if django else [VIEW, framework_logger, *named],
        anonymous_names=[VIEW, framework_logger, *named],
        replies=replies,
        outside=OUTSIDE[pairing.server],
    )
    assert checked.outside, "no record outside a request (the start-up lines)"
    for v in visits:
        mine = checked.by_visitor[v.request_id]
        if not django:
            assert [f"view for {v.user}"] == _messages(records, v.request_id), mine
        elif path(v) == "/no-such-page":
            (line,) = _of(records, v.request_id, "django.request")
            assert ("WARNING", "Not Found: /no-such-page") == (line["level"], line["message"]), line
        elif path(v) == "/view":
            assert [f"view for {v.user}"] == _messages(records, v.request_id), mine
        else:
            expected = ["async view done", f"async view for {v.user}"]
            assert expected == _messages(records, v.request_id), mine
        (line,) = _of(records, v.request_id, ACCESS)
        assert ("GET", path(v)) == (line["method"], line["path"]), line
        assert {("GET", path(v))} == {(r["method"], r["path"]) for r in mine}, mine
    for request_id in anonymous:
        (line,) = _of(records, request_id, ACCESS)
        assert (401 if django else 200) == line["status"], line
    if pairing.server == "gunicorn":
        _gunicorn_access_lines(records, [v.request_id for v in visits] + anonymous)


def untrusted_peer(pairing: Pairing, applog: AppLog) -> None:
    """From 127.0.0.2, not a trusted proxy, X-Forwarded-For changes nothing; from 127.0.0.1 it counts."""
    forged = visitors(10, pairing.tag + "u")
    trusted = visitors(3, pairing.tag + "c", start=100)
    bare = {"X-Forwarded-For": SPOOFED_IP}
    with pairing.start(applog) as server:
        replies = [request_from(UNTRUSTED_IP, server.url, "/view", v.headers()) for v in forged]
        controls = [request_from(PROXY_IP, server.url, "/view", v.headers()) for v in trusted]
        spoofed = request_from(UNTRUSTED_IP, server.url, "/view", bare)
        assert pairing.stopped == server.stop(), server.output()

    for v, reply in zip(forged, replies, strict=True):
        assert 200 == reply.status, reply
        expected = {"ip": UNTRUSTED_IP, "user": v.user, "request_id": v.request_id}
        assert expected == json.loads(reply.body), reply
    for v, reply in zip(trusted, controls, strict=True):
        assert 200 == reply.status, reply
        expected = {"ip": v.ip, "user": v.user, "request_id": v.request_id}
        assert expected == json.loads(reply.body), reply
    assert spoofed.request_id is not None, spoofed

    records = applog.records()
    named = [VIEW, ACCESS, *pairing.server_access]
    check_records(records, trusted, required_names=named)
    believed = {SPOOFED_IP} | {v.ip for v in forged}
    believing = [r for r in records if r["ip"] in believed]
    assert [] == believing[:3], f"{len(believing)} records believed X-Forwarded-For"
    for v in forged:
        mine = [r for r in records if r["request_id"] == v.request_id]
        assert set(named) <= {r["name"] for r in mine}, mine
        assert {(UNTRUSTED_IP, v.user)} == {(r["ip"], r["user"]) for r in mine}, mine
    anonymous = [r for r in records if r["request_id"] == spoofed.request_id]
    assert set(named) <= {r["name"] for r in anonymous}, anonymous
    assert {UNTRUSTED_IP} == {r["ip"] for r in anonymous}, anonymous


def exception_in_view(pairing: Pairing, applog: AppLog) -> None:
    """A view raises: the framework's traceback and the 500 name the request; the next is clean."""
    visits = visitors(20, pairing.tag + "e")
    routes = BOOM[pairing.framework]
    logger, message = FRAMEWORK_ERROR[pairing.framework]

    def path(visitor: Visitor | None) -> str:
        return "/view" if visitor is None else routes[visitor.seq % len(routes)]

    with pairing.start(applog) as server:
        replies = drive(server.url, visits, path=path, concurrency=10)
        assert pairing.stopped == server.stop(), server.output()

    anonymous = []
    for reply in replies:
        if reply.visitor is None:
            assert reply.status in {200, 401}, reply
            assert reply.request_id is not None
            anonymous.append(reply.request_id)
        else:
            assert 500 == reply.status, reply
            assert reply.visitor.request_id == reply.request_id, reply.headers

    records = applog.records()
    named = [ACCESS, *pairing.server_access]
    check_records(
        records,
        visits,
        required_names=[VIEW, logger, *named],
        anonymous=anonymous,
        anonymous_names=[VIEW, *named],
        replies=replies,
        outside=OUTSIDE[pairing.server],
    )
    for v in visits:
        assert ["about to fail"] == _messages(records, v.request_id), v
        (error,) = _of(records, v.request_id, logger)
        expected = ("ERROR", message.format(path=path(v)))
        assert expected == (error["level"], error["message"]), error
        assert error["exc_text"].startswith("Traceback (most recent call last):"), error
        assert error["exc_text"].endswith("RuntimeError: the view failed"), error
        (line,) = _of(records, v.request_id, ACCESS)
        assert 500 == line["status"], line
    no_traceback_outside_requests(records)


def exception_in_stream(pairing: Pairing, applog: AppLog) -> None:
    """A streamed body fails after its first chunk: the server's own traceback names the request."""
    visits = visitors(10, pairing.tag + "x")
    logger, message = SERVER_ERROR[pairing.server]

    def visit(url: str, visitor: Visitor) -> tuple[Reply, Reply]:
        failed = request_from(PROXY_IP, url, "/stream-boom", visitor.headers())
        after = request_from(PROXY_IP, url, "/view", {})  # the next request is clean
        return failed, after

    with pairing.start(applog) as server:
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            pairs = list(pool.map(functools.partial(visit, server.url), visits))
        assert pairing.stopped == server.stop(), server.output()

    # Django under ASGI reads a sync iterator whole before it sends any of it.
    sent = b"" if pairing.server == "uvicorn" else b"chunk 0\n"
    anonymous = []
    for v, (failed, after) in zip(visits, pairs, strict=True):
        # The headers (with the request id) went out; then the body broke.
        assert (200, v.request_id) == (failed.status, failed.request_id), failed
        assert sent == failed.body, failed
        assert after.request_id is not None
        anonymous.append(after.request_id)

    records = applog.records()
    check_records(
        records,
        visits,
        required_names=[VIEW, logger, ACCESS, *pairing.server_access],
        anonymous=anonymous,
        anonymous_names=[VIEW, ACCESS, *pairing.server_access],
        outside=OUTSIDE[pairing.server],
    )
    for v in visits:
        assert ["chunk 0"] == _messages(records, v.request_id), v
        (error,) = _of(records, v.request_id, logger)
        assert ("ERROR", message) == (error["level"], error["message"].rstrip("\n")), error
        # Django 6 under ASGI runs the response in a TaskGroup: an ExceptionGroup around it.
        assert "Traceback (most recent call last):" in error["exc_text"], error
        assert "RuntimeError: the stream failed" in error["exc_text"], error
        assert ("GET", "/stream-boom") == (error["method"], error["path"]), error
    no_traceback_outside_requests(records)


def streaming(pairing: Pairing, applog: AppLog) -> None:
    """Every chunk of a streamed body, sent after the view returned, logs with its request."""
    visits = visitors(30, pairing.tag + "s")
    routes = STREAMS[pairing.framework]

    def path(visitor: Visitor | None) -> str:
        assert visitor is not None
        return routes[visitor.seq % len(routes)]

    with pairing.start(applog) as server:
        replies = drive(server.url, visits, path=path, concurrency=10, anonymous=False)
        assert pairing.stopped == server.stop(), server.output()

    for reply in replies:
        assert reply.visitor is not None
        assert (200, reply.visitor.request_id) == (reply.status, reply.request_id), reply
        assert b"chunk 0\nchunk 1\nchunk 2\n" == reply.body, reply
    records = applog.records()
    check_records(records, visits, required_names=[VIEW, ACCESS, *pairing.server_access])
    for v in visits:
        expected = ["chunk 0", "chunk 1", "chunk 2", "stream done"]
        assert expected == _messages(records, v.request_id), v
        (line,) = _of(records, v.request_id, ACCESS)
        assert (path(v), 200, 24) == (line["path"], line["status"], _size(line)), line


def _size(line: dict[str, Any]) -> int:
    """Return the body size an access line reports (its message: ``... STATUS SIZE ...``)."""
    status = str(line["status"])
    after = line["message"].partition(f'" {status} ')[2]
    return int(after.split(" ", 1)[0])


def graceful_shutdown(pairing: Pairing, applog: AppLog) -> None:
    """SIGTERM while records wait behind a held destination and a request runs: none is lost."""
    slow, burster = visitors(2, pairing.tag + "t")
    count = 300
    with pairing.start(applog, pause=0.01) as server:
        running = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            running.request("GET", "/slow", headers=slow.headers())

            def started() -> bool:
                return any(
                    r["request_id"] == slow.request_id and r["message"] == "slow start"
                    for r in applog.records(running=True)
                )

            # The request is in its view, waiting at the gate the test opens after SIGTERM.
            wait_until(started, 30, "the slow request to reach its view")
            # From here the destination writes nothing: what is logged waits in the queue.
            applog.hold.touch()
            idle.request("GET", f"/burst?count={count}", headers=burster.headers())
            burst = idle.getresponse()
            stats = json.loads(burst.read())
            answer = (burst.status, burst.getheader("X-Request-ID"))
            assert (200, burster.request_id) == answer, stats
            # At most one record was past the hold (being written as it began).
            assert stats["queued"] >= count - 1, stats
            assert 0 == stats["dropped"] == stats["failed"], stats
            written = _of(applog.records(running=True), burster.request_id, VIEW)
            assert len(written) <= 1, "the held destination wrote the burst"

            server.signal(signal.SIGTERM)
            if pairing.server == "uvicorn":
                # The burst's connection, idle since, is closed once uvicorn acts on the signal.
                wait_closed(idle, 60, "uvicorn to begin its shutdown (it closes idle connections)")
            else:
                # Not a check, only the likely order: gunicorn and waitress show nothing a test
                # could wait for, so the server has the signal before the request may end.
                # Whatever the order, the checks below hold.
                time.sleep(0.5)
            applog.hold.unlink()
            applog.gate.touch()
            response = running.getresponse()
            answer = (response.status, response.read())
            assert (200, b"done\n") == answer, "the running request was cut short"
            assert pairing.stopped == server.wait(120), server.output()
        finally:
            running.close()
            idle.close()
        assert "ctxlog:" not in server.output(), server.output()  # nothing given up or dropped

    records = applog.records()
    messages = [r["message"] for r in _of(records, burster.request_id, VIEW)]
    expected = [f"burst {n}" for n in range(count)]
    assert expected == messages, f"{len(messages)} of the {count} records delivered"
    assert ["slow done", "slow start"] == _messages(records, slow.request_id), slow
    for v in (slow, burster):
        (line,) = _of(records, v.request_id, ACCESS)
        assert (v.ip, v.user, 200) == (line["ip"], line["user"], line["status"]), line
