"""Live reconfiguration: a real listener thread on 127.0.0.1, signed pushes, hostile peers."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import queue
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest

import ctxlog
from ctxlog import liveconfig as _config_server
from ctxlog.cli import main
from ctxlog.liveconfig import (
    MAX_CONNECTIONS,
    MAX_PAYLOAD,
    ConfigServer,
    config_server,
    push,
)
from ctxlog.liveconfig.protocol import seal as _seal

SECRET = b"test-secret-0123456789abcdef"
OTHER_SECRET = b"another-secret-0123456789abcdef"
APP = "ctxlog_test_live.app"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _logger_state() -> dict[str, Any]:
    """Everything about loggers and named handlers a configuration could change."""
    manager = logging.Logger.manager
    loggers = {
        name: (logger.level, tuple(logger.handlers), logger.disabled, logger.propagate)
        for name, logger in list(manager.loggerDict.items())
        if isinstance(logger, logging.Logger)
    }
    root = logging.getLogger()
    named = {name: (h, h.level) for name, h in list(logging._handlers.items())}
    return {"root": (root.level, tuple(root.handlers)), "loggers": loggers, "handlers": named}


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put loggers, named handlers and the handler list back as they were."""
    manager = logging.Logger.manager
    saved = {
        name: (logger.level, list(logger.handlers), logger.disabled, logger.propagate)
        for name, logger in list(manager.loggerDict.items())
        if isinstance(logger, logging.Logger)
    }
    root = logging.getLogger()
    root_saved = (root.level, list(root.handlers))
    named = dict(logging._handlers)
    handler_list = list(logging._handlerList)
    yield
    with logging._lock:
        for name, (level, handlers, disabled, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.disabled = disabled
            logger.propagate = propagate
        root.setLevel(root_saved[0])
        root.handlers[:] = root_saved[1]
        logging._handlers.clear()
        logging._handlers.update(named)
        logging._handlerList[:] = handler_list
    for name in list(manager.loggerDict):
        if name.startswith("ctxlog_test_live") and name not in saved:
            logging.getLogger(name).setLevel(logging.NOTSET)
            logging.getLogger(name).handlers.clear()


@pytest.fixture
def server() -> Iterator[ConfigServer]:
    with config_server(0, secret=SECRET) as running:
        yield running


@pytest.fixture
def full_server() -> Iterator[ConfigServer]:
    with config_server(0, secret=SECRET, allow_full_config=True) as running:
        yield running


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET + b"\n")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def send_raw(port: int, payload: bytes, *, length: int | None = None) -> None:
    """Send one frame the way the Cookbook's client does; return when the listener hangs up."""
    header = struct.pack(">L", len(payload) if length is None else length)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(header + payload)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass


