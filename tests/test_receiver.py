"""
``ctxlog receive`` and the Receiver: many senders, rotation, routing, signals, secrets, TLS, hostile peers.

Most tests run the real command (``python -m ctxlog receive``) in a subprocess on 127.0.0.1 with a
free port, read the port from its "listening on" line, stop it with a signal and check its exit
status and "stopped:" summary. Tests that need counters run a Receiver in a thread of this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import pickle
import re
import selectors
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctxlog
from ctxlog import wire as _wire
from ctxlog.handlers import JSONSocketHandler
from ctxlog.receiver import LineFormatter, Receiver, ReceiverThread

ROOT = Path(__file__).resolve().parents[1]
KEY = b"s3cret-key-for-tests-0123456789ab"
WAIT = 10.0  # the most any single wait may take; normally a fraction of a second
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>\S+) (?P<ip>\S+) (?P<user>\S+) "
    r"(?P<rid>\S+) (?P<name>\S+) (?P<msg>.*) \[pid (?P<pid>\S+) from (?P<peer>\S+)\]$"
)
SUMMARY = re.compile(
    r"stopped: (?P<received>\d+) records from (?P<accepted>\d+) connections; "
    r"refused (?P<refused>\d+), closed idle (?P<idle>\d+), rejected: (?P<rejected>.*)$",
    re.MULTILINE,
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- frames ---------------------------------------------------------------------------------------


def make_record(msg: str = "hello", *, name: str = "shop.views", level: int = logging.INFO, **attrs: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, level, "/app/views.py", 7, msg, None, None, "view")
    record.__dict__.update(attrs)
    return record


def frame(msg: str = "hello", *, key: bytes | None = None, **attrs: Any) -> bytes:
    """One valid frame (signed with ``key`` by a new sender if given)."""
    return _wire.encode(make_record(msg, **attrs), _wire.Signer(key) if key else None)


def raw(body: Any, *, flags: int = 0, length: int | None = None, magic: bytes = b"CX", version: int = 1) -> bytes:
    """A frame around ``body`` (bytes as they are, anything else as JSON), with any header."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return struct.pack(">2sBBI", magic, version, flags, len(body) if length is None else length) + body


def fields(**overrides: Any) -> dict[str, Any]:
    """A valid record body, changed by ``overrides``."""
    return {"name": "shop.views", "levelno": 20, "msg": "m", "created": 1.7e9, **overrides}


class Evil:
    """Unpickling this creates a marker file: what a pickle-based receiver would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


# -- sockets --------------------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send(port: int, data: bytes) -> None:
    """Send ``data`` on a new connection and close it."""
    with connect(port) as sock:
        sock.sendall(data)


def closed_by_peer(sock: socket.socket, timeout: float = WAIT) -> bool:
    """Whether the other side closes ``sock`` (EOF or reset) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


def wait_for(predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.005)


def sender(port: int, **options: Any) -> tuple[logging.Logger, JSONSocketHandler]:
    """A logger of its own with a JSONSocketHandler that adds the context fields."""
    handler = JSONSocketHandler("127.0.0.1", port, retry_start=0.05, retry_max=0.2, **options)
    handler.addFilter(ctxlog.ContextFilter())
    logger = logging.getLogger(f"test_receiver.sender.{id(handler):x}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, handler


def read_lines(*paths: Path) -> list[str]:
    text = "".join(p.read_text(encoding="utf-8") for p in paths if p.exists())
    assert not text or text.endswith("\n"), "a partial last line"
    return text.splitlines()


def count_lines(paths: Callable[[], list[Path]]) -> int:
    """Lines written so far (while the receiver may be writing and rotating: files may vanish)."""
    total = 0
    for path in paths():
        with contextlib.suppress(FileNotFoundError):
            total += path.read_bytes().count(b"\n")
    return total


def rotated(path: Path) -> list[Path]:
    """``path`` and its backups, oldest first."""
    backups = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [*backups, path]


# -- the real command in a subprocess -------------------------------------------------------------


class Command:
    """``python -m ctxlog receive --listen 127.0.0.1:0 ...`` with stdout and stderr in files."""

    count = 0

    def __init__(self, tmp_path: Path, *args: str, listen: str = "127.0.0.1:0") -> None:
        Command.count += 1
        self.out_path = tmp_path / f"receiver{Command.count}.out"
        self.err_path = tmp_path / f"receiver{Command.count}.err"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ctxlog", "receive", "--listen", listen, *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=tmp_path,
                env=env,
            )
        self.port = 0

    def started(self) -> Command:
        """Wait for the "listening on" line and read the port from it."""
        match = wait_for(lambda: self.proc.poll() is not None or re.search(r"listening on 127\.0\.0\.1:(\d+)", self.stderr()), 20)
        assert isinstance(match, re.Match), self.stderr()
        self.port = int(match.group(1))
        return self

    def finished(self, timeout: float = 20) -> tuple[int, str]:
        """Wait for the process to exit; return its status and stderr."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the receiver did not exit within {timeout} s: {self.stderr()}")
        return self.proc.returncode, self.stderr()

    def stop(self, signum: int = signal.SIGTERM) -> dict[str, Any]:
        """Signal the receiver; check it exits 0 with a summary; return the summary's numbers."""
        self.proc.send_signal(signum)
        status, err = self.finished()
        assert 0 == status, err
        assert "Traceback" not in err, err
        match = SUMMARY.search(err)
        assert match is not None, err
        rejected = {}
        if match["rejected"] != "none":
            for part in match["rejected"].split(", "):
                reason, _, count = part.rpartition(": ")
                rejected[reason] = int(count)
        return {
            "received": int(match["received"]),
            "accepted": int(match["accepted"]),
            "refused": int(match["refused"]),
            "idle": int(match["idle"]),
            "rejected": rejected,
        }

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    def rss(self) -> int:
        """The receiver's resident memory, in bytes."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]

    def cpu(self) -> float:
        """The CPU time the receiver used so far, in seconds."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        utime, stime = stat.rpartition(")")[2].split()[11:13]
        return (int(utime) + int(stime)) / CLK_TCK

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def receive(tmp_path: Path) -> Iterator[Callable[..., Command]]:
    """Start ``ctxlog receive`` with arguments; every one started is killed at the end."""
    started: list[Command] = []

    def start(*args: str, wait: bool = True) -> Command:
        command = Command(tmp_path, *args)
        started.append(command)
        return command.started() if wait else command

    yield start
    for command in started:
        command.kill()


def delivered(path: Path, text: str, timeout: float = WAIT) -> bool:
    """Whether a line containing ``text`` appears in ``path`` within ``timeout`` seconds."""
    needle = text.encode()

    def found() -> bool:
        with contextlib.suppress(FileNotFoundError):
            return needle in path.read_bytes()
        return False

    return bool(wait_for(found, timeout))


