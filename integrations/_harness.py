"""
What every pairing's tests share: a real server as a subprocess, visitors, a driver, the checks.

A pairing picks a port with :func:`free_port`, builds its server's command line, and runs it with
:class:`Server`. :func:`drive` sends each :class:`Visitor`'s request through a trusted proxy
(``X-Forwarded-For`` from 127.0.0.1) over keep-alive connections, interleaved with requests
without any header on the same connections, each request numbered with a ``seq=`` query
parameter; :func:`check_records` then reads what the server logged (see ``_applog.py``) and
checks that every record names its own request, and that no record of another request, or of
no request, names a visitor.
"""

from __future__ import annotations

import base64
import collections
import http.client
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
from _applog import (
    FIELDS,
    HOLD_SUFFIX,
    LOG_ENV,
    PAUSE_ENV,
    read_records,
    write_logging_config,
)
from _gate import GATE_ENV

#: The integrations/ folder; it is on every server's PYTHONPATH (for ``_applog``).
INTEGRATIONS = Path(__file__).resolve().parent
#: The left-most X-Forwarded-For entry of every visitor: the client's own claim, never logged.
SPOOFED_IP = "6.6.6.6"
#: The peer every request comes from: the trusted proxy of the apps.
PROXY_IP = "127.0.0.1"
#: The logger of the apps' views.
VIEW = "shop.views"
#: ctxlog's access log.
ACCESS = "ctxlog.access"
#: The apps' folder, the working directory of every server.
APPS = INTEGRATIONS / "apps"
#: Seconds uvicorn and hypercorn keep an idle connection, and wait for the requests still
#: running after SIGTERM: failure bounds, longer than any test (their defaults, 5 s and
#: hypercorn's 3 s, are not: an idle connection or a running request could outlive them).
KEEP_ALIVE = "300"
GRACEFUL_TIMEOUT = "90"

__all__ = [
    "ACCESS",
    "APPS",
    "GRACEFUL_TIMEOUT",
    "INTEGRATIONS",
    "KEEP_ALIVE",
    "PROXY_IP",
    "SPOOFED_IP",
    "VIEW",
    "AppLog",
    "Pairing",
    "Reply",
    "Server",
    "Visitor",
    "check_records",
    "drive",
    "free_port",
    "messages",
    "no_traceback_outside_requests",
    "python",
    "read_records",
    "records_of",
    "request",
    "require",
    "visitors",
    "wait_closed",
    "wait_until",
]