def read_to_end(sock: socket.socket) -> bytes:
    """Read until the listener closes the connection; a reset counts as closed."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def push_cli(config: Path, port: int, secret: Path) -> int:
    return main(["config", "push", str(config), "--port", str(port), "--secret-file", str(secret)])


def signed(body: bytes, secret: bytes = SECRET) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest() + body


def envelope(config: object, **changes: object) -> bytes:
    fields: dict[str, object] = {
        "v": 1,
        "ts": time.time(),
        "nonce": os.urandom(16).hex(),
        "config": config,
    }
    fields.update(changes)
    return json.dumps(fields).encode()


def rejections(capture) -> list[str]:
    return [
        r.getMessage()
        for r in capture.named("ctxlog.config")
        if r.levelno == logging.WARNING and "rejected" in r.getMessage()
    ]


def wait_for_rejections(capture, count: int, timeout: float = 5.0) -> list[str]:
    """Poll until ``count`` rejections are logged (bounded); return them."""
    deadline = time.monotonic() + timeout
    while len(rejections(capture)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return rejections(capture)


def outcomes(capture, level: int) -> list[str]:
    return [r.getMessage() for r in capture.named("ctxlog.config") if r.levelno == level]


def wait_for_level(name: str, level: int, timeout: float = 5.0) -> int:
    """Poll until the logger has ``level`` (bounded); return what it has."""
    logger = logging.getLogger(name)
    deadline = time.monotonic() + timeout
    while logger.level != level and time.monotonic() < deadline:
        time.sleep(0.01)
    return logger.level


LEVELS = {"version": 1, "loggers": {APP: {"level": "DEBUG"}}}


# --- applied -------------------------------------------------------------------------------


def test_level_change_is_applied(server, capture):
    """A signed level change reaches the running app, which logs that it accepted it."""
    logging.getLogger(APP).setLevel(logging.WARNING)

    push(LEVELS, secret=SECRET, port=server.port)

    assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)
    applied = [m for m in outcomes(capture, logging.INFO) if "configuration applied" in m]
    assert [f"logger {APP}=DEBUG"] == [m.split("level changes: ")[1] for m in applied]
    assert applied[0].startswith("configuration applied from 127.0.0.1:")
    assert [] == rejections(capture)


def test_root_handler_and_numeric_levels(server):
    """Root, logger and named-handler levels change; names and numbers are both accepted."""
    handler = logging.NullHandler()
    handler.set_name("ctxlog_test_live_handler")
    config = {
        "version": 1,
        "incremental": True,
        "root": {"level": "info"},
        "loggers": {APP: {"level": 40}, APP + ".db": {"level": 0}},
        "handlers": {"ctxlog_test_live_handler": {"level": "ERROR"}},
    }

    push(config, secret=SECRET, port=server.port)

    assert logging.ERROR == wait_for_level(APP, logging.ERROR)
    assert logging.INFO == logging.getLogger().level
    assert logging.NOTSET == logging.getLogger(APP + ".db").level
    assert logging.ERROR == handler.level


def test_secret_as_str_and_as_file(secret_file):
    """The secret may be given as str or as a path; both sides read a file the same way."""
    with config_server(0, secret=secret_file) as running:
        push(LEVELS, secret=SECRET.decode(), port=running.port)

        assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)


def test_full_config_applies_with_opt_in(full_server, tmp_path, capture):
    """With allow_full_config=True a signed dictConfig adds a handler."""
    log_file = tmp_path / "full.log"
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "ctxlog_test_live_file": {"class": "logging.FileHandler", "filename": str(log_file)}
        },
        "loggers": {APP: {"level": "INFO", "handlers": ["ctxlog_test_live_file"]}},
    }

    # A full dictConfig closes every handler in logging._handlerList, which in this process
    # includes other tests' handlers; hide them (the autouse fixture puts the list back).
    with logging._lock:
        logging._handlerList[:] = []

    push(config, secret=SECRET, port=full_server.port)

    logger = logging.getLogger(APP)
    assert logging.INFO == wait_for_level(APP, logging.INFO)
    [handler] = logger.handlers
    logger.info("through the new handler")
    handler.close()
    assert "through the new handler\n" == log_file.read_text()
    applied = [m for m in outcomes(capture, logging.INFO) if "configuration applied" in m]
    assert 1 == len(applied) and "a full dictConfig" in applied[0]


# --- rejected ------------------------------------------------------------------------------


def marker_config(marker: Path, where: str = "handlers") -> dict[str, Any]:
    return {"version": 1, where: {"x": {"()": "os.system", "command": f"touch {marker}"}}}


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"version": 1, "formatters": {"f": {"format": "%(message)s"}}}, "key 'formatters'"),
        ({"version": 1, "loggers": {APP: {"level": "INFO", "handlers": ["h"]}}}, "key 'handlers'"),
        ({"version": 1, "loggers": {APP: {"level": "INFO", "propagate": False}}}, "'propagate'"),
        ({"version": 1, "root": {"level": "ext://os.system"}}, "'ext://os.system' is not a level"),
        ({"version": 1, "loggers": {APP: {"level": "cfg://handlers.x"}}}, "is not a level"),
        ({"version": 1, "loggers": {APP: {"level": "LOUD"}}}, "'LOUD' is not a level"),
        ({"version": 1, "loggers": {APP: {"level": True}}}, "True is not a level"),
        ({"version": 1, "loggers": {APP: {"level": 1000}}}, "1000 is not a level"),
        ({"version": 1, "loggers": {APP: {}}}, 'no "level"'),
        ({"version": 1, "loggers": [APP]}, "loggers: a JSON list"),
        ({"version": 1, "handlers": {"ctxlog_test_live_nope": {"level": "INFO"}}}, "no handler"),
        ({"version": 1, "incremental": False, "root": {"level": "INFO"}}, '"incremental"'),
        ({"version": 1, "disable_existing_loggers": False}, "'disable_existing_loggers'"),
        ({"version": 2, "root": {"level": "INFO"}}, '"version" is 2'),
        ({"root": {"level": "INFO"}}, '"version" is None'),
    ],
)
def test_signed_but_not_levels_only_is_refused(server, capture, config, reason):
    """Anything but level changes is refused by default, naming the offending part."""
    before = _logger_state()

    send_raw(server.port, signed(envelope(config)))

    assert before == _logger_state()
    [message] = rejections(capture)
    assert reason in message, message
    assert "unchanged" in message


@pytest.mark.parametrize("where", ["handlers", "formatters", "filters", "loggers"])
def test_signed_code_is_not_run_without_opt_in(server, capture, tmp_path, where):
    """A signed configuration naming os.system is refused by default and runs nothing."""
    marker = tmp_path / "marker"
    before = _logger_state()

    push(marker_config(marker, where), secret=SECRET, port=server.port)

    assert before == _logger_state()
    assert not marker.exists()
    [message] = rejections(capture)
    assert "'()'" in message or f"key '{where}'" in message


def test_unsigned_code_is_not_run_even_with_opt_in(full_server, capture, tmp_path):
    """An unsigned dictConfig (the Cookbook's client) runs nothing, even with full config on."""
    marker = tmp_path / "marker"
    before = _logger_state()

    send_raw(full_server.port, json.dumps(marker_config(marker)).encode())
    ini = f"[loggers]\nkeys=root\n[handlers]\nkeys=h\n[handler_h]\nargs=(__import__('os').system('touch {marker}'),)\n"
    send_raw(full_server.port, ini.encode())

    assert before == _logger_state()
    assert not marker.exists()
    assert {"bad signature": 2} == full_server.rejected
    [message] = rejections(capture)  # the second is in the summary at stop()
    assert "bad signature" in message


def test_wrong_secret_is_refused(full_server, capture, tmp_path):
    """A configuration signed with another secret is refused, with full config on too."""
    marker = tmp_path / "marker"

    push(marker_config(marker), secret=OTHER_SECRET, port=full_server.port)

    assert not marker.exists()
    assert ["bad signature"] == [m.split(": ", 1)[1].split(" (")[0] for m in rejections(capture)]


def test_tampered_message_is_refused(server, capture):
    """Changing one byte of a signed message makes its signature fail."""
    logging.getLogger(APP).setLevel(logging.WARNING)
    payload = bytearray(_seal({"version": 1, "loggers": {APP: {"level": "ERROR"}}}, SECRET))
    at = payload.index(b"ERROR")
    payload[at : at + 5] = b"DEBUG"
    before = _logger_state()

    send_raw(server.port, bytes(payload))

    assert before == _logger_state()
    assert "bad signature" in rejections(capture)[0]


def test_replayed_message_is_refused(server, capture):
    """The same signed bytes sent twice are applied once."""
    logger = logging.getLogger(APP)
    payload = _seal(LEVELS, SECRET)
    send_raw(server.port, payload)
    assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)
    logger.setLevel(logging.WARNING)

    send_raw(server.port, payload)

    assert logging.WARNING == logger.level
    assert ["replayed"] == [m.split(": ", 2)[1] for m in rejections(capture)]