# -- in-process receivers -------------------------------------------------------------------------


class Running:
    """A Receiver in a thread of this process that keeps the records it gets."""

    def __init__(self, **options: Any) -> None:
        self.records: list[logging.LogRecord] = []
        dispatch = options.pop("dispatch", self.records.append)
        self.receiver = Receiver("127.0.0.1", 0, dispatch=dispatch, **options)
        self.thread = ReceiverThread(self.receiver).start()
        self.port = self.receiver.port

    def messages(self) -> list[str]:
        return [r.getMessage() for r in list(self.records)]

    def arrives(self, msg: str, timeout: float = WAIT) -> bool:
        return bool(wait_for(lambda: msg in self.messages(), timeout))

    def good_sender_gets_through(self) -> bool:
        """A valid frame on a fresh connection is delivered."""
        msg = f"good {time.monotonic_ns()}"
        send(self.port, frame(msg))
        return self.arrives(msg)


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def start(**options: Any) -> Running:
        made.append(Running(**options))
        return made[-1]

    yield start
    for item in made:
        item.thread.stop(grace=1.0)
        assert not item.thread._thread or not item.thread._thread.is_alive()


# == point 3: the command ==========================================================================


def test_many_concurrent_senders_every_record_once_with_fields_and_peer(receive, tmp_path):
    """20 senders x 200 records in parallel: each record once, one whole line, with its fields and peer."""
    out = tmp_path / "all.log"
    command = receive("--file", str(out))
    senders, per = 20, 200
    handlers: list[JSONSocketHandler] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            logger, handler = sender(command.port)
            handlers.append(handler)
            with ctxlog.scope(ip=f"10.0.0.{i}", user=f"user{i}", request_id=f"req-{i}"):
                for seq in range(per):
                    logger.info("order %d of sender %d", seq, i)
            handler.close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [] == errors
    assert all(0 == h.dropped for h in handlers)
    assert wait_for(lambda: count_lines(lambda: [out]) >= senders * per)
    summary = command.stop()

    lines = read_lines(out)
    assert senders * per == len(lines)
    seen: set[tuple[int, int]] = set()
    peers: dict[int, set[str]] = {}
    for line in lines:
        match = LINE.match(line)
        assert match is not None, line
        seq, i = map(int, re.fullmatch(r"order (\d+) of sender (\d+)", match["msg"]).groups())  # type: ignore[union-attr]
        assert (f"10.0.0.{i}", f"user{i}", f"req-{i}", "INFO", str(os.getpid())) == (
            match["ip"], match["user"], match["rid"], match["level"], match["pid"]
        )
        assert re.fullmatch(r"127\.0\.0\.1:\d+", match["peer"])
        peers.setdefault(i, set()).add(match["peer"])
        seen.add((i, seq))
    assert {(i, s) for i in range(senders) for s in range(per)} == seen
    assert all(1 == len(p) for p in peers.values())  # one connection per handler
    assert senders == len(set().union(*peers.values()))
    assert (senders * per, senders, {}) == (summary["received"], summary["accepted"], summary["rejected"])


WORKER = """
import logging, sys
from ctxlog.handlers import JSONSocketHandler
port, worker, count = map(int, sys.argv[1:])
handler = JSONSocketHandler("127.0.0.1", port)
logger = logging.getLogger("shop.worker")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.propagate = False
for seq in range(count):
    logger.info("worker %d seq %d", worker, seq, extra={"ip": "10.1.1.%d" % worker, "user": "w%d" % worker, "request_id": "r%d-%d" % (worker, seq)})
handler.close()
sys.exit(1 if handler.dropped else 0)
"""


def test_rotating_file_from_many_processes_loses_no_line(receive, tmp_path):
    """8 processes x 5,000 records, 10+ rollovers: exactly 40,000 whole lines, each worker in order (PITFALLS 31)."""
    out = tmp_path / "app.log"
    command = receive("--file", str(out), "--max-bytes", "256KiB", "--backup-count", "200")
    workers, per = 8, 5000
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(command.port), str(w), str(per)], env={**os.environ, "PYTHONPATH": str(ROOT)})
        for w in range(workers)
    ]
    assert [0] * workers == [p.wait(60) for p in procs]
    assert wait_for(lambda: count_lines(lambda: rotated(out)) >= workers * per, 30)
    summary = command.stop()

    files = rotated(out)
    assert len(files) > 10  # ten rollovers or more
    assert all(p.stat().st_size <= 256 * 1024 for p in files)
    last = [-1] * workers
    total = 0
    for line in read_lines(*files):
        match = LINE.match(line)
        assert match is not None, line
        worker, seq = map(int, re.fullmatch(r"worker (\d+) seq (\d+)", match["msg"]).groups())  # type: ignore[union-attr]
        assert (f"10.1.1.{worker}", f"w{worker}", f"r{worker}-{seq}") == (match["ip"], match["user"], match["rid"])
        assert seq == last[worker] + 1, line
        last[worker] = seq
        total += 1
    assert workers * per == total
    assert [per - 1] * workers == last
    assert (workers * per, workers) == (summary["received"], summary["accepted"])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_takes_in_what_was_sent_then_exits_0(receive, signum):
    """Records sent just before SIGTERM/SIGINT are all written (default output: stdout); exit status 0."""
    command = receive()
    socks = [connect(command.port) for _ in range(4)]
    try:
        for n, sock in enumerate(socks):
            sock.sendall(b"".join(frame(f"conn {n} seq {s}", ip="192.0.2.1", user="bob", request_id="rid") for s in range(500)))
        # And connections that may only have reached the listen backlog when the signal comes.
        for n in range(20):
            late = connect(command.port)
            socks.append(late)
            late.sendall(frame(f"late {n}"))
        summary = command.stop(signum)
    finally:
        for sock in socks:
            sock.close()

    lines = command.stdout().splitlines()
    assert 2020 == len(lines)
    assert all(LINE.match(line) for line in lines)
    expected = {f"conn {n} seq {s}" for n in range(4) for s in range(500)} | {f"late {n}" for n in range(20)}
    assert expected == {LINE.match(line)["msg"] for line in lines}  # type: ignore[index]
    assert (2020, 24) == (summary["received"], summary["accepted"])
    assert "Traceback" not in command.stderr()


def test_no_line_of_the_receivers_own_debug_output_in_the_file(receive, tmp_path):
    """The output holds received records only (asyncio's own debug line does not leak into it)."""
    out = tmp_path / "only.log"
    command = receive("--file", str(out))
    send(command.port, frame("just me"))
    assert delivered(out, "just me")
    command.stop()

    assert ["just me"] == [LINE.match(line)["msg"] for line in read_lines(out)]  # type: ignore[index]