class AppLog:
    """
    The JSON-lines log file of one server (the ``applog`` fixture): where it is, how to use it.

    Pass :meth:`config` to a server's ``--log-config`` (uvicorn: the path; hypercorn:
    ``json:`` + the path), or :meth:`env` to a server whose app or config file calls
    ``_applog.configure_from_env()`` (gunicorn's ``logconfig_dict``), and to every server for
    the :attr:`gate` (``_gate``).

    A shutdown test uses two files: while :attr:`hold` exists, the log's destination writes
    nothing (records wait in ``nonblocking()``'s queue); until :attr:`gate` exists, ``/slow``
    waits (the request runs).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "app.log"
        #: Created by the test: the destination (``_applog.SlowFileHandler``) writes nothing.
        self.hold = self.directory / f"app.log{HOLD_SUFFIX}"
        #: Created by the test: the views waiting at the gate (``_gate``) go on.
        self.gate = self.directory / "gate"

    def config(self, *, pause: float = 0.0) -> Path:
        """Write the ``dictConfig`` JSON file for this log and return its path."""
        return write_logging_config(self.directory, self.path, pause=pause)

    def env(self, *, pause: float = 0.0) -> dict[str, str]:
        """Return the environment variables naming this log, the slowness of its writes, the gate."""
        return {LOG_ENV: str(self.path), PAUSE_ENV: repr(pause), GATE_ENV: str(self.gate)}

    def records(self, *, running: bool = False) -> list[dict[str, Any]]:
        """
        Return the records written so far (none if the file does not exist yet).

        With ``running``, the server may be writing: a last line still cut short is left out.
        """
        if not self.path.exists():
            return []
        if running:
            text = self.path.read_text("utf-8")
            return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]
        return read_records(self.path)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def require(*modules: str) -> None:
    """Skip (fail under ``CI=true``) when one of ``modules`` is not installed."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return
    msg = f"not installed: {', '.join(missing)} (pip install -e '.[test]')"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class Server:
    """
    A server subprocess on 127.0.0.1, used as a context manager.

    Args:
        argv: The command line; it names the port (chosen with :func:`free_port`).
        cwd: The working directory, also put on ``PYTHONPATH`` with ``integrations/``.
        env: Variables added to the inherited environment.
        port: The port to wait on; by default found in ``argv`` (``127.0.0.1:PORT``,
            ``--port PORT``, ``--bind ...:PORT``, ``--listen=...:PORT``).
        ready_path: Requested until the server answers it (any status).
        startup_timeout: How long the server may take to answer, at most.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        port: int | None = None,
        ready_path: str = "/health",
        startup_timeout: float = 30.0,
    ) -> None:
        self.argv = [str(arg) for arg in argv]
        self.cwd = Path(cwd)
        self.port = port if port is not None else _port_in(self.argv)
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        self.startup_timeout = startup_timeout
        paths = [str(self.cwd), str(INTEGRATIONS)]
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(paths),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._directory: Path | None = None
        self._final_output: str | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the process and wait until it answers ``ready_path``."""
        self._directory = Path(tempfile.mkdtemp(prefix="ctxlog-server-"))
        with (
            (self._directory / "stdout").open("wb") as stdout,
            (self._directory / "stderr").open("wb") as stderr,
        ):
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=stdout, stderr=stderr
            )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(
                    f"the server exited with {self.process.returncode} before it answered:"
                    f" {' '.join(self.argv)}\n{self.output()}"
                )
            if self._answers():
                return
            if time.monotonic() > deadline:
                self.close()
                pytest.fail(
                    f"the server did not answer {self.ready_path} on port {self.port} within "
                    f"{self.startup_timeout:g} s: {' '.join(self.argv)}\n{self.output()}"
                )
            time.sleep(0.05)

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", self.ready_path)
            connection.getresponse().read()
        except OSError:
            return False
        else:
            return True
        finally:
            connection.close()

    def output(self) -> str:
        """Return what the server wrote on stdout and stderr so far."""
        if self._final_output is not None:
            return self._final_output
        if self._directory is None:
            return ""
        parts = []
        for name in ("stdout", "stderr"):
            try:
                text = (self._directory / name).read_text("utf-8", errors="replace")
            except FileNotFoundError:
                text = ""
            parts.append(f"--- {name} ---\n{text}")
        return "\n".join(parts)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and return the exit status; fail if the server is still up after ``timeout``."""
        self.signal(sig)
        return self.wait(timeout)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the server, if it still runs."""
        assert self.process is not None, "the server was never started"
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        """Return the exit status; fail (and kill the server) if it still runs after ``timeout``."""
        assert self.process is not None, "the server was never started"
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            pytest.fail(f"the server was still up after {timeout:g} s\n{self.output()}")

    def close(self) -> None:
        """Kill the process if it still runs, keep its output, remove its temporary files."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        if self._directory is not None and self._final_output is None:
            self._final_output = self.output()
            shutil.rmtree(self._directory, ignore_errors=True)


class Pairing:
    """
    What every pairing does the same way: start its server from ``apps/``, know how it stops.

    A subclass (a frozen dataclass) has a ``server`` field and says which modules it needs
    (:meth:`modules`), its command line (:meth:`command`) and its environment
    (:meth:`environment`).
    """

    server: str

    @property
    def stopped(self) -> int:
        """The exit status after SIGTERM: uvicorn ends by raising the signal again."""
        return -signal.SIGTERM if self.server == "uvicorn" else 0

    def modules(self) -> tuple[str, ...]:
        """Return the modules the pairing needs (missing: skipped, or failed under ``CI=true``)."""
        raise NotImplementedError

    def command(self, port: int, applog: AppLog, pause: float) -> list[str]:
        """Return the server's command line, as a user would type it."""
        raise NotImplementedError

    def environment(self, applog: AppLog, pause: float) -> dict[str, str]:
        """Return the variables the server gets: by default the log's, with the gate."""
        return applog.env(pause=pause)

    def start(
        self, applog: AppLog, *, pause: float = 0.0, env: dict[str, str] | None = None
    ) -> Server:
        """Return the server, not started yet (use it in a ``with``); ``env`` adds variables."""
        require(*self.modules())
        environment = {**self.environment(applog, pause), **(env or {})}
        return Server(self.command(free_port(), applog, pause), cwd=APPS, env=environment)