@pytest.mark.parametrize(("skew", "reason"), [(-120, "s old"), (120, "in the future")])
def test_message_outside_max_age_is_refused(server, capture, skew, reason):
    """A timestamp more than max_age from the app's clock, either way, is refused."""
    before = _logger_state()

    send_raw(server.port, _seal(LEVELS, SECRET, ts=time.time() + skew))

    assert before == _logger_state()
    [message] = rejections(capture)
    assert reason in message and "max_age 60" in message


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "0 bytes is too short"),
        (b"x" * 32, "too short to carry a signature"),
        (signed(b"{not json"), "signed, but not JSON"),
        (signed(b"\xff\xfe"), "signed, but not JSON"),
        (signed(b"[1, 2]"), "a JSON list, not an object"),
        (signed(b'{"v": 1, "ts": NaN, "nonce": "0", "config": {}}'), "NaN is not JSON"),
        (signed(b"[" * 100_000), "signed, but not JSON"),
        (signed(envelope([1])), "config: a JSON list"),
        (signed(envelope(LEVELS, v=2)), "version 2 is not supported"),
        (signed(envelope(LEVELS, ts="now")), "ts: 'now' is not a number"),
        (signed(envelope(LEVELS, ts=10**400)), "is not a number of seconds"),
        (signed(envelope(LEVELS).replace(b'"ts": ', b'"ts": 1e999, "x": ')), "message's keys"),
        (signed(envelope(LEVELS, ts=None).replace(b"null", b"1e999")), "ts: inf is not"),
        (signed(envelope(LEVELS, nonce="abc")), "nonce: 'abc' is not 32"),
        (signed(json.dumps({"v": 1, "config": LEVELS}).encode()), "the message's keys"),
    ],
    ids=lambda value: value[:24] if isinstance(value, str) else None,
)
def test_malformed_message_is_refused(server, capture, payload, reason):
    """Malformed messages, signed or not, are refused with the reason."""
    before = _logger_state()

    send_raw(server.port, payload)

    assert before == _logger_state()
    [message] = rejections(capture)
    assert reason in message, message