JSON_CONFIG = {
    "version": 1,
    "formatters": {"line": {"()": "ctxlog.receiver.LineFormatter"}},
    "handlers": {
        "all": {"class": "logging.FileHandler", "filename": "all.log", "formatter": "line"},
        "payments": {"class": "logging.FileHandler", "filename": "payments.log", "formatter": "line"},
    },
    "loggers": {"shop.payments": {"handlers": ["payments"], "propagate": False}},
    "root": {"handlers": ["all"], "level": "INFO"},
}

TOML_CONFIG = """
version = 1

[formatters.line]
"()" = "ctxlog.receiver.LineFormatter"

[handlers.all]
class = "logging.FileHandler"
filename = "all.log"
formatter = "line"

[handlers.payments]
class = "logging.FileHandler"
filename = "payments.log"
formatter = "line"

[loggers."shop.payments"]
handlers = ["payments"]
propagate = false

[root]
handlers = ["all"]
level = "INFO"
"""


@pytest.mark.parametrize("kind", ["json", "toml"])
def test_config_routes_to_the_nearest_configured_logger(receive, tmp_path, kind):
    """--config (JSON or TOML dictConfig): shop.payments.* go to the payments file, everything else to root's."""
    config = tmp_path / f"logging.{kind}"
    config.write_text(json.dumps(JSON_CONFIG) if kind == "json" else TOML_CONFIG)
    command = receive("--config", str(config))
    with connect(command.port) as sock:
        for name in ("shop.payments", "shop.payments.refunds", "shop.payments.refunds.eu", "shop", "shop.views", "nobody.knows.me", "ctxlog.receiver"):
            sock.sendall(frame(f"from {name}", name=name, user="carol", ip="198.51.100.9", request_id="abc"))
    assert delivered(tmp_path / "all.log", "from ctxlog.receiver")
    summary = command.stop()

    payments = [LINE.match(line) for line in read_lines(tmp_path / "payments.log")]
    everything = [LINE.match(line) for line in read_lines(tmp_path / "all.log")]
    assert ["from shop.payments", "from shop.payments.refunds", "from shop.payments.refunds.eu"] == [m["msg"] for m in payments]  # type: ignore[index]
    assert ["from shop", "from shop.views", "from nobody.knows.me", "from ctxlog.receiver"] == [m["msg"] for m in everything]  # type: ignore[index]
    assert all(("198.51.100.9", "carol", "abc") == (m["ip"], m["user"], m["rid"]) for m in payments + everything)  # type: ignore[index]
    assert 7 == summary["received"]
    assert "listening on" in command.stderr()


def test_unknown_names_go_to_root_and_create_no_logger(running):
    """1,000 distinct names from the network reach root; the logger registry does not grow."""
    got: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = got.append  # type: ignore[method-assign]
    own: list[logging.LogRecord] = []
    own_catcher = logging.Handler()
    own_catcher.emit = own.append  # type: ignore[method-assign]
    configured = logging.getLogger("test_receiver.shop.payments")
    configured.propagate = False
    configured.addHandler(own_catcher)
    root = logging.getLogger()
    root.addHandler(catcher)
    try:
        before = len(logging.Logger.manager.loggerDict)
        item = running(dispatch=None)
        with connect(item.port) as sock:
            sock.sendall(b"".join(frame(f"n{i}", name=f"evil.n{i}.x{i}") for i in range(1000)))
            sock.sendall(frame("routed", name="test_receiver.shop.payments.refunds.eu"))
            sock.sendall(frame("not routed", name="test_receiver.shop"))
        assert wait_for(lambda: len(got) >= 1001 and own)
        assert before == len(logging.Logger.manager.loggerDict)
    finally:
        root.removeHandler(catcher)
        configured.removeHandler(own_catcher)
        configured.propagate = True
    assert ["routed"] == [r.getMessage() for r in own]
    assert [f"n{i}" for i in range(1000)] + ["not routed"] == [r.getMessage() for r in got if r.name.startswith(("evil.", "test_receiver"))]


