"""
The checks every ASGI pairing runs: Starlette and FastAPI, each under uvicorn and hypercorn.

A pairing's test module makes a :class:`Pairing` and calls one function of this module per
test. The apps are in ``apps/``; what they log is in the JSON-lines file of the ``applog``
fixture, read after the server has stopped.
"""

from __future__ import annotations

import collections
import concurrent.futures
import http.client
import json
import signal
from dataclasses import dataclass
from typing import Any

import _harness
from _harness import (
    ACCESS,
    GRACEFUL_TIMEOUT,
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
    request,
    visitors,
    wait_closed,
)
from _harness import messages as _messages
from _harness import records_of as _of


@dataclass(frozen=True)
class Pairing(_harness.Pairing):
    """A framework's app (``starlette_app`` or ``fastapi_app``) under a server."""

    app: str
    server: str

    @property
    def tag(self) -> str:
        """The prefix of this pairing's request ids."""
        return self.app[0] + self.server[0]

    @property
    def access_logger(self) -> str:
        """The server's access logger."""
        return f"{self.server}.access"

    @property
    def error_logger(self) -> str:
        """The logger on which the server reports an exception the app raised."""
        return f"{self.server}.error"

    @property
    def websocket_logger(self) -> str:
        """The server's logger that writes a line for each websocket connection."""
        return "uvicorn.error" if self.server == "uvicorn" else "hypercorn.access"

    @property
    def lifecycle(self) -> tuple[str, ...]:
        """Starts of the messages the app and the server log outside any request."""
        server: tuple[str, ...]
        if self.server == "uvicorn":
            server = (
                "Started server process", "Waiting for application startup",
                "Application startup complete", "Uvicorn running on", "Shutting down",
                "Waiting for connections to close", "Waiting for application shutdown",
                "Application shutdown complete", "Finished server process",
            )  # fmt: skip
        else:
            server = ("Running on",)
        return ("app started", "app stopping", *server)

    def modules(self) -> tuple[str, ...]:
        """Return the server, the framework and the websockets client."""
        return (self.server, self.app.removesuffix("_app"), "websockets")

    def command(self, port: int, applog: AppLog, pause: float) -> list[str]:
        """Return the server's command line, as a user would type it (with the bounds above)."""
        config = applog.config(pause=pause)
        if self.server == "uvicorn":
            # ctxlog reads X-Forwarded-For itself, from the proxies the app trusts.
            return python(
                "-m", "uvicorn", f"{self.app}:app", "--host", "127.0.0.1", "--port", str(port),
                "--log-config", str(config), "--no-proxy-headers",
                "--timeout-keep-alive", KEEP_ALIVE, "--timeout-graceful-shutdown", GRACEFUL_TIMEOUT,
            )  # fmt: skip
        return python(
            "-m", "hypercorn", f"{self.app}:app", "--bind", f"127.0.0.1:{port}",
            "--log-config", f"json:{config}", "--access-logfile", "-",
            "--keep-alive", KEEP_ALIVE, "--graceful-timeout", GRACEFUL_TIMEOUT,
        )  # fmt: skip


def _body(reply: Reply) -> Any:
    return json.loads(reply.body)


def concurrent_visitors(pairing: Pairing, applog: AppLog) -> None:
    """200 visitors at once, each followed by a bare request on the same connection."""
    visits = visitors(200, pairing.tag)

    def path(visitor: Visitor | None) -> str:
        return "/visit-sync" if visitor is not None and visitor.seq % 2 == 0 else "/visit"

    with pairing.start(applog) as server:
        replies = drive(server.url, visits, path=path, concurrency=50)
        assert pairing.stopped == server.stop(), server.output()

    # The responses: each visitor authenticated as itself, from the right-most XFF entry.
    anonymous = []
    for reply in replies:
        assert 200 == reply.status, reply
        if reply.visitor is None:
            assert reply.request_id is not None
            anonymous.append(reply.request_id)
            expected = {"ip": PROXY_IP, "user": "-", "request_id": reply.request_id}
        else:
            v = reply.visitor
            assert v.request_id == reply.request_id
            expected = {"ip": v.ip, "user": v.user, "request_id": v.request_id}
        assert expected == _body(reply)
    # Connections were kept alive, and bare requests followed visitors' on the same ones.
    by_connection: dict[int, set[bool]] = collections.defaultdict(set)
    for reply in replies:
        by_connection[reply.client_port].add(reply.visitor is None)
    assert len(replies) >= 2 * len(by_connection), "the server did not keep connections alive"
    mixed = sum(1 for kinds in by_connection.values() if kinds == {True, False})
    assert mixed >= len(by_connection) // 2, by_connection

    records = applog.records()
    checked = check_records(
        records,
        visits,
        required_names=[VIEW, pairing.access_logger, ACCESS],
        replies=replies,
        outside=pairing.lifecycle,
    )
    assert len(checked.anonymous) == len(anonymous) == len(visits)
    assert any(r["message"].startswith(pairing.lifecycle) for r in checked.outside)
    for v in visits:
        if v.seq % 2 == 0:
            expected_messages = ["visit sync"]
            expected_path = "/visit-sync"
        else:
            expected_messages = ["background task", "visit async done", "visit async start"]
            expected_path = "/visit"
        assert expected_messages == _messages(records, v.request_id), v
        for name in (pairing.access_logger, ACCESS):
            (line,) = _of(records, v.request_id, name)
            assert ("GET", expected_path) == (line["method"], line["path"]), line
        # The server's own access line is about the same client.
        (line,) = _of(records, v.request_id, ACCESS)
        assert 200 == line["status"]