def test_oversized_message_is_refused(server, capture):
    """A length over MAX_PAYLOAD is refused when announced; the body is not read."""
    before = _logger_state()

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(struct.pack(">L", MAX_PAYLOAD + 1) + b"\0" * 1000)
        assert b"" == read_to_end(sock)

    assert before == _logger_state()
    [message] = rejections(capture)
    assert f"announces {MAX_PAYLOAD + 1} bytes, over the limit of {MAX_PAYLOAD}" in message


def test_listener_survives_hostile_messages(server, capture, tmp_path):
    """After a run of bad messages and dropped connections the listener still applies a good one."""
    marker = tmp_path / "marker"
    replay = _seal({"version": 1, "loggers": {APP: {"level": "ERROR"}}}, SECRET)
    send_raw(server.port, replay)
    for payload in [
        replay,
        b"garbage" * 10,
        signed(b"nope"),
        json.dumps(marker_config(marker)).encode(),
        _seal(marker_config(marker), SECRET),
        _seal(LEVELS, SECRET, ts=0.0),
    ]:
        send_raw(server.port, payload)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"\0\0")  # half a length header, then hang up
    with socket.create_connection(("127.0.0.1", server.port)):
        pass  # nothing at all: logged at DEBUG only

    push({"version": 1, "loggers": {APP: {"level": "CRITICAL"}}}, secret=SECRET, port=server.port)

    assert logging.CRITICAL == wait_for_level(APP, logging.CRITICAL)
    expected = {
        "replayed": 1,
        "bad signature": 2,
        "malformed": 1,
        "not allowed": 1,
        "stale": 1,
        "incomplete": 1,
    }
    # One line per reason: the second bad signature waits for the summary.
    assert 6 == len(wait_for_rejections(capture, 6))
    assert expected == server.rejected
    assert "incomplete message (2 of the 4 length bytes)" in rejections(capture)[-1]
    assert not marker.exists()


# --- hostile peers: each of these holds up or spins logging.config.listen's listener ----------


def thread_cpu_seconds(thread: threading.Thread) -> float:
    """User and system CPU time of another thread of this process, from /proc."""
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_peer_that_hangs_up_mid_message_costs_no_cpu(capture):
    """A length announced then a hang-up is rejected at once, and the thread does not spin."""
    with config_server(0, secret=SECRET, read_timeout=30) as running:
        with socket.create_connection(("127.0.0.1", running.port)) as sock:
            sock.sendall(struct.pack(">L", 100) + b"x" * 10)

        [message] = wait_for_rejections(capture, 1)
        assert "incomplete message (10 of the 100 payload bytes announced)" in message
        assert "the peer closed the connection" in message
        before = thread_cpu_seconds(running._thread), time.process_time()
        time.sleep(0.5)
        listener = thread_cpu_seconds(running._thread) - before[0]
        process = time.process_time() - before[1]

        # logging.config.listen leaves a request thread spinning here: 0.5 s of CPU in 0.5 s.
        assert listener < 0.05, f"the listener used {listener:.2f} s of CPU in 0.5 s"
        assert process < 0.25, f"the process used {process:.2f} s of CPU in 0.5 s"
        push(LEVELS, secret=SECRET, port=running.port)
        assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)