def test_secret_accepts_signed_and_rejects_unsigned_and_wrong_key(receive, tmp_path):
    """--secret-file: signed senders get through; unsigned and wrong-key frames are rejected and counted."""
    secret = tmp_path / "secret"
    secret.write_bytes(KEY + b"\n")
    out = tmp_path / "signed.log"
    command = receive("--file", str(out), "--secret-file", str(secret))
    assert "signed frames only" in command.stderr()
    logger, handler = sender(command.port, secret=KEY)
    logger.info("signed one")
    assert delivered(out, "signed one")

    for bad in (frame("unsigned"), frame("wrong key", key=b"another-key-of-32-bytes-xxxxxxxxx")):
        with connect(command.port) as sock:
            sock.sendall(bad)
            assert closed_by_peer(sock)
    logger.info("signed two")  # the same connection as before: not harmed
    handler.close()
    assert delivered(out, "signed two")
    assert 1 == handler.connections
    summary = command.stop()

    assert ["signed one", "signed two"] == [LINE.match(line)["msg"] for line in read_lines(out)]  # type: ignore[index]
    assert {"unsigned frame": 1, "bad frame": 1} == summary["rejected"]
    assert "bad signature" in command.stderr()


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        (lambda d: ["--secret-file", str(d / "missing")], 2, "cannot read the secret file"),
        (lambda d: ["--secret-file", str(d / "short")], 2, "use at least 16"),
        (lambda d: ["--max-bytes", "1MB"], 2, "--max-bytes needs --file"),
        (lambda d: ["--config", str(d / "conf.json"), "--max-bytes", "1MB"], 2, "--max-bytes has no effect with --config"),
        (lambda d: ["--listen", "127.0.0.1:99999"], 2, "is not HOST:PORT"),
        (lambda d: ["--listen", "localhost"], 2, "is not HOST:PORT"),
        (lambda d: ["--config", str(d / "missing.json")], 2, "cannot read --config"),
        (lambda d: ["--config", str(d / "broken.json")], 2, "cannot read --config"),
        (lambda d: ["--config", str(d / "broken.toml")], 2, "cannot read --config"),
        (lambda d: ["--config", str(d / "list.json")], 2, "does not hold a dictConfig"),
        (lambda d: ["--config", str(d / "badclass.json")], 2, "not a valid logging configuration"),
        (lambda d: ["--file", str(d / "no" / "such" / "dir.log")], 2, "cannot open --file"),
        (lambda d: ["--tls-cert", str(d / "conf.json")], 2, "--tls-cert and --tls-key go together"),
        (lambda d: ["--tls-cert", str(d / "conf.json"), "--tls-key", str(d / "conf.json")], 2, "cannot load --tls-cert"),
        (lambda d: ["--max-frame", "0"], 2, "max_frame"),
        (lambda d: ["--max-frame", "2MiB", "--max-buffered", "1MiB"], 2, "raise it to at least 2097224"),
        (lambda d: ["--replay-window", "0"], 2, "replay_window=0.0 must be a positive number"),
        (lambda d: ["--file", str(d / "a.log"), "--max-bytes", "1MB", "--backup-count", "0"], 2, "--max-bytes needs --backup-count"),
        (lambda d: ["--format", "%(message"], 2, "format"),
    ],
    ids=[
        "secret-missing", "secret-short", "max-bytes-alone", "max-bytes-with-config", "port-range", "no-port",
        "config-missing", "config-broken-json", "config-broken-toml", "config-list", "config-bad-class",
        "file-dir-missing", "tls-cert-alone", "tls-bad-pem", "max-frame-0", "max-buffered-below-frame",
        "replay-window-0", "no-backups", "bad-format",
    ],
)
def test_misconfiguration_exits_with_a_clear_message(tmp_path, make, status, message):
    """A bad option ends the command at once: a clear message, no traceback, a non-zero status."""
    (tmp_path / "short").write_bytes(b"tooshort\n")
    (tmp_path / "conf.json").write_text(json.dumps({"version": 1}))
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "broken.toml").write_text("version = ")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "badclass.json").write_text(json.dumps({"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}))
    command = Command(tmp_path, *make(tmp_path))
    try:
        actual, err = command.finished(10)
    finally:
        command.kill()

    assert status == actual, err
    assert message in err
    assert "Traceback" not in err
    assert "listening on" not in err


def test_port_in_use_exits_1_with_a_clear_message(tmp_path):
    """A port another socket listens on: "cannot listen", status 1, no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        command = Command(tmp_path, listen=f"127.0.0.1:{busy.getsockname()[1]}")
        status, err = command.finished()

    assert 1 == status, err
    assert "cannot listen on 127.0.0.1:" in err
    assert "Traceback" not in err


# == point 4: hostile input ========================================================================


HOSTILE = {
    "bad magic (a cookbook pickle)": (struct.pack(">L", 40) + pickle.dumps({"msg": "x"}), "bad header"),
    "length 0xFFFFFFF0": (raw(b"", length=0xFFFFFFF0), "bad header"),
    "just over max-frame": (raw(b"x" * 65, length=65 * 1024 + 1), "bad header"),
    "unknown version": (raw(fields(), version=3), "bad header"),
    "unknown flags": (raw(fields(), flags=0x80), "bad header"),
    "not JSON": (raw(b"\x00\x01 definitely not json"), "bad frame"),
    "invalid UTF-8": (raw(b'{"name": "\xff", "levelno": 20, "msg": "m", "created": 1}'), "bad frame"),
    "a JSON list": (raw([1, 2, 3]), "bad frame"),
    "a JSON string": (raw("record"), "bad frame"),
    "levelno a string": (raw(fields(levelno="50")), "bad frame"),
    "levelno out of range": (raw(fields(levelno=10**6)), "bad frame"),
    "levelno a bool": (raw(fields(levelno=True)), "bad frame"),
    "created yesterday": (raw(fields(created="yesterday")), "bad frame"),
    "created NaN": (raw(b'{"name": "a", "levelno": 20, "msg": "m", "created": NaN}'), "bad frame"),
    "created Infinity": (raw(b'{"name": "a", "levelno": 20, "msg": "m", "created": Infinity}'), "bad frame"),
    "created past what a clock shows": (raw(fields(created=1e300)), "bad frame"),
    "msg not a string": (raw(fields(msg=["a"])), "bad frame"),
    "args sent": (raw(fields(msg="%s", args=["a"])), "bad frame"),
    "unknown field": (raw(fields(exc_info=[1, 2])), "bad frame"),
    "extra overriding a record attribute": (raw(fields(extra={"levelname": "CRITICAL"})), "bad frame"),
    "extra nested": (raw(fields(extra={"a": {"b": 1}})), "bad frame"),
    "extra setting peer": (raw(fields(extra={"peer": "10.0.0.1:1"})), "bad frame"),
    "nesting bomb": (raw(b'{"name": "a", "levelno": 20, "msg": "m", "created": 1, "extra": {"x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}}"), "bad frame"),
    "5,000-digit int": (raw(b'{"name": "a", "levelno": 20, "msg": "m", "created": 1, "lineno": 1' + b"0" * 5000 + b"}"), "bad frame"),
    "body shorter than its header says, then close": (raw(fields())[:-5], "truncated frame"),
    "half a header, then close": (raw(fields())[:5], "truncated frame"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_frame_closes_its_connection_only_and_is_counted(running, case):
    """Each hostile frame: connection closed, counted by reason, nothing delivered; the next sender gets through."""
    data, reason = HOSTILE[case]
    item = running(max_frame=64 * 1024)
    with connect(item.port) as sock:
        sock.sendall(frame("before it, same connection") + data)
        if reason == "truncated frame":
            sock.shutdown(socket.SHUT_WR)
        assert closed_by_peer(sock)
    assert wait_for(lambda: item.receiver.rejected)

    assert {reason: 1} == item.receiver.rejected
    assert item.good_sender_gets_through()
    assert ["before it, same connection"] == item.messages()[:1]
    assert 2 == len(item.records)
    assert wait_for(lambda: not item.receiver.connections)


def test_pickle_frame_runs_no_code(receive, tmp_path):
    """A pickle whose __reduce__ would create a file: no file, connection closed, counted; next frame delivered (PITFALLS 27)."""
    marker = tmp_path / "pwned"
    out = tmp_path / "out.log"
    command = receive("--file", str(out))
    evil = pickle.dumps(Evil(marker))
    for data in (raw(evil), struct.pack(">L", len(evil)) + evil):
        with connect(command.port) as sock:
            sock.sendall(data)
            assert closed_by_peer(sock)
    send(command.port, frame("after the pickles"))
    assert delivered(out, "after the pickles")
    summary = command.stop()

    assert not marker.exists()
    assert {"bad frame": 1, "bad header": 1} == summary["rejected"]
    assert 1 == len(read_lines(out))


def test_huge_length_header_allocates_nothing(receive, tmp_path):
    """Headers announcing 0xFFFFFFF0 bytes (x50): each connection closed, RSS grows under 2 MB (PITFALLS 28a)."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out))
    send(command.port, frame("warm up"))
    assert delivered(out, "warm up")
    before = command.rss()
    for _ in range(50):
        with connect(command.port) as sock:
            sock.sendall(raw(b"{}", length=0xFFFFFFF0))
            assert closed_by_peer(sock)
    send(command.port, frame("still here"))
    assert delivered(out, "still here")
    grown = command.rss() - before
    summary = command.stop()

    assert grown < 2 * 1024 * 1024, grown
    assert {"bad header": 50} == summary["rejected"]
    assert command.stderr().count("bad header") <= 2  # one report line per reason per 10 s


def test_frame_just_over_max_frame_is_rejected_and_reported_once(receive, tmp_path):
    """--max-frame 64KiB: a frame of 64 KiB is taken, one of 64 KiB + 1 rejected and reported once (PITFALLS 28e)."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out), "--max-frame", "64KiB")
    base = len(json.dumps(fields(msg="")).encode())
    exact = raw(fields(msg="a" * (64 * 1024 - base)))
    over = raw(fields(msg="b" * (64 * 1024 - base + 1)))
    assert (64 * 1024, 64 * 1024 + 1) == (len(exact) - 8, len(over) - 8)
    send(command.port, exact)
    for _ in range(3):
        with connect(command.port) as sock:
            sock.sendall(over)
            assert closed_by_peer(sock)
    send(command.port, frame("after"))
    assert delivered(out, "after")
    summary = command.stop()

    assert {"bad header": 3} == summary["rejected"]
    assert 1 == command.stderr().count("over the limit of 65536")
    assert 2 == summary["received"]


def test_msg_is_never_formatted_with_arguments(receive, tmp_path):
    """{"msg": "%50000000s"}: written as it is (no 50 MB string), the receiver's memory stays flat (PITFALLS 29)."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out))
    send(command.port, frame("warm up"))
    assert delivered(out, "warm up")
    before = command.rss()
    send(command.port, raw(fields(msg="%50000000s %(x)s %d")))
    send(command.port, frame("after"))
    assert delivered(out, "after")
    grown = command.rss() - before
    command.stop()

    lines = read_lines(out)
    assert "%50000000s %(x)s %d" == LINE.match(lines[1])["msg"]  # type: ignore[index]
    assert max(map(len, lines)) < 300
    assert grown < 5 * 1024 * 1024, grown


FORGED = "\n2030-01-01 00:00:00,000 INFO 10.0.0.1 root - shop.auth password changed [pid 1 from 127.0.0.1:1]"
INJECT = ["\r", "\n", "\r\n", "\x1b[2J", "\x00", "\x85", "\u2028", "\u2029", "\u202e", "\t", "\x7f"]


def test_forged_lines_and_escapes_stay_on_one_escaped_line(receive, tmp_path):
    """Newlines, ESC, NUL, bidi in msg, fields, name and extra: one line per record, escapes visible (PITFALLS 34)."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out), "--format", "%(asctime)s %(ip)s %(user)s %(request_id)s %(name)s %(message)s %(tenant)s")
    with connect(command.port) as sock:
        for char in INJECT:
            sock.sendall(
                frame(
                    f"login{char}ok{FORGED}",
                    name=f"shop{char}auth",
                    ip=f"10.0.0.1{char}",
                    user=f"root{char}{FORGED}",
                    request_id=f"r{char}",
                    tenant=f"t{char}{FORGED}",
                )
            )
        tb = f"Traceback (most recent call last):{FORGED}\nValueError: bad{char}"
        sock.sendall(frame("with a traceback", exc_text=tb, tenant="t"))
    assert delivered(out, "with a traceback")
    command.stop()

    lines = read_lines(out)
    records = [line for line in lines if not line.startswith("  | ")]
    assert len(INJECT) + 1 == len(records)
    assert 3 == len(lines) - len(records)  # the traceback's lines, each marked
    for line in lines:
        assert line.startswith(("20", "  | ")), line
        assert not line.startswith("2030")
        assert not re.search("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202e]", line), repr(line)
    assert "login\\x1b[2Jok\\n2030" in out.read_text()
    assert "root\\r\\n2030" in out.read_text()
    assert "t\\u202e\\n2030" in out.read_text()  # an extra field used in --format is escaped too


def test_half_frame_then_hang_is_closed_after_read_timeout(receive, tmp_path):
    """A frame that stops halfway: closed --read-timeout (1 s) after its first byte, counted; others go on."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out), "--read-timeout", "1")
    with connect(command.port) as hang:
        start = time.monotonic()
        hang.sendall(frame("never finished")[:30])
        with connect(command.port) as good:
            for n in range(5):  # a second sender meanwhile, with a pause longer than the read timeout
                good.sendall(frame(f"meanwhile {n}"))
                time.sleep(0.3)
        assert closed_by_peer(hang)
        elapsed = time.monotonic() - start
    assert delivered(out, "meanwhile 4")
    summary = command.stop()

    assert 0.9 < elapsed < 5, elapsed
    assert {"read timeout": 1} == summary["rejected"]
    assert 5 == summary["received"]


def test_truncated_frames_then_close_burn_no_cpu(receive, tmp_path):
    """20 frames cut short then closed: counted as truncated, handled at once, no CPU spin (PITFALLS 28b)."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out))
    send(command.port, frame("warm up"))
    assert delivered(out, "warm up")
    cpu = command.cpu()
    for _ in range(20):
        with connect(command.port) as sock:
            sock.sendall(raw(fields(msg="x" * 100))[:18])
            sock.shutdown(socket.SHUT_WR)
            assert closed_by_peer(sock, 1.0)  # the receiver is done with it within 1 s
    time.sleep(1.0)
    used = command.cpu() - cpu
    send(command.port, frame("after"))
    assert delivered(out, "after")
    summary = command.stop()

    assert used < 0.3, used  # a spinning loop would use about a second
    assert {"truncated frame": 20} == summary["rejected"]


def test_awkward_but_valid_framing_is_decoded(receive, tmp_path):
    """Frames dribbled 1 byte per 10 ms, 50 frames in one send, a header split 2+6: all decoded (PITFALLS 28c, d)."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out))
    small = raw(fields(name="d", msg="dribbled"))
    with connect(command.port) as sock:
        for byte in small + small:
            sock.send(bytes([byte]))
            time.sleep(0.01)
    with connect(command.port) as sock:
        sock.sendall(b"".join(frame(f"coalesced {n}") for n in range(50)))
    with connect(command.port) as sock:
        split = frame("split header", key=None)
        sock.sendall(split[:2])
        time.sleep(0.1)
        sock.sendall(split[2:8])
        time.sleep(0.1)
        sock.sendall(split[8:])
    assert delivered(out, "split header")
    summary = command.stop()

    msgs = [LINE.match(line)["msg"] for line in read_lines(out)]  # type: ignore[index]
    assert ["dribbled", "dribbled", *(f"coalesced {n}" for n in range(50)), "split header"] == msgs
    assert {} == summary["rejected"]


def test_long_distinct_names_do_not_pile_up_in_memory(receive, tmp_path):
    """100 records with distinct 500 KB logger names: memory stays flat (names from the network are not kept)."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out))
    send(command.port, frame("warm up"))
    assert delivered(out, "warm up")
    before = command.rss()
    with connect(command.port) as sock:
        for n in range(100):
            sock.sendall(frame("long name", name=f"{n}." + "n." * 250_000))
    send(command.port, frame("after"))
    assert delivered(out, "after")
    grown = command.rss() - before
    command.stop()

    assert 102 == len(read_lines(out))
    assert grown < 20 * 1024 * 1024, grown


def test_thousand_idle_connections_do_not_delay_a_sender(receive, tmp_path):
    """1,000 idle connections, then a sender: delivered within a few seconds; the idle ones closed after --idle-timeout (PITFALLS 30)."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out), "--idle-timeout", "2")
    idle = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", command.port), timeout=WAIT))
        opened = time.monotonic()
        logger, handler = sender(command.port)
        for n in range(10):
            logger.info("legit %d", n)
        handler.close()
        assert delivered(out, "legit 9", 5.0)
        delay = time.monotonic() - opened
        with selectors.DefaultSelector() as selector:
            for sock in idle:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            closed = 0
            deadline = time.monotonic() + 15
            while closed < len(idle) and time.monotonic() < deadline:
                for key, _ in selector.select(1.0):
                    selector.unregister(key.fileobj)
                    closed += 1
        waited = time.monotonic() - opened
    finally:
        for sock in idle:
            sock.close()
    summary = command.stop()

    assert delay < 5.0
    assert 1000 == closed
    assert 1.5 < waited < 15
    assert (10, 1001, 0, 1000) == (summary["received"], summary["accepted"], summary["refused"], summary["idle"])


def test_idle_timeout_closes_silent_connections_only(running):
    """idle_timeout: silent connections closed and counted; one that keeps sending stays open."""
    item = running(idle_timeout=0.5)
    silent = [connect(item.port) for _ in range(20)]
    try:
        with connect(item.port) as busy:
            for n in range(8):
                busy.sendall(frame(f"busy {n}"))
                time.sleep(0.15)
            assert all(closed_by_peer(s, 3.0) for s in silent)
            busy.sendall(frame("busy last"))
            assert item.arrives("busy last")
    finally:
        for sock in silent:
            sock.close()

    assert 20 == item.receiver.idle_closed
    assert {} == item.receiver.rejected


def test_connection_cap_evicts_unproven_then_idle_and_refuses_only_when_all_are_busy(running):
    """max_connections=3: a newcomer evicts the oldest connection without a valid frame, else the longest idle; refused only when all are mid-frame."""
    item = running(max_connections=3)
    old, new, fresh = connect(item.port), connect(item.port), None
    socks = [old, new]
    try:
        old.sendall(frame("old"))
        assert item.arrives("old")
        new.sendall(frame("new"))
        assert item.arrives("new")
        fresh = connect(item.port)  # never sends a frame
        socks.append(fresh)
        assert wait_for(lambda: 3 == item.receiver.accepted)

        fourth = connect(item.port)  # full: the one without a valid frame makes room
        socks.append(fourth)
        assert closed_by_peer(fresh)
        fourth.sendall(frame("fourth"))
        assert item.arrives("fourth")
        fifth = connect(item.port)  # full again, all proven: the one idle the longest goes
        socks.append(fifth)
        assert closed_by_peer(old)
        for sock, msg in ((new, "new again"), (fourth, "fourth again"), (fifth, "fifth")):
            sock.sendall(frame(msg))  # the other two were left alone
            assert item.arrives(msg)

        halves = {sock: frame(f"busy {n}") for n, sock in enumerate((new, fourth, fifth))}
        for sock, data in halves.items():
            sock.sendall(data[:20])  # each in the middle of a frame
        assert wait_for(lambda: all(c.buffer for c in item.receiver.connections))
        for _ in range(2):
            with connect(item.port) as extra:
                extra.sendall(frame("refused"))
                assert closed_by_peer(extra)
        for sock, data in halves.items():
            sock.sendall(data[20:])
        assert wait_for(lambda: {"busy 0", "busy 1", "busy 2"} <= set(item.messages()))
    finally:
        for sock in socks:
            sock.close()

    assert "refused" not in item.messages()
    stats = item.receiver.stats()
    assert (2, 2, 9) == (stats["evicted"], stats["refused"], stats["received"])
    assert {"evicted": 2, "too many connections": 2} == item.receiver.rejected


# == TLS ===========================================================================================


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 made with the openssl command."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command is needed (CI installs it)"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def test_tls_sender_delivers_and_plain_tcp_is_rejected(receive, tmp_path, certificate):
    """--tls-cert/--tls-key: a TLS JSONSocketHandler delivers; plain TCP to the TLS port gets nothing in, harms no one."""
    cert, key = certificate
    out = tmp_path / "tls.log"
    command = receive("--file", str(out), "--tls-cert", str(cert), "--tls-key", str(key), "--read-timeout", "1")
    logger, handler = sender(command.port, tls=ssl.create_default_context(cafile=str(cert)))
    logger.info("over tls one")
    assert delivered(out, "over tls one")
    with connect(command.port) as plain:
        plain.sendall(frame("plain text"))
        assert closed_by_peer(plain)
    idle_plain = connect(command.port)  # never speaks: must not hold the receiver up when it stops
    try:
        with ctxlog.scope(user="tls-user"):
            logger.info("over tls two")
        handler.close()
        assert delivered(out, "over tls two")
        assert closed_by_peer(idle_plain, 5)  # the handshake timed out after --read-timeout
        started = time.monotonic()
        summary = command.stop()
        assert time.monotonic() - started < 8
    finally:
        idle_plain.close()

    lines = read_lines(out)
    assert ["over tls one", "over tls two"] == [LINE.match(line)["msg"] for line in lines]  # type: ignore[index]
    assert "tls-user" == LINE.match(lines[1])["user"]  # type: ignore[index]
    assert 2 == summary["received"]
    assert "plain text" not in out.read_text()


def test_tls_peer_that_never_handshakes_does_not_hold_up_the_stop(receive, tmp_path, certificate):
    """SIGTERM while a peer sits in the TLS handshake (read timeout 10 s): the receiver exits within a few seconds."""
    cert, key = certificate
    command = receive("--tls-cert", str(cert), "--tls-key", str(key), "--read-timeout", "10")
    with connect(command.port) as silent, connect(command.port) as halfway:
        halfway.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello
        time.sleep(0.2)
        started = time.monotonic()
        summary = command.stop()
        took = time.monotonic() - started
        assert closed_by_peer(silent, 1.0) and closed_by_peer(halfway, 1.0)

    assert took < 4, took
    assert (0, 2) == (summary["received"], summary["accepted"])  # in the handshake, each holds a slot


def test_tls_sender_that_does_not_trust_the_certificate_gets_nothing_in(receive, tmp_path, certificate):
    """A TLS sender with the default trust store refuses the self-signed certificate; nothing is written."""
    cert, key = certificate
    out = tmp_path / "tls.log"
    command = receive("--file", str(out), "--tls-cert", str(cert), "--tls-key", str(key))
    logger, handler = sender(command.port, tls=ssl.create_default_context(), buffer=5)
    logger.info("untrusted")
    assert wait_for(lambda: handler.failures >= 1)
    handler.close()
    summary = command.stop()

    assert 0 == summary["received"]
    assert not out.exists() or "untrusted" not in out.read_text()


# == fuzzing =======================================================================================


def test_fuzz_arbitrary_bytes_never_kill_the_receiver(running):
    """300 hypothesis cases of arbitrary bytes and frame-shaped bytes over real connections: the receiver survives each."""
    item = running(max_frame=4096, read_timeout=2.0)
    ran = {"cases": 0}
    bodies = st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["name", "levelno", "msg", "created", "extra", "ip", "user", "lineno", "x"]), inner, max_size=5),
            max_leaves=12,
        ).map(lambda value: json.dumps(value).encode()),
    )
    chunks = st.one_of(
        st.binary(max_size=300),
        st.tuples(st.sampled_from([0, 1]), bodies).map(lambda fb: raw(fb[1], flags=fb[0]) + (b"t" * 32 if fb[0] else b"")),
        st.tuples(st.integers(0, 0xFFFFFFFF), st.binary(max_size=40)).map(lambda lb: raw(lb[1], length=lb[0])),
    )

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(chunks, min_size=1, max_size=4))
    def case(parts: list[bytes]) -> None:
        ran["cases"] += 1
        with connect(item.port) as sock:
            for part in parts:
                try:
                    sock.sendall(part)
                except (ConnectionResetError, BrokenPipeError):
                    break
        assert item.thread._thread is not None and item.thread._thread.is_alive()
        assert item.good_sender_gets_through()

    case()
    assert 300 == ran["cases"]
    print(f"receiver fuzz: {ran['cases']} cases, rejected {item.receiver.rejected}")
    assert item.thread._thread is not None and item.thread._thread.is_alive()