def wait_closed(connection: http.client.HTTPConnection, timeout: float, what: str) -> None:
    """
    Wait until the server closes ``connection``, an idle kept-alive one; fail after ``timeout``.

    uvicorn and hypercorn close their idle connections as soon as their graceful shutdown
    begins, while the requests still running go on: a test sees that the server has acted on
    SIGTERM. (Their keep-alive timeout must be longer than the test, or it closes them too.)
    """
    sock = connection.sock
    assert sock is not None, "the connection is not open"
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return
    except TimeoutError:
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
    assert b"" == data, f"data on an idle connection while waiting for {what}"


def _port_in(argv: list[str]) -> int:
    for index, arg in enumerate(argv):
        if arg in {"--port", "-p"} and index + 1 < len(argv) and argv[index + 1].isdigit():
            return int(argv[index + 1])
        head, sep, tail = arg.rpartition(":")
        if sep and tail.isdigit() and head.rsplit("=", 1)[-1].endswith("127.0.0.1"):
            return int(tail)
    msg = f"no port in {argv!r}: pass port="
    raise ValueError(msg)


@dataclass(frozen=True)
class Visitor:
    """
    A distinct client behind the trusted proxy, with its own address, user and request id.

    ``headers()`` carries ``X-Forwarded-For: 6.6.6.6, <ip>`` (the left-most entry is the
    client's own claim, the right-most the one the proxy appended), the user both as
    ``X-User: <user>`` and as HTTP basic auth (``<user>:secret``): each app authenticates from
    the one its framework is used to. And ``X-Request-ID``.
    """

    seq: int
    tag: str

    @property
    def ip(self) -> str:
        """The client address the proxy saw."""
        return f"198.18.{self.seq // 256 % 256}.{self.seq % 256}"

    @property
    def user(self) -> str:
        """The user the app authenticates."""
        return f"user-{self.seq}"

    @property
    def request_id(self) -> str:
        """The X-Request-ID this visitor sends."""
        return f"{self.tag}-{self.seq:05d}"

    def headers(self) -> dict[str, str]:
        """Return the request headers of this visitor, as a trusted proxy forwards them."""
        credentials = base64.b64encode(f"{self.user}:secret".encode()).decode("ascii")
        return {
            "X-Forwarded-For": f"{SPOOFED_IP}, {self.ip}",
            "X-User": self.user,
            "Authorization": f"Basic {credentials}",
            "X-Request-ID": self.request_id,
        }


def visitors(count: int, tag: str, *, start: int = 1) -> list[Visitor]:
    """Return ``count`` visitors numbered from ``start``, their request ids prefixed ``tag``."""
    return [Visitor(seq, tag) for seq in range(start, start + count)]


@dataclass
class Reply:
    """One response: whose request it was (``None``: a request without any header), and what came back."""

    visitor: Visitor | None
    status: int
    headers: dict[str, str]
    body: bytes
    connection: int = 0
    #: The client's local port: two replies with the same one came over the same connection.
    client_port: int = 0
    #: The request's number in :func:`drive`, sent as the query parameter ``seq`` (-1: none).
    seq: int = -1

    @property
    def request_id(self) -> str | None:
        """The X-Request-ID the response carried."""
        return self.headers.get("x-request-id")