def test_huge_announced_length_is_refused_at_once(server, capture):
    """0xFFFFFFF0 announced: rejected and closed straight away, nothing read or allocated."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(struct.pack(">L", 0xFFFFFFF0))

        assert b"" == read_to_end(sock)  # closed by the listener, with the peer still there

    assert time.monotonic() - started < 2
    [message] = rejections(capture)
    assert f"announces {0xFFFFFFF0} bytes, over the limit of {MAX_PAYLOAD} (not read)" in message


def test_stalled_peer_is_closed_after_read_timeout(capture):
    """Half a message then silence: other pushes go through, and the peer is cut at read_timeout."""
    with (
        config_server(0, secret=SECRET, read_timeout=0.5) as running,
        socket.create_connection(("127.0.0.1", running.port), timeout=5) as stalled,
    ):
        started = time.monotonic()
        stalled.sendall(struct.pack(">L", 100) + b"x" * 50)

        push(LEVELS, secret=SECRET, port=running.port)
        assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)

        assert b"" == read_to_end(stalled)
        waited = time.monotonic() - started

    assert 0.4 < waited < 3
    [message] = rejections(capture)
    assert "incomplete message (50 of the 100 payload bytes announced)" in message
    assert "not received within read_timeout 0.5 s" in message


def test_idle_connections_do_not_keep_a_push_out(server, capture):
    """50 connections that send nothing: a push right after them is applied promptly."""
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    try:
        started = time.monotonic()

        push(LEVELS, secret=SECRET, port=server.port, timeout=10)

        assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)
        assert time.monotonic() - started < 3  # read_timeout is 5 s: nobody waited for it
    finally:
        for sock in idle:
            sock.close()
    assert server.rejected["too many connections"] >= 50 - MAX_CONNECTIONS
    [made_room] = [m for m in rejections(capture) if "closed to make room" in m]
    assert "(0 of the 4 length bytes)" in made_room


def test_message_sent_in_pieces_is_applied(server):
    """The length and the payload may arrive a few bytes at a time."""
    payload = _seal(LEVELS, SECRET)
    frame = struct.pack(">L", len(payload)) + payload
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for start, end in [(0, 1), (1, 4), (4, 40), (40, len(frame))]:
            sock.sendall(frame[start:end])
            time.sleep(0.02)
        sock.shutdown(socket.SHUT_WR)
        assert b"" == read_to_end(sock)

    assert logging.DEBUG == logging.getLogger(APP).level


def test_rejection_names_the_peer(server, capture):
    """The log of a rejected message gives the address and port it came from."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        where = "{}:{}".format(*sock.getsockname())
        payload = json.dumps(LEVELS).encode()
        sock.sendall(struct.pack(">L", len(payload)) + payload)
        read_to_end(sock)

    [message] = rejections(capture)
    assert message.startswith(f"configuration rejected from {where}: bad signature")


def test_failed_full_config_is_logged_and_listener_survives(full_server, capture):
    """dictConfig raising is an ERROR with its reason on ctxlog.config, not a stderr traceback."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"ctxlog_test_live_h": {"class": "ctxlog_test_live_missing.Handler"}},
        "loggers": {APP: {"level": "INFO", "handlers": ["ctxlog_test_live_h"]}},
    }
    with logging._lock:  # a full dictConfig closes every handler it knows: hide them
        logging._handlerList[:] = []

    push(config, secret=SECRET, port=full_server.port)

    [failed] = [r for r in capture.named("ctxlog.config") if r.levelno == logging.ERROR]
    message = failed.getMessage()
    assert message.startswith("configuration failed from 127.0.0.1:")
    assert "Unable to configure handler 'ctxlog_test_live_h'" in message
    assert "ctxlog_test_live_missing" in message and "partly applied" in message
    assert failed.exc_info is not None
    assert [] == [m for m in outcomes(capture, logging.INFO) if "applied" in m]

    push(LEVELS, secret=SECRET, port=full_server.port)
    assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)


# --- start-up and shut-down ------------------------------------------------------------------


@pytest.mark.parametrize("secret", [b"short", "short", b"", "x" * 15])
def test_short_secret_is_refused_at_start(secret):
    """A secret under 16 bytes is a start-up error that says what to do."""
    with pytest.raises(ValueError, match="too short; use at least 16 random bytes"):
        config_server(0, secret=secret)


def test_short_secret_file_is_refused_at_start(tmp_path):
    """A secret file holding under 16 bytes, or missing, is a start-up error."""
    short = tmp_path / "short"
    short.write_text("0123456789abcde\n")

    with pytest.raises(ValueError, match="is 15 bytes; use at least 16"):
        config_server(0, secret=short)
    with pytest.raises(ValueError, match="cannot read the secret file"):
        config_server(0, secret=tmp_path / "missing")


@pytest.mark.parametrize(
    "host", ["example.com", "", "127.0.0.1:9030", "127.1", "[::1]", 2130706433, b"\x7f\0\0\1"]
)
def test_host_that_is_not_an_address_is_refused(host):
    """host must be an IP address (or localhost): a name or anything else is a clear error."""
    with pytest.raises(ValueError, match=r"host: .* is not an IP address to listen on"):
        config_server(0, secret=SECRET, host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_hosts_are_accepted(host):
    """127.0.0.1 and localhost (which means 127.0.0.1) are listened on."""
    with config_server(0, secret=SECRET, host=host) as running:
        assert f"127.0.0.1:{running.port}" in repr(running)
        push(LEVELS, secret=SECRET, port=running.port)
        assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"port": -1}, "port: -1 is not a TCP port"),
        ({"port": 70000}, "port: 70000"),
        ({"max_age": 0}, "max_age: 0"),
        ({"max_age": float("inf")}, "max_age: inf"),
        ({"read_timeout": 0}, "read_timeout: 0"),
        ({"read_timeout": -1.0}, "read_timeout: -1.0"),
        ({"read_timeout": float("nan")}, "read_timeout: nan"),
        ({"read_timeout": "5"}, "read_timeout: '5'"),
        ({"report_interval": 0}, "report_interval: 0"),
        ({"report_interval": float("nan")}, "report_interval: nan"),
    ],
)
def test_bad_options_are_refused(options, match):
    """Ports, max_age, read_timeout and report_interval outside their range fail at start."""
    with pytest.raises(ValueError, match=match):
        config_server(secret=SECRET, **{"port": 0, **options})


def test_two_servers_in_one_process():
    """Two listeners run side by side; stopping one leaves the other working."""
    other = APP + ".other"
    error, info = (
        {"version": 1, "loggers": {other: {"level": level}}} for level in ("ERROR", "INFO")
    )
    with config_server(0, secret=SECRET) as first, config_server(0, secret=OTHER_SECRET) as second:
        push(LEVELS, secret=SECRET, port=first.port)
        push(error, secret=OTHER_SECRET, port=second.port)
        assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)
        assert logging.ERROR == wait_for_level(other, logging.ERROR)

        first.stop()
        push(info, secret=OTHER_SECRET, port=second.port)

        assert logging.INFO == wait_for_level(other, logging.INFO)


def test_port_in_use_is_refused():
    """A port already taken is an OSError at start-up, not a traceback in a thread."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}: ") as raised:
            config_server(port, secret=SECRET)

    assert raised.value.errno is not None