def test_line_formatter_output_is_one_line_for_any_text():
    """LineFormatter: whatever text a record holds, one line (plus '  | ' lines for a traceback)."""

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.text(), st.text(max_size=50), st.text(max_size=50), st.one_of(st.none(), st.text()))
    def case(msg: str, user: str, name: str, exc_text: str | None) -> None:
        record = make_record(msg, name=name, user=user, ip="1.2.3.4", exc_text=exc_text)
        record.peer = "127.0.0.1:1"
        lines = LineFormatter().format(record).split("\n")
        assert all(line.startswith("  | ") for line in lines[1:])
        assert not any(re.search("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]", line) for line in lines)

    case()


def test_stop_takes_in_senders_still_waiting_to_be_accepted():
    """Senders that connected and sent before stop(), not yet accepted, are not lost."""
    got: list[logging.LogRecord] = []

    async def scenario() -> None:
        receiver = Receiver("127.0.0.1", 0, dispatch=got.append)
        await receiver.start()
        # No await until stop(): the event loop never ran, so every connection is still in
        # the kernel's listen backlog, with its frame, when stop() begins.
        senders = []
        for seq in range(50):
            sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=WAIT)
            sock.sendall(frame(f"waiting {seq}"))
            senders.append(sock)
        for sock in senders:
            sock.close()
        await receiver.stop()

    asyncio.run(scenario())

    assert [f"waiting {seq}" for seq in range(50)] == sorted(
        (r.getMessage() for r in got), key=lambda m: int(m.split()[1])
    )