def untrusted_peer(pairing: Pairing, applog: AppLog) -> None:
    """With 127.0.0.1 not among the trusted proxies, X-Forwarded-For changes nothing."""
    visits = visitors(10, pairing.tag + "u")
    with pairing.start(applog, env={"CTXLOG_INTEGRATION_TRUSTED": "10.0.0.0/8"}) as server:
        replies = drive(server.url, visits, path="/visit", concurrency=5, anonymous=False)
        forged = request(server.url, "/visit", headers={"X-Forwarded-For": SPOOFED_IP})
        assert pairing.stopped == server.stop(), server.output()
    for reply in [*replies, forged]:
        assert 200 == reply.status
        assert PROXY_IP == _body(reply)["ip"]
    records = applog.records()
    spoofed = {SPOOFED_IP} | {v.ip for v in visits}
    assert [] == [r for r in records if r["ip"] in spoofed]
    for v in visits:
        mine = [r for r in records if r["request_id"] == v.request_id]
        names = {r["name"] for r in mine}
        assert {VIEW, pairing.access_logger, ACCESS} <= names, (v, names)
        assert {(PROXY_IP, v.user)} == {(r["ip"], r["user"]) for r in mine}
    assert forged.request_id is not None
    assert {PROXY_IP} == {r["ip"] for r in records if r["request_id"] == forged.request_id}


def exception_in_view(pairing: Pairing, applog: AppLog) -> None:
    """A view raises: its records, the server's traceback, and the 500 name the request."""
    visits = visitors(20, pairing.tag + "e")

    def path(visitor: Visitor | None) -> str:
        return "/boom" if visitor is not None else "/visit"

    with pairing.start(applog) as server:
        replies = drive(server.url, visits, path=path, concurrency=10)
        assert pairing.stopped == server.stop(), server.output()
    anonymous = []
    for reply in replies:
        if reply.visitor is None:
            assert 200 == reply.status
            assert reply.request_id is not None
            anonymous.append(reply.request_id)
        else:
            assert 500 == reply.status
            assert reply.visitor.request_id == reply.request_id, reply.headers
    records = applog.records()
    check_records(
        records,
        visits,
        required_names=[VIEW, pairing.error_logger, pairing.access_logger, ACCESS],
        anonymous=anonymous,
        anonymous_names=[VIEW, pairing.access_logger, ACCESS],
        replies=replies,
        outside=pairing.lifecycle,
    )
    for v in visits:
        assert ["about to fail"] == _messages(records, v.request_id)
        (error,) = _of(records, v.request_id, pairing.error_logger)
        assert "ERROR" == error["level"]
        assert error["exc_text"].startswith("Traceback (most recent call last):"), error
        assert f"ShopError: no price for {v.request_id}" in error["exc_text"], error
        (line,) = _of(records, v.request_id, ACCESS)
        assert 500 == line["status"]
    no_traceback_outside_requests(records)


def _websocket(url: str, visitor: Visitor) -> tuple[str | None, list[str]]:
    from websockets.sync.client import connect

    with connect(url, additional_headers=visitor.headers(), proxy=None) as websocket:
        assert websocket.response is not None
        echoed = websocket.response.headers.get("X-Request-ID")
        answers = []
        for text in ("hello", "bye"):
            websocket.send(text)
            answers.append(str(websocket.recv(timeout=30)))
    return echoed, answers