def test_stop_is_idempotent_and_frees_the_port():
    """stop() ends the thread quickly, can be called again, and the port refuses connections."""
    running = config_server(0, secret=SECRET)
    threads = threading.active_count()
    started = time.monotonic()

    running.stop()
    running.stop()

    assert time.monotonic() - started < 2
    assert threading.active_count() < threads
    assert "stopped" in repr(running)
    with pytest.raises(ConnectionRefusedError):
        push(LEVELS, secret=SECRET, port=running.port)


def test_stop_is_prompt_with_peers_connected():
    """stop() does not wait for connected peers: it closes their connections and the port."""
    running = config_server(0, secret=SECRET)
    assert running._thread.daemon
    peers = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(3)]
    try:
        peers[0].sendall(struct.pack(">L", 100) + b"x" * 10)
        started = time.monotonic()

        running.stop()

        assert time.monotonic() - started < 1
        assert not running._thread.is_alive()
        for peer in peers:
            peer.settimeout(5)
            assert b"" == read_to_end(peer)
    finally:
        for peer in peers:
            peer.close()


def test_fixed_port_is_used():
    """A port given explicitly is the one listened on."""
    port = free_port()

    with config_server(port, secret=SECRET) as running:
        assert port == running.port
        push(LEVELS, secret=SECRET, port=port)
        assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)


# --- push() and the command line -------------------------------------------------------------


def test_push_checks_its_input():
    """push() refuses a configuration without version 1, a bad port or a short secret."""
    with pytest.raises(ValueError, match='"version": 1'):
        push({"root": {"level": "INFO"}}, secret=SECRET)
    with pytest.raises(ValueError, match="not a TCP port"):
        push(LEVELS, secret=SECRET, port=0)
    with pytest.raises(ValueError, match="too short"):
        push(LEVELS, secret=b"short")
    with pytest.raises(ValueError, match="cannot be sent as JSON"):
        push({"version": 1, "root": {"level": float("nan")}}, secret=SECRET)


def test_cli_pushes_json(server, secret_file, tmp_path, capsys):
    """ctxlog config push FILE.json applies a level change and says where to look."""
    config = tmp_path / "debug.json"
    config.write_text(json.dumps(LEVELS))

    status = push_cli(config, server.port, secret_file)

    assert 0 == status
    assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)
    out, err = capsys.readouterr()
    assert "" == err
    assert f"to 127.0.0.1:{server.port}" in out and "ctxlog.config" in out


def test_cli_pushes_toml(server, secret_file, tmp_path):
    """ctxlog config push FILE.toml works the same."""
    config = tmp_path / "levels.toml"
    config.write_text(f'version = 1\n[root]\nlevel = "INFO"\n[loggers."{APP}"]\nlevel = "ERROR"\n')

    status = push_cli(config, server.port, secret_file)

    assert 0 == status
    assert logging.ERROR == wait_for_level(APP, logging.ERROR)
    assert logging.INFO == logging.getLogger().level