# == issue 10: idle slots, stalled handshakes, replays, spoofed identity, buffered bytes ============


def closed_within(socks: list[socket.socket], want: int, timeout: float = WAIT) -> int:
    """How many of ``socks`` the other side closes, waiting until ``want`` are or ``timeout`` passes."""
    closed = 0
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while closed < want and time.monotonic() < deadline:
            for key, _ in selector.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    if sock.recv(65536):
                        continue  # a TLS alert before the close
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                selector.unregister(sock)
                closed += 1
    return closed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "secret"
    path.write_bytes(KEY + b"\n")
    return str(path)


@pytest.mark.parametrize("signed", [False, True], ids=["open", "secret"])
def test_silent_peers_at_the_cap_do_not_lock_a_sender_out(receive, tmp_path, signed):
    """8 silent peers fill --max-connections 8: a sender's records arrive at once, and the silent ones go after --read-timeout, not --idle-timeout."""
    out = tmp_path / "out.log"
    extra = ["--secret-file", secret_file(tmp_path)] if signed else []
    command = receive("--file", str(out), "--max-connections", "8", "--idle-timeout", "300", "--read-timeout", "2", *extra)
    silent = [connect(command.port) for _ in range(8)]
    try:
        logger, handler = sender(command.port, secret=KEY if signed else None)
        for n in range(5):
            logger.info("legit %d", n)
        assert delivered(out, "legit 4", 5.0)
        closed = closed_within(silent, 8)
        handler.close()
    finally:
        for sock in silent:
            sock.close()
    summary = command.stop()

    assert 8 == closed
    assert (5, 9, 0, 7) == (summary["received"], summary["accepted"], summary["refused"], summary["idle"])
    assert {"evicted": 1} == summary["rejected"]
    assert 1 == handler.connections