def streaming_and_websockets(pairing: Pairing, applog: AppLog) -> None:
    """Every chunk of a streamed body and every websocket message logs with its request."""
    streams = visitors(30, pairing.tag + "s")
    sockets = visitors(30, pairing.tag + "w", start=1000)
    with pairing.start(applog) as server:
        ws_url = f"ws://127.0.0.1:{server.port}/ws"
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            talks = [pool.submit(_websocket, ws_url, v) for v in sockets]
            replies = drive(server.url, streams, path="/stream", concurrency=10, anonymous=False)
            results = [talk.result(timeout=60) for talk in talks]
        assert pairing.stopped == server.stop(), server.output()
    for reply in replies:
        assert reply.visitor is not None
        assert 200 == reply.status
        rid = reply.visitor.request_id
        assert rid == reply.request_id
        assert [f"chunk {n} {rid}" for n in range(3)] == reply.body.decode().splitlines()
    for v, (echoed, answers) in zip(sockets, results, strict=True):
        assert v.request_id == echoed
        assert [f"hello {v.request_id}", f"bye {v.request_id}"] == answers
    records = applog.records()
    check_records(
        records,
        streams,
        required_names=[VIEW, pairing.access_logger, ACCESS],
        replies=replies,
        outside=pairing.lifecycle,
    )
    check_records(records, sockets, required_names=[VIEW, pairing.websocket_logger])
    for v in streams:
        assert ["chunk 0", "chunk 1", "chunk 2", "stream done"] == _messages(records, v.request_id)
    for v in sockets:
        assert ["ws got bye", "ws got hello"] == _messages(records, v.request_id)
        (first, *_) = _of(records, v.request_id, VIEW)
        assert ("WS", "/ws") == (first["method"], first["path"])


def graceful_shutdown(pairing: Pairing, applog: AppLog) -> None:
    """SIGTERM while records wait in the queue of a held destination and requests run: none is lost."""
    burster, *slow_ones = visitors(4, pairing.tag + "t")
    count = 300
    with pairing.start(applog, pause=0.01) as server:
        idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connections = [idle]
        running: list[http.client.HTTPResponse] = []
        try:
            for v in slow_ones:
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                connections.append(connection)
                connection.request("GET", "/slow", headers=v.headers())
                response = connection.getresponse()
                running.append(response)
                # The request is in its view, waiting at the gate the test opens after SIGTERM.
                assert b"started\n" == response.readline()
            # From here the destination writes nothing: what is logged waits in the queue.
            applog.hold.touch()
            idle.request("GET", f"/burst?count={count}", headers=burster.headers())
            burst = idle.getresponse()
            stats = json.loads(burst.read())
            answer = (burst.status, burst.getheader("X-Request-ID"))
            assert (200, burster.request_id) == answer, stats
            assert stats["handlers"] >= 1, stats
            # At most one record was past the hold (being written as it began).
            assert stats["queued"] >= count - 1, stats
            assert 0 == stats["dropped"] == stats["failed"], stats
            written = _of(applog.records(running=True), burster.request_id, VIEW)
            assert len(written) <= 1, "the held destination wrote the burst"

            server.signal(signal.SIGTERM)
            # The burst's connection, idle since, is closed once the server acts on the signal.
            wait_closed(idle, 60, "the server to begin its shutdown (it closes idle connections)")
            applog.hold.unlink()
            applog.gate.touch()
            for response in running:
                try:
                    body = response.read()
                except http.client.IncompleteRead as cut:
                    body = cut.partial
                assert b"done\n" == body, "a running request was cut short"
            assert pairing.stopped == server.wait(120), server.output()
        finally:
            for connection in connections:
                connection.close()
    records = applog.records()
    bursts = [r["message"] for r in _of(records, burster.request_id, VIEW)]
    assert [f"burst {n}" for n in range(count)] == bursts, f"{len(bursts)} of {count} delivered"
    for v in slow_ones:
        assert ["slow done", "slow start"] == _messages(records, v.request_id)
        (line,) = _of(records, v.request_id, ACCESS)
        assert (v.ip, v.user, 200) == (line["ip"], line["user"], line["status"])
    stopping = [r for r in records if r["message"].startswith("app stopping")]
    assert 1 == len(stopping), "the lifespan shutdown did not run, or its record was lost"
    assert ("-", "-", "-") == tuple(stopping[0][name] for name in ("ip", "user", "request_id"))