def test_cli_wrong_secret_is_sent_and_rejected_by_the_app(server, tmp_path, capture):
    """The sender cannot tell a rejection; the app logs it and stays as it was."""
    config = tmp_path / "debug.json"
    config.write_text(json.dumps(LEVELS))
    wrong = tmp_path / "wrong"
    wrong.write_bytes(OTHER_SECRET)
    before = _logger_state()

    status = push_cli(config, server.port, wrong)

    assert 0 == status
    assert before == _logger_state()
    assert "bad signature" in rejections(capture)[0]


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "cannot read the secret file"),
        (b"", "is 0 bytes; use at least 16"),
        (b"\n", "is 0 bytes; use at least 16"),
        (b"0123456789abcde\n", "is 15 bytes; use at least 16"),
    ],
)
def test_cli_bad_secret_file_is_a_usage_error(tmp_path, capsys, secret, message):
    """A missing, empty or short secret file exits 2 with one line and no traceback."""
    config = tmp_path / "debug.json"
    config.write_text(json.dumps(LEVELS))
    path = tmp_path / "secret"
    if secret is not None:
        path.write_bytes(secret)

    status = push_cli(config, free_port(), path)

    out, err = capsys.readouterr()
    assert (2, "") == (status, out)
    assert err.startswith("ctxlog config push: ") and message in err
    assert "Traceback" not in err and 1 == err.count("\n")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, "cannot read"),
        ("bad.json", "{", "is not valid JSON"),
        ("list.json", "[]", "holds a list, not a dictConfig"),
        ("bad.toml", "version = ", "is not valid TOML"),
        ("levels.yaml", "version: 1", "give a .json or a .toml file"),
        ("noversion.json", '{"root": {"level": "INFO"}}', '"version": 1'),
    ],
)
def test_cli_bad_config_file_is_a_usage_error(secret_file, capsys, name, content, message):
    """An unreadable or unusable configuration file exits 2 with the reason."""
    path = secret_file.parent / name
    if content is not None:
        path.write_text(content)

    status = push_cli(path, free_port(), secret_file)

    err = capsys.readouterr().err
    assert 2 == status
    assert message in err and "Traceback" not in err


def test_cli_without_a_listener_exits_1(tmp_path, secret_file, capsys):
    """Nothing listening on the port is exit status 1 with the address."""
    config = tmp_path / "debug.json"
    config.write_text(json.dumps(LEVELS))
    port = free_port()

    status = push_cli(config, port, secret_file)

    assert 1 == status
    assert f"cannot send to 127.0.0.1:{port}" in capsys.readouterr().err


# --- the public name and the example ---------------------------------------------------------


def test_public_name():
    """ctxlog.config_server is this module's function."""
    assert _config_server.config_server is ctxlog.config_server


def test_example_changes_level_of_running_app(tmp_path, secret_file):
    """examples/live_config.py starts logging DEBUG lines after a pushed level change."""
    env = {**os.environ, "CTXLOG_CONFIG_SECRET_FILE": str(secret_file), "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, str(EXAMPLES / "live_config.py"), "--port", "0", "--seconds", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    ) as proc:
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines))
        reader.start()
        try:
            port = int(_next_matching(lines, "listening on 127.0.0.1:").rsplit(":", 1)[1])
            assert " DEBUG " not in _next_matching(lines, " INFO ")

            push({"version": 1, "loggers": {"shop": {"level": "DEBUG"}}}, secret=SECRET, port=port)

            assert "configuration applied from 127.0.0.1:" in _next_matching(lines, "ctxlog.config")
            assert "shop" in _next_matching(lines, " DEBUG ")
        finally:
            proc.terminate()
            proc.wait(10)
            reader.join(10)