def test_stalled_tls_handshakes_count_against_the_cap(receive, tmp_path, certificate):
    """200 peers stalled in the TLS handshake, --max-connections 4: all but 4 closed at once (long before --read-timeout); a TLS sender still delivers."""
    cert, key = certificate
    out = tmp_path / "tls.log"
    command = receive("--file", str(out), "--tls-cert", str(cert), "--tls-key", str(key), "--max-connections", "4", "--read-timeout", "60")
    stalled = []
    try:
        for n in range(200):
            sock = connect(command.port)
            if n % 2:
                sock.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello, and no more
            stalled.append(sock)
        evicted_at_once = closed_within(stalled, 196)
        logger, handler = sender(command.port, tls=ssl.create_default_context(cafile=str(cert)))
        logger.info("over tls past 200 stalled handshakes")
        assert delivered(out, "over tls past 200 stalled handshakes")
        handler.close()
    finally:
        for sock in stalled:
            sock.close()
    summary = command.stop()

    assert 196 == evicted_at_once
    assert 197 == summary["rejected"]["evicted"]  # the sender's connection took one more slot
    assert (1, 201) == (summary["received"], summary["accepted"])
    assert 1 == len(read_lines(out))  # nothing of asyncio's or ssl's own in the file


def test_a_peer_without_a_valid_frame_keeps_its_slot_for_read_timeout_only(receive, tmp_path):
    """With --secret-file, a peer that only replays a captured frame is never 'proven': closed after --read-timeout."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out), "--secret-file", secret_file(tmp_path), "--read-timeout", "1", "--idle-timeout", "300")
    captured = frame("captured", key=KEY)
    send(command.port, captured)
    assert delivered(out, "captured")
    with connect(command.port) as replayer:
        for _ in range(3):
            replayer.sendall(captured)
        assert closed_by_peer(replayer, 8)
    summary = command.stop()

    assert (1, 1) == (summary["received"], summary["idle"])
    assert {"replayed frame": 3} == summary["rejected"]


def test_the_same_signed_bytes_four_times_give_one_record(receive, tmp_path):
    """One signed frame sent 4 times (on one connection, then on another): 1 record, 3 'replayed frame', reported; the connection goes on."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out), "--secret-file", secret_file(tmp_path))
    captured = frame("pay 100 EUR to mallory", key=KEY)
    with connect(command.port) as sock:
        sock.sendall(captured * 3 + frame("after the replays", key=KEY))
        assert delivered(out, "after the replays")
    send(command.port, captured)
    summary = command.stop()

    assert ["pay 100 EUR to mallory", "after the replays"] == [LINE.match(line)["msg"] for line in read_lines(out)]  # type: ignore[index]
    assert {"replayed frame": 3} == summary["rejected"]
    assert re.search(r"rejected a frame from 127\.0\.0\.1:\d+: replayed frame: sequence 0 of sender \w+ was seen before", command.stderr())