def request(
    url: str,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 60.0,
) -> Reply:
    """Send one request on a new connection and return the reply (``visitor`` is ``None``)."""
    host, port = _host_port(url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        content = response.read()
        return Reply(None, response.status, _lower(response.getheaders()), content)
    finally:
        connection.close()


def drive(
    url: str,
    visits: Iterable[Visitor],
    *,
    path: str | Callable[[Visitor | None], str] = "/",
    concurrency: int = 50,
    anonymous: bool = True,
    mark: bool = True,
    timeout: float = 60.0,
) -> list[Reply]:
    """
    Send each visitor's request, ``concurrency`` connections at a time; return the replies.

    Each of ``concurrency`` threads keeps one keep-alive connection and sends requests from a
    shared list. With ``anonymous``, each visitor's request is followed in the list by one
    without any header (peer 127.0.0.1, no user, no request id), so the connections carry both
    kinds, one after the other: what the server does for a request must not carry the previous
    one's fields. ``path`` is a path or a function of the visitor (``None`` for the anonymous
    requests). With ``mark``, each request's number in the list is added to the path as the
    query parameter ``seq`` (``Reply.seq``): an app that logs ``seq=N`` lets
    :func:`check_records` tell which request a record is really about, whatever fields it
    carries; the servers' access lines show it too. The replies come back in the order the
    requests were listed; a request that failed raises here.
    """
    jobs: list[Visitor | None] = []
    for visitor in visits:
        jobs.append(visitor)
        if anonymous:
            jobs.append(None)
    todo: queue.SimpleQueue[tuple[int, Visitor | None]] = queue.SimpleQueue()
    for index, job in enumerate(jobs):
        todo.put((index, job))
    replies: list[Reply | None] = [None] * len(jobs)
    errors: list[BaseException] = []
    host, port = _host_port(url)

    def work(number: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            while not errors:
                try:
                    index, visitor = todo.get_nowait()
                except queue.Empty:
                    return
                target = path(visitor) if callable(path) else path
                if mark:
                    target += f"{'&' if '?' in target else '?'}seq={index}"
                headers = visitor.headers() if visitor is not None else {}
                reply = _send(connection, target, headers, visitor, number)
                if reply is None:  # the server closed the kept-alive connection: once more
                    connection.close()
                    connection = http.client.HTTPConnection(host, port, timeout=timeout)
                    reply = _send(connection, target, headers, visitor, number)
                    if reply is None:
                        msg = f"no response to {target} for {visitor}"
                        raise ConnectionError(msg)
                if mark:
                    reply.seq = index
                replies[index] = reply
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=work, args=(number,), name=f"drive-{number}", daemon=True)
        for number in range(min(concurrency, len(jobs)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 60)
    if errors:
        raise errors[0]
    if any(thread.is_alive() for thread in threads):
        pytest.fail(f"the driver's threads were still busy after {timeout + 60:g} s")
    done = [reply for reply in replies if reply is not None]
    assert len(done) == len(jobs), "some requests got no reply"
    return done


def _send(
    connection: http.client.HTTPConnection,
    target: str,
    headers: dict[str, str],
    visitor: Visitor | None,
    number: int,
) -> Reply | None:
    try:
        connection.request("GET", target, headers=headers)
    except (ConnectionError, http.client.HTTPException):
        return None
    assert connection.sock is not None
    client_port = connection.sock.getsockname()[1]
    try:
        response = connection.getresponse()
    except (ConnectionResetError, http.client.RemoteDisconnected):
        return None
    body = response.read()
    reply = Reply(
        visitor, response.status, _lower(response.getheaders()), body, number, client_port
    )
    if response.will_close:
        connection.close()
    return reply


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").partition("/")[0].rpartition(":")
    return host, int(port)


def _lower(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


@dataclass
class Checked:
    """What :func:`check_records` found: records per logger name, of visitors and of the rest."""

    by_visitor: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    anonymous: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    outside: list[dict[str, Any]] = field(default_factory=list)
    names: collections.Counter[str] = field(default_factory=collections.Counter)


#: A request's number, ``seq=N``: at the end of a view's message (``seq=-`` or ``seq=None``:
#: a request sent without one), and in the query of the servers' access lines.
_SEQ = re.compile(r" ?\bseq=(\d+|-|None)(?![\w-])")


def records_of(records: list[dict[str, Any]], request_id: str, name: str) -> list[dict[str, Any]]:
    """Return the records of logger ``name`` for the request ``request_id``."""
    return [r for r in records if r["request_id"] == request_id and r["name"] == name]


def messages(records: list[dict[str, Any]], request_id: str) -> list[str]:
    """Return the view's messages of a request, sorted, without their ``seq=`` (checked apart)."""
    return sorted(_SEQ.sub("", r["message"]) for r in records_of(records, request_id, VIEW))


def no_traceback_outside_requests(records: list[dict[str, Any]]) -> None:
    """Check that no record with a traceback lacks its request's fields (request id ``-``)."""
    outside = [r for r in records if r["exc_text"] and r["request_id"] == "-"]
    assert [] == outside[:3], f"{len(outside)} tracebacks without their request's fields"


def check_records(
    records: list[dict[str, Any]],
    visits: Iterable[Visitor],
    *,
    required_names: Iterable[str],
    anonymous: Iterable[str] = (),
    anonymous_ip: str = PROXY_IP,
    anonymous_names: Iterable[str] | None = None,
    replies: Iterable[Reply] = (),
    outside: Iterable[str] = (),
) -> Checked:
    """
    Check that every record names its own request, and nothing leaks to another.

    Args:
        records: What the server logged (:func:`read_records`).
        visits: The visitors whose requests were sent.
        required_names: Logger names of which each visitor's request must have a record
            (the view's, the framework's, the access log's).
        anonymous: Request ids the server gave the requests sent without headers (the
            ``X-Request-ID`` of their replies).
        anonymous_ip: The address those requests come from (the proxy itself, no header).
        anonymous_names: Logger names each anonymous request must have a record of; by
            default ``required_names``.
        replies: The replies of :func:`drive` (with ``mark``). Their anonymous requests are
            added to ``anonymous``, and a record whose message says ``seq=N`` must carry the
            fields of request N, whichever request id it has.
        outside: Starts of messages logged outside any request (server start and stop, the
            app's lifespan): such records must say ``-`` for every field.

    Every record of a visitor's request (by request id) has that visitor's ip and user. Each
    visitor's request, and each anonymous request, has a record of every required logger. A
    record of an anonymous request has ``anonymous_ip`` and no user, and a record outside any
    request (request id ``-``) has ``-`` for every field; a record of any other request (a
    health check) has no visitor's ip or user. The last two rules alone would miss a record
    that carries all the fields of the wrong request; ``replies`` and ``outside`` say which
    request a record is about without trusting its fields.
    """
    by_id = {visitor.request_id: visitor for visitor in visits}
    anonymous_ids = set(anonymous)
    by_seq: dict[int, tuple[str, str, str]] = {}
    for reply in replies:
        if reply.request_id is None:
            continue
        if reply.visitor is None:
            anonymous_ids.add(reply.request_id)
            by_seq[reply.seq] = (anonymous_ip, "-", reply.request_id)
        else:
            by_seq[reply.seq] = (reply.visitor.ip, reply.visitor.user, reply.request_id)
    starts = tuple(outside)
    assert not anonymous_ids & by_id.keys(), "an anonymous request got a visitor's request id"
    required = tuple(required_names)
    anonymous_required = required if anonymous_names is None else tuple(anonymous_names)
    ips = {visitor.ip for visitor in by_id.values()}
    users = {visitor.user for visitor in by_id.values()}
    checked = Checked()
    wrong: list[str] = []
    for record in records:
        checked.names[record["name"]] += 1
        if any(record.get(name) is None for name in FIELDS):
            wrong.append(f"a request field is missing: {record}")
            continue
        request_id = record["request_id"]
        seq = _SEQ.search(record["message"])
        found = by_seq.get(int(seq.group(1)), ()) if seq and seq.group(1).isdigit() else ()
        if found and (record["ip"], record["user"], request_id) != found:
            wrong.append(f"expected {' '.join(found)} (by its seq=): {record}")
        if starts and request_id != "-" and record["message"].startswith(starts):
            wrong.append(f"logged outside any request, but with a request's fields: {record}")
        visitor = by_id.get(request_id)
        if visitor is not None:
            checked.by_visitor.setdefault(request_id, []).append(record)
            if (record["ip"], record["user"]) != (visitor.ip, visitor.user):
                wrong.append(f"expected {visitor.ip} {visitor.user}: {record}")
        elif request_id in anonymous_ids:
            checked.anonymous.setdefault(request_id, []).append(record)
            if (record["ip"], record["user"]) != (anonymous_ip, "-"):
                wrong.append(f"expected {anonymous_ip} - (anonymous): {record}")
        elif request_id == "-":
            checked.outside.append(record)
            if (record["ip"], record["user"], record["method"], record["path"]) != ("-",) * 4:
                wrong.append(f"outside a request, but with request fields: {record}")
        elif record["ip"] in ips or record["user"] in users:
            # Another request (a health check, say): it must not carry a visitor's fields.
            wrong.append(f"a visitor's ip or user on another request: {record}")
    assert [] == wrong[:20], f"{len(wrong)} records with wrong fields: {wrong[:3]}"
    missing = [
        f"{visitor.request_id} has no record of {name}"
        for visitor in by_id.values()
        for name in required
        if not any(r["name"] == name for r in checked.by_visitor.get(visitor.request_id, ()))
    ]
    missing += [
        f"anonymous request {request_id} has no record of {name}"
        for request_id in sorted(anonymous_ids)
        for name in anonymous_required
        if not any(r["name"] == name for r in checked.anonymous.get(request_id, ()))
    ]
    assert [] == missing[:20], (
        f"{len(missing)} missing, such as {missing[:3]}; records per name: {dict(checked.names)}"
    )
    return checked


def python(*args: str) -> list[str]:
    """Return a command line running this interpreter with ``args``."""
    return [sys.executable, *args]