def _read_lines(stream, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _next_matching(lines: queue.Queue[str | None], text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        if line is None:
            pytest.fail(f"the example ended before printing {text!r}:\n{''.join(seen)}")
        seen.append(line)
        if text in line:
            return line


# --- rejections are counted and rate-limited; push() has one deadline -------------------------


def junk(port: int, payload: bytes = b"", *, length: int | None = None) -> None:
    """Send one message without the secret; return when the listener hangs up (or resets)."""
    header = struct.pack(">L", len(payload) if length is None else length)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(header + payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return  # closed on us at once: what the listener does with a length over the limit
        read_to_end(sock)


def test_300_junk_messages_log_one_warning_per_reason_and_count_them_all(capture):
    """300 messages without the secret, 3 reasons: 3 WARNING lines, then one summary per reason."""
    with config_server(0, secret=SECRET, report_interval=600) as running:
        for _ in range(100):
            junk(running.port, os.urandom(64))
            junk(running.port, b"too short")
            junk(running.port, length=MAX_PAYLOAD + 1)

        assert {"bad signature": 100, "too short": 100, "too large": 100} == running.rejected
        during = rejections(capture)
        push(LEVELS, secret=SECRET, port=running.port)  # and the listener still works
        assert logging.DEBUG == wait_for_level(APP, logging.DEBUG)

    assert 3 == len(during)
    summaries = rejections(capture)[3:]
    assert 3 == len(summaries)  # at stop(), for what was held back
    for reason in ("bad signature", "too short", "too large"):
        [summary] = [m for m in summaries if f"({reason})" in m]
        assert "rejected 99 more times in the last 600 s for the same reason" in summary
        assert "from 127.0.0.1;" in summary


def test_rejections_are_summarised_once_the_interval_is_over(capture):
    """After report_interval, the rejections held back are logged as one line, listener running."""
    with config_server(0, secret=SECRET, report_interval=0.2) as running:
        for _ in range(5):
            junk(running.port, os.urandom(64))

        lines = wait_for_rejections(capture, 2)
        assert {"bad signature": 5} == running.rejected

    assert "bad signature" in lines[0]
    assert "rejected 4 more times in the last 0.2 s for the same reason (bad signature)" in lines[1]


class Trickler:
    """A peer on 127.0.0.1 that reads what it is sent, never closes, and sends a byte every 20 ms."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.02)
        self.port = self.listener.getsockname()[1]
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trickler", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.listener.close()

    def _run(self) -> None:
        peers: list[socket.socket] = []
        try:
            while not self._stop.is_set():
                try:
                    peer, _ = self.listener.accept()
                    peer.setblocking(False)
                    peers.append(peer)
                except TimeoutError:
                    pass
                for peer in peers:
                    with contextlib.suppress(BlockingIOError, ConnectionError):
                        self.received += len(peer.recv(1 << 20))
                    with contextlib.suppress(BlockingIOError, ConnectionError):
                        peer.send(b".")
                self._stop.wait(0.02)  # the pace of the trickle
        finally:
            for peer in peers:
                peer.close()


def test_push_gives_up_on_a_peer_that_keeps_trickling_bytes():
    """push(timeout=0.5) against a peer that sends a byte every 20 ms and never closes: gives up."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            push(LEVELS, secret=SECRET, port=peer.port, timeout=0.5)
        except Exception as error:  # whatever it is, the test reports it
            outcome.append(error)
        else:
            outcome.append(None)

    with Trickler() as peer:
        pushing = threading.Thread(target=run, daemon=True)
        pushing.start()
        pushing.join(30)

        assert not pushing.is_alive(), "push() was still waiting after 30 s"
    [error] = outcome
    assert isinstance(error, TimeoutError)
    assert f"127.0.0.1:{peer.port} did not close the connection" in str(error)
    assert "within 0.5 s" in str(error)
    assert peer.received > 4  # the message was sent whole before the wait


def test_cli_push_exits_1_in_time_against_a_trickling_peer(tmp_path, secret_file):
    """ctxlog config push --timeout 0.5, run as a process, exits 1 with a clear message."""
    config = tmp_path / "debug.json"
    config.write_text(json.dumps(LEVELS))
    command = [sys.executable, "-m", "ctxlog", "config", "push", str(config)]
    with Trickler() as peer:
        options = ["--port", str(peer.port), "--secret-file", str(secret_file), "--timeout", "0.5"]
        done = subprocess.run(
            [*command, *options], capture_output=True, text=True, timeout=60, check=False
        )

    assert 1 == done.returncode, done.stderr
    assert f"127.0.0.1:{peer.port} did not close the connection" in done.stderr
    assert "gave up (--timeout 0.5)" in done.stderr
    assert "" == done.stdout


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5", True])
def test_push_timeout_must_be_a_positive_number(timeout):
    """push(timeout=...) outside (0, inf) is a ValueError that shows the value."""
    with pytest.raises(ValueError, match=re.escape(f"timeout: {timeout!r}")):
        push(LEVELS, secret=SECRET, port=9, timeout=timeout)


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "soon"])
def test_cli_timeout_must_be_a_positive_number(tmp_path, secret_file, capsys, timeout):
    """--timeout that is not a positive number is a usage error (status 2) naming it."""
    config = tmp_path / "debug.json"
    config.write_text(json.dumps(LEVELS))
    argv = ["config", "push", str(config), "--secret-file", str(secret_file), "--timeout", timeout]

    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert 2 == exited.value.code
    assert f"{timeout!r} is not a positive number of seconds" in capsys.readouterr().err