def test_a_frame_signed_outside_the_replay_window_is_rejected(receive, tmp_path):
    """A frame signed 2 windows ago (built from the documented layout) is 'stale frame'; one signed now passes."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out), "--secret-file", secret_file(tmp_path), "--replay-window", "60")
    assert "replay window 60 s" in command.stderr()
    body = json.dumps(fields(msg="signed long ago")).encode()
    head = struct.pack(">2sBBI16sQQ", b"CX", 2, 1, len(body), b"o" * 16, 0, time.time_ns() // 1_000_000 - 120_000)
    old = head + hmac.new(KEY, head + body, hashlib.sha256).digest() + body
    with connect(command.port) as sock:
        sock.sendall(old + frame("signed now", key=KEY))
        assert delivered(out, "signed now")
    summary = command.stop()

    assert {"stale frame": 1} == summary["rejected"]
    assert "signed long ago" not in out.read_text()
    assert "signed 120 s ago, outside the replay window of 60 s" in command.stderr()


def test_records_kept_through_an_outage_longer_than_the_window_are_delivered(receive, tmp_path):
    """The receiver is down for longer than --replay-window: the sender's buffered records are signed when sent, and all arrive."""
    port = free_port()
    logger, handler = sender(port, secret=KEY)
    for n in range(50):
        logger.info("kept %d", n)
    assert wait_for(lambda: handler.failures >= 1)
    logged = time.monotonic()
    assert 50 == handler.stats()["buffered"]
    wait_for(lambda: time.monotonic() - logged > 2.5, 5)  # two windows pass with the receiver away
    out = tmp_path / "out.log"
    command = Command(tmp_path, "--file", str(out), "--secret-file", secret_file(tmp_path), "--replay-window", "1", listen=f"127.0.0.1:{port}")
    try:
        command.started()
        assert delivered(out, "kept 49")
        handler.close()
        summary = command.stop()
    finally:
        command.kill()

    assert [f"kept {n}" for n in range(50)] == [LINE.match(line)["msg"] for line in read_lines(out)]  # type: ignore[index]
    assert {} == summary["rejected"]


def test_level_names_and_identity_a_sender_cannot_dress_up(receive, tmp_path):
    """Level names that read as standard ones print as 'Level 25'; a frame without process shows 'pid -', never the receiver's own."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out))
    spoofs = ["critical", "CRITICAL\u200b", "\uff23\uff32\uff29\uff34\uff29\uff23\uff21\uff2c", " ERROR", "ERR0R"]
    data = b"".join(raw(fields(levelno=25, levelname=name, msg=f"spoof {n}")) for n, name in enumerate(spoofs))
    data += raw(fields(levelno=25, levelname="NOTICE", msg="custom", process=4242))
    send(command.port, data)
    assert delivered(out, "custom")
    summary = command.stop()

    shown = [re.search(r",\d{3} (.+?) - - - shop\.views (.+) \[pid (\S+) from", line) for line in read_lines(out)]
    assert all(shown), read_lines(out)
    expected = [("Level 25", f"spoof {n}", "-") for n in range(5)] + [("NOTICE", "custom", "4242")]
    assert expected == [m.groups() for m in shown]  # type: ignore[union-attr]
    assert str(command.proc.pid) not in out.read_text()
    assert 6 == summary["received"]


def test_unfinished_frames_are_capped_in_total(receive, tmp_path):
    """--max-buffered 2MiB: 8 peers each holding 900 KB of an unfinished frame; 6 are closed (the largest first), a sender still delivers."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out), "--max-frame", "1MiB", "--max-buffered", "2MiB", "--read-timeout", "60")
    header = struct.pack(">2sBBI", b"CX", 1, 0, 1024 * 1024)
    peers = []
    try:
        for _ in range(8):
            sock = connect(command.port)
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                sock.sendall(header + b"x" * 900_000)
            peers.append(sock)
        closed = closed_within(peers, 6)
        send(command.port, frame("small and whole"))
        assert delivered(out, "small and whole")
        rss = command.rss()
    finally:
        for sock in peers:
            sock.close()
    summary = command.stop()

    assert 6 == closed
    assert {"buffer limit": 6, "truncated frame": 2} == summary["rejected"]  # the 2 left, closed by this test
    assert rss < 120 * 1024 * 1024, rss


def test_max_buffered_defaults_to_64_mib_or_one_frame():
    """The total cap is 64 MiB by default, raised to one largest frame if --max-frame is larger."""
    assert 64 * 1024 * 1024 == Receiver(port=0).max_buffered
    assert 100 * 1024 * 1024 + _wire.MAX_OVERHEAD == Receiver(port=0, max_frame=100 * 1024 * 1024).max_buffered
    with pytest.raises(ValueError, match="raise it to at least 1048648"):
        Receiver(port=0, max_buffered=1024 * 1024)


def test_a_lone_surrogate_is_delivered_escaped_never_dropped(receive, tmp_path):
    """A message, a request field and an extra holding '\\ud800': sent, received, written as '\\ud800'; nothing dropped."""
    out = tmp_path / "out.log"
    command = receive("--file", str(out), "--secret-file", secret_file(tmp_path))
    logger, handler = sender(command.port, secret=KEY)
    with ctxlog.scope(user="eve\ud800"):
        logger.warning("search for %s", "a\ud800b", extra={"note": "\udcff"})
    handler.close()
    assert delivered(out, "search for")
    summary = command.stop()

    (line,) = read_lines(out)
    match = LINE.match(line)
    assert match is not None, line
    assert ("eve\\ud800", "search for a\\ud800b") == (match["user"], match["msg"])
    assert (0, 1) == (handler.dropped, handler.sent)
    assert {} == summary["rejected"]
