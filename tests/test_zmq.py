"""ZeroMQ transport: ZMQQueueHandler and ZMQQueueListener over real sockets on tcp://127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

import ctxlog
from ctxlog import wire as _wire
from ctxlog.zmq import ZMQQueueHandler, ZMQQueueListener

ANY_PORT = "tcp://127.0.0.1:*"
SECRET = b"0123456789abcdef-zmq-test"


class Sink(logging.Handler):
    """Keep records and their formatted lines; the thread-safe list is all the test reads."""

    def __init__(self, fmt: str = "%(ip)s %(user)s %(request_id)s %(message)s") -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(fmt))
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.records.append(record)

    def named(self, name: str) -> list[logging.LogRecord]:
        return [r for r in list(self.records) if r.name == name]


def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("zmqtest")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.propagate = True


@pytest.fixture
def listeners() -> Iterator[list[ZMQQueueListener]]:
    made: list[ZMQQueueListener] = []
    yield made
    for listener in made:
        listener.stop(timeout=5)


@pytest.fixture
def listen(listeners: list[ZMQQueueListener]) -> Callable[..., ZMQQueueListener]:
    """Start a listener (bound to a free port unless an address is given); stop it after."""

    def start(*handlers: logging.Handler, address: str = ANY_PORT, **options) -> ZMQQueueListener:
        listener = ZMQQueueListener(address, *handlers, **options)
        listeners.append(listener)
        listener.start()
        return listener

    return start


@pytest.fixture
def raw() -> Iterator[Callable[[int, str], zmq.Socket]]:
    """Plain pyzmq sockets, to play a misbehaving peer; all closed after the test."""
    context = zmq.Context()
    sockets: list[zmq.Socket] = []

    def make(kind: int, address: str, bind: bool = False, **options: int) -> zmq.Socket:
        sock = context.socket(kind)
        for name, value in options.items():
            sock.setsockopt(getattr(zmq, name), value)
        sock.bind(address) if bind else sock.connect(address)
        sockets.append(sock)
        return sock

    yield make
    for sock in sockets:
        sock.close(linger=0)
    context.term()


def run_bounded(action: Callable[[], None], bound: float = 60.0) -> None:
    """Run ``action`` in a watchdog thread; fail if it has not returned within ``bound``."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            action()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"still running after {bound} s"
    if errors:
        raise errors[0]


def subscribed(logger: logging.Logger, sink: Sink, level: int = logging.INFO) -> None:
    """Log probes until one arrives: a PUB socket drops what it sends before SUB has joined."""
    probe = logger.getChild("probe")
    assert wait_until(lambda: probe.log(level, "probe") or sink.named(probe.name), timeout=10)


# --- module and construction ----------------------------------------------------------------


def test_import_ctxlog_does_not_import_pyzmq():
    """Only ctxlog.zmq imports pyzmq; the library itself stays standard-library only."""
    code = "import sys, ctxlog; print('zmq' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert "False" == out.stdout.strip()


def test_missing_pyzmq_says_what_to_install(monkeypatch):
    """Without pyzmq, importing ctxlog.zmq raises ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "zmq", None)
    monkeypatch.delitem(sys.modules, "ctxlog.zmq")

    with pytest.raises(ImportError) as error:
        importlib.import_module("ctxlog.zmq")

    assert "ctxlog.zmq needs pyzmq: pip install 'ctxlog[zmq]'" == str(error.value)


@pytest.mark.parametrize(
    ("make", "exception", "text"),
    [
        (lambda: ZMQQueueHandler(object()), TypeError, "not 'class'"),  # type: ignore[arg-type]
        (lambda: ZMQQueueHandler("127.0.0.1:5556"), ValueError, "not a ZeroMQ endpoint"),
        (lambda: ZMQQueueHandler(ANY_PORT, socket_type=zmq.PULL), ValueError, "zmq.PUSH or zmq.PUB"),
        (lambda: ZMQQueueHandler(ANY_PORT, secret=b"short"), ValueError, "at least 16 bytes"),
        (lambda: ZMQQueueHandler(ANY_PORT, hwm=0), ValueError, "hwm=0"),
        (lambda: ZMQQueueHandler(ANY_PORT, linger=-1), ValueError, "linger=-1"),
        (lambda: ZMQQueueListener(ANY_PORT, socket_type=zmq.PUB), ValueError, "zmq.PULL or zmq.SUB"),
        (lambda: ZMQQueueListener(ANY_PORT, subscribe=["ERROR."]), ValueError, "zmq.SUB sockets only"),
        (lambda: ZMQQueueListener(ANY_PORT, socket_type=zmq.SUB, subscribe="ERROR."), TypeError, "list"),
        (lambda: ZMQQueueListener(ANY_PORT, max_body=0), ValueError, "max_body=0"),
        (lambda: ZMQQueueListener(ANY_PORT, secret=SECRET, replay_window=0), ValueError, "replay_window=0"),
        (lambda: ZMQQueueListener(ANY_PORT, replay_window=float("inf")), ValueError, "replay_window=inf"),
    ],
)
def test_bad_settings_are_refused_with_the_value(make, exception, text):
    """Constructors check their settings and say which value is wrong; no socket is made."""
    with pytest.raises(exception, match=text):
        make()


def test_subclasses_of_ctxlog_queue_pair():
    """The ZeroMQ classes are ctxlog's (and so the standard library's) queue handler and listener."""
    handler = ZMQQueueHandler("tcp://127.0.0.1:5556")
    listener = ZMQQueueListener("tcp://127.0.0.1:5556", respect_handler_level=True)
    handler.close()

    assert isinstance(handler, ctxlog.QueueHandler)
    assert isinstance(listener, ctxlog.QueueListener)
    assert listener.respect_handler_level is True
    assert "<ZMQQueueHandler PUSH tcp://127.0.0.1:5556 (NOTSET)>" == repr(handler)


# --- round trips ------------------------------------------------------------------------------


def test_push_pull_round_trip_keeps_context_fields(logger, listen):
    """Records sent through PUSH/PULL arrive with the sender's ip, user, request_id and bound fields."""
    sink = Sink()
    listener = listen(sink)
    handler = ZMQQueueHandler(listener.endpoint)
    logger.addHandler(handler)
    with ctxlog.scope(ip="203.0.113.7", user="alice", request_id="rid-1"):
        ctxlog.bind(order=42)
        logger.info("paid %s EUR", 12)
    logger.warning("outside")

    assert wait_until(lambda: len(sink.records) == 2)
    assert ["203.0.113.7 alice rid-1 paid 12 EUR", "- - - outside"] == sink.lines
    paid = sink.records[0]
    assert (42, "zmqtest", logging.INFO, os.getpid()) == (paid.order, paid.name, paid.levelno, paid.process)
    assert (2, 0, 0) == (listener.received, listener.rejected, handler.dropped)


def test_pub_sub_round_trip(logger, listen):
    """PUB/SUB delivers records with their context once the subscriber has joined."""
    sink = Sink()
    listener = listen(sink, socket_type=zmq.SUB)
    handler = ZMQQueueHandler(listener.endpoint, socket_type=zmq.PUB)
    logger.addHandler(handler)
    subscribed(logger, sink)
    with ctxlog.scope(ip="198.51.100.2", user="bob", request_id="rid-2"):
        for i in range(50):
            logger.info("m%d", i)

    assert wait_until(lambda: len(sink.named("zmqtest")) == 50)
    assert [f"198.51.100.2 bob rid-2 m{i}" for i in range(50)] == [
        sink.format(r) for r in sink.named("zmqtest")
    ]


def test_subscribers_choose_records_by_level_and_logger_prefix(logger, listen):
    """The PUB topic is "LEVEL.logger.": a subscription to "ERROR.zmqtest." gets only those."""
    sink = Sink("%(levelname)s %(name)s %(message)s")
    listener = listen(sink, socket_type=zmq.SUB, subscribe=["ERROR.zmqtest."])
    logger.addHandler(ZMQQueueHandler(listener.endpoint, socket_type=zmq.PUB))
    subscribed(logger, sink, logging.ERROR)  # zmqtest.probe is a child: it matches
    logger.info("not an error")
    logger.error("first error")
    logger.warning("not an error either")
    logger.error("second error")

    assert wait_until(lambda: len(sink.named("zmqtest")) == 2)
    assert ["ERROR zmqtest first error", "ERROR zmqtest second error"] == [
        sink.format(r) for r in sink.named("zmqtest")
    ]


def test_exceptions_and_stack_info_arrive_as_text_once(logger, listen):
    """A traceback crosses as text and the sink's formatter renders it once; stack_info too."""
    sink = Sink("%(message)s")
    listener = listen(sink)
    logger.addHandler(ZMQQueueHandler(listener.endpoint))
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logger.exception("failed %s", "x")
    logger.error("where", stack_info=True)

    assert wait_until(lambda: len(sink.records) == 2)
    text = "\n".join(sink.lines)
    assert (1, 1, 1) == (text.count("Traceback"), text.count("ZeroDivisionError"), text.count("Stack (most recent call last)"))
    assert sink.lines[0].startswith("failed x\nTraceback")
    assert sink.records[0].exc_info is None


def test_extras_that_are_not_plain_data_arrive_as_text(logger, listen):
    """A lock, a dict or bytes in extra= become text; numbers, bools and None stay as they are."""
    sink = Sink()
    listener = listen(sink)
    logger.addHandler(ZMQQueueHandler(listener.endpoint))
    logger.info("x", extra={"lock": threading.Lock(), "data": {"n": [1, 2]}, "raw": b"\x00", "n": 3, "ok": True, "none": None})

    assert wait_until(lambda: sink.records)
    record = sink.records[0]
    assert record.lock.startswith("<unlocked")
    assert ("{'n': [1, 2]}", "b'\\x00'", 3, True, None) == (record.data, record.raw, record.n, record.ok, record.none)


def test_listener_respects_handler_levels_when_asked(logger, listen):
    """respect_handler_level=True gives a handler only the records its level admits."""
    errors, everything = Sink("%(message)s"), Sink("%(message)s")
    errors.setLevel(logging.ERROR)
    listener = listen(errors, everything, respect_handler_level=True)
    logger.addHandler(ZMQQueueHandler(listener.endpoint))
    logger.info("info")
    logger.error("error")

    assert wait_until(lambda: len(everything.records) == 2)
    assert (["error"], ["info", "error"]) == (errors.lines, everything.lines)


# --- signing and hostile input ----------------------------------------------------------------


def test_signed_frames_pass_and_bad_messages_are_counted_and_skipped(logger, listen, raw, capsys):
    """With a secret, unsigned, tampered, wrongly signed and garbage messages are rejected; good ones flow."""
    sink = Sink("%(message)s")
    listener = listen(sink, secret=SECRET)
    logger.addHandler(ZMQQueueHandler(listener.endpoint, secret=SECRET))
    record = logging.makeLogRecord({"name": "evil", "levelno": logging.ERROR, "msg": "forged"})
    signed = bytearray(_wire.encode(record, _wire.Signer(SECRET)))
    signed[-2] ^= 0x01
    oversized = _wire.encode(logging.makeLogRecord({"name": "evil", "levelno": 40, "msg": "x" * 2_000_000}))
    bad = [
        [_wire.encode(record)],  # unsigned
        [bytes(signed)],  # tampered
        [_wire.encode(record, _wire.Signer(b"another-secret-of-16+"))],  # signed with another key
        [b"GET / HTTP/1.1\r\n\r\n"],  # garbage
        [b""],  # empty
        [b"CX"],  # cut short
        [_wire.encode(record, _wire.Signer(SECRET))[:-1]],  # body shorter than the header says
        [_wire.encode(record, _wire.Signer(SECRET)), b"extra part"],  # two parts on PULL
    ]
    intruder = raw(zmq.PUSH, listener.endpoint)
    for message in bad:
        intruder.send_multipart(message)
    logger.info("good one")
    intruder.send(oversized)  # over ZMQ_MAXMSGSIZE: ZeroMQ drops the peer's connection
    logger.info("good two")

    assert wait_until(lambda: listener.rejected == len(bad) and len(sink.records) == 2)
    assert ["good one", "good two"] == sink.lines
    reports = [line for line in capsys.readouterr().err.splitlines() if "rejected" in line]
    assert 1 == len(reports)  # at most one line a minute
    assert "127.0.0.1" in reports[0]


def test_listener_without_secret_rejects_garbage_and_goes_on(logger, listen, raw):
    """Without a secret, valid frames pass; a header over max_body or a body that is no record does not."""
    sink = Sink("%(message)s")
    listener = listen(sink, max_body=1000)
    intruder = raw(zmq.PUSH, listener.endpoint)
    header = bytes.fromhex("4358 01 00 0000000f".replace(" ", ""))  # a valid header for 15 bytes
    intruder.send(header + b'{"nonsense": 1}')  # valid JSON, not a record
    intruder.send(bytes.fromhex("4358010000000800") + b"{}")  # the header claims 2048 bytes
    intruder.send(_wire.encode(logging.makeLogRecord({"name": "a", "levelno": 20, "msg": "ok"})))

    assert wait_until(lambda: listener.rejected == 2 and sink.records)
    assert ["ok"] == sink.lines


def test_with_a_secret_the_same_signed_bytes_give_one_record(logger, listen, raw, capsys):
    """The same signed frame 4 times over ZeroMQ: 1 record, 3 rejections counted as 'replayed frame'."""
    sink = Sink("%(message)s")
    listener = listen(sink, secret=SECRET)
    captured = _wire.encode(logging.makeLogRecord({"name": "a", "levelno": 20, "msg": "pay mallory"}), _wire.Signer(SECRET))
    intruder = raw(zmq.PUSH, listener.endpoint)
    for _ in range(4):
        intruder.send(captured)
    assert wait_until(lambda: listener.rejected == 3)  # two sockets: no order between them
    logger.addHandler(ZMQQueueHandler(listener.endpoint, secret=SECRET))
    logger.info("signed by the handler")

    assert wait_until(lambda: len(sink.records) == 2)
    assert ["pay mallory", "signed by the handler"] == sink.lines
    assert {"received": 2, "rejected": 3, "reasons": {"replayed frame": 3}} == listener.stats()
    assert "replayed frame: sequence 0" in capsys.readouterr().err


def test_with_a_secret_a_frame_signed_outside_the_window_is_rejected(listen, raw):
    """A frame whose signing time is 2 windows old: 'stale frame'; version 1 signed frames: refused."""
    sink = Sink("%(message)s")
    listener = listen(sink, secret=SECRET, replay_window=30)
    body = json.dumps({"name": "a", "levelno": 20, "msg": "old", "created": 1.0}).encode()
    head = struct.pack(">2sBBI16sQQ", b"CX", 2, 1, len(body), b"z" * 16, 0, time.time_ns() // 1_000_000 - 60_000)
    old = head + hmac.new(SECRET, head + body, hashlib.sha256).digest() + body
    v1_head = bytes.fromhex("4358 01 01".replace(" ", "")) + len(body).to_bytes(4, "big")
    v1 = v1_head + hmac.new(SECRET, v1_head + body, hashlib.sha256).digest() + body
    intruder = raw(zmq.PUSH, listener.endpoint)
    intruder.send(old)
    intruder.send(v1)
    intruder.send(_wire.encode(logging.makeLogRecord({"name": "a", "levelno": 20, "msg": "now"}), _wire.Signer(SECRET)))

    assert wait_until(lambda: listener.rejected == 2 and sink.records)
    assert ["now"] == sink.lines
    assert {"stale frame": 1, "bad frame": 1} == listener.reasons


def test_a_frame_cannot_set_peer_the_listener_sets_the_real_one(listen, raw):
    """'peer' is reserved: a frame carrying it is rejected; records show the address ZeroMQ saw."""
    sink = Sink("%(peer)s %(message)s")
    listener = listen(sink)
    forged = b'{"name":"a","levelno":20,"msg":"forged","created":1,"extra":{"peer":"10.6.6.6:1"}}'
    intruder = raw(zmq.PUSH, listener.endpoint)
    intruder.send(bytes.fromhex("43580100") + len(forged).to_bytes(4, "big") + forged)
    intruder.send(_wire.encode(logging.makeLogRecord({"name": "a", "levelno": 20, "msg": "honest"})))

    assert wait_until(lambda: listener.rejected == 1 and sink.records)
    (line,) = sink.lines
    assert line.startswith("127.0.0.1") and line.endswith(" honest"), line
    assert "10.6.6.6" not in line


@pytest.mark.parametrize("socket_type", [zmq.PUSH, zmq.PUB], ids=["push", "pub"])
def test_a_lone_surrogate_is_delivered_not_dropped(logger, listen, socket_type):
    """A message, a field and a logger name holding a lone surrogate: sent and received as they were, none dropped."""
    sink = Sink("%(user)s %(message)s")
    kind = zmq.PULL if socket_type == zmq.PUSH else zmq.SUB
    listener = listen(sink, socket_type=kind, secret=SECRET)
    handler = ZMQQueueHandler(listener.endpoint, socket_type=socket_type, secret=SECRET)
    logger.addHandler(handler)
    if socket_type == zmq.PUB:
        subscribed(logger, sink)
    odd = logger.getChild("odd\ud800")
    with ctxlog.scope(user="eve\udcff"):
        odd.warning("looked for %s", "a\ud800b")

    assert wait_until(lambda: sink.named(odd.name))
    (record,) = sink.named(odd.name)
    assert ("looked for a\ud800b", "eve\udcff") == (record.getMessage(), record.user)
    assert 0 == handler.dropped


# --- never blocking the application -----------------------------------------------------------


def test_no_peer_drops_are_counted_and_reported_once(logger, capsys):
    """A bound PUSH socket without a peer cannot take records: each is dropped, counted, one stderr line."""
    handler = ZMQQueueHandler(ANY_PORT, bind=True)
    handler.open()
    logger.addHandler(handler)

    run_bounded(lambda: [logger.info("nobody listens %d", i) for i in range(200)])

    assert (0, 200) == (handler.sent, handler.dropped)
    reports = [line for line in capsys.readouterr().err.splitlines() if "ctxlog.zmq" in line]
    assert 1 == len(reports)
    assert "dropped a record" in reports[0]


def test_stalled_peer_fills_the_queue_then_records_are_dropped_not_waited_for(logger, raw):
    """A PUSH peer that stops reading: the log call keeps returning, and what does not fit is counted."""
    port = free_port()
    raw(zmq.PULL, f"tcp://127.0.0.1:{port}", bind=True, RCVHWM=1, RCVBUF=4096)  # never reads
    handler = ZMQQueueHandler(f"tcp://127.0.0.1:{port}", hwm=10, linger=0)
    logger.addHandler(handler)
    big = "x" * 16_000
    total = 2_000

    run_bounded(lambda: [logger.info("%d %s", i, big) for i in range(total)])

    assert handler.dropped > 0
    assert total == handler.sent + handler.dropped


def test_records_wait_in_zeromq_while_the_collector_is_away(logger, listen):
    """PUSH connects lazily and queues (up to hwm) until the collector binds; nothing is lost."""
    port = free_port()
    handler = ZMQQueueHandler(f"tcp://127.0.0.1:{port}")
    logger.addHandler(handler)
    for i in range(5):
        logger.info("early %d", i)
    sink = Sink("%(message)s")
    listen(sink, address=f"tcp://127.0.0.1:{port}")

    assert wait_until(lambda: len(sink.records) == 5)
    assert [f"early {i}" for i in range(5)] == sink.lines
    assert (5, 0) == (handler.sent, handler.dropped)


def test_close_returns_within_linger_with_undelivered_records(logger):
    """close() never hangs: queued records for an absent peer are given up after linger."""
    handler = ZMQQueueHandler(f"tcp://127.0.0.1:{free_port()}", linger=0.1)
    logger.addHandler(handler)
    for i in range(20):
        logger.info("lost %d", i)
    logger.removeHandler(handler)

    run_bounded(handler.close, bound=30)
    handler.handle(logging.makeLogRecord({"name": "x", "levelno": 20, "msg": "after close"}))
    handler.close()  # twice: harmless

    assert (20, 1) == (handler.sent, handler.dropped)


def test_behind_a_ctxlog_listener_it_says_why_nothing_is_sent(capsys):
    """Records logged on a ctxlog listener thread are not sent (loops); the handler says so once."""
    handler = ZMQQueueHandler(f"tcp://127.0.0.1:{free_port()}", linger=0)
    front = ctxlog.nonblocking([handler])
    for i in range(3):
        front.handle(logging.makeLogRecord({"name": "x", "levelno": 20, "msg": f"m{i}"}))
    front.close()
    handler.close()

    assert (0, 3) == (handler.sent, handler.suppressed)
    assert 1 == capsys.readouterr().err.count("not behind nonblocking()")


# --- processes --------------------------------------------------------------------------------


def test_forked_child_sends_through_its_own_socket(logger, listen):
    """After fork, the child opens a socket of its own; parent's and child's records all arrive."""
    sink = Sink("%(process)d %(message)s")
    listener = listen(sink)
    handler = ZMQQueueHandler(listener.endpoint)
    logger.addHandler(handler)
    logger.info("parent before fork")
    assert wait_until(lambda: sink.records)

    with warnings.catch_warnings():
        # Forking a process that has threads (ZeroMQ's, the listener's) is what is tested here.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            for i in range(3):
                logger.info("child %d", i)
            code = 0 if handler.stats() == {"sent": 3, "dropped": 0, "suppressed": 0} else 2
            handler.close()  # delivers within linger; os._exit skips atexit
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    logger.info("parent after fork")

    assert 0 == os.waitstatus_to_exitcode(status)
    assert wait_until(lambda: len(sink.records) == 5)
    by_process = {(r.process, r.getMessage()) for r in sink.records}
    me = os.getpid()
    assert {(me, "parent before fork"), (me, "parent after fork")} | {(pid, f"child {i}") for i in range(3)} == by_process
    assert (2, 0) == (handler.sent, handler.dropped)


# --- listener lifecycle -----------------------------------------------------------------------


def test_listener_start_stop_idempotent_and_stop_is_prompt(logger):
    """start/stop in any order, any number of times; an idle listener stops at once; restart works."""
    sink = Sink("%(message)s")
    listener = ZMQQueueListener(ANY_PORT, sink)
    assert listener.stop() is True  # before start
    listener.start()
    first = listener.endpoint
    listener.start()  # twice: one thread, same socket
    threads = [t for t in threading.enumerate() if t.name == f"ctxlog-listener-{id(listener):x}"]
    handler = ZMQQueueHandler(first)
    logger.addHandler(handler)
    logger.info("one")
    assert wait_until(lambda: sink.records)
    time.sleep(0.05)  # idle in poll()

    started = time.monotonic()
    stopped = listener.stop(timeout=10)
    took = time.monotonic() - started
    assert listener.stop() is True  # twice
    assert listener.endpoint is None

    listener.start()  # again: a fresh socket
    logger.removeHandler(handler)
    handler.close()
    handler = ZMQQueueHandler(listener.endpoint)
    logger.addHandler(handler)
    logger.info("two")
    assert wait_until(lambda: len(sink.records) == 2)
    listener.stop()

    assert (True, 1) == (stopped, len(threads))
    assert took < 5  # generous: the wake-up is a message, not a timeout
    assert ["one", "two"] == sink.lines


def test_stop_hands_over_what_has_arrived(logger, listen):
    """Records that reached the listener before stop() are handed to the handlers."""
    arrived = threading.Event()
    release = threading.Event()

    class Slow(Sink):
        def emit(self, record):
            arrived.set()
            release.wait(10)
            super().emit(record)

    sink = Slow("%(message)s")
    listener = listen(sink)
    logger.addHandler(ZMQQueueHandler(listener.endpoint))
    for i in range(20):
        logger.info("r%d", i)
    assert arrived.wait(10)
    time.sleep(0.2)  # the other 19 reach the listener's socket while the first is handled
    release.set()
    assert listener.stop(timeout=10)

    assert [f"r{i}" for i in range(20)] == sink.lines


def test_stop_ends_when_more_than_hwm_messages_are_waiting(logger, listen):
    """With more than hwm + 1 messages waiting, stop() hands over hwm + 1 of them and ends."""
    arrived = threading.Event()
    release = threading.Event()

    class Slow(Sink):
        def emit(self, record):
            arrived.set()
            release.wait(10)
            super().emit(record)

    sink = Slow("%(message)s")
    listener = listen(sink, hwm=5)
    logger.addHandler(ZMQQueueHandler(listener.endpoint))
    logger.info("first")
    assert arrived.wait(10)
    for i in range(100):
        logger.info("r%d", i)
    time.sleep(0.2)  # they wait in the listener's and the sender's queues
    threading.Timer(0.2, release.set).start()  # stop() asks first, then the handler returns

    assert listener.stop(timeout=10) is True
    assert 1 < len(sink.lines) <= 1 + 5 + 1  # the first, then at most hwm + 1 of those waiting


def test_bind_errors_are_raised_by_start(listen):
    """A listener whose address is taken raises from start(), and nothing is left running."""
    first = listen()
    second = ZMQQueueListener(first.endpoint)

    with pytest.raises(zmq.ZMQError):
        second.start()
    assert second.stop() is True
    assert all(not t.name.startswith(f"ctxlog-listener-{id(second):x}") for t in threading.enumerate())


def test_dictconfig_with_factory(listen):
    """dictConfig builds the handler with "()" and its keyword options."""
    import logging.config

    sink = Sink("%(message)s")
    listener = listen(sink)
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"zmq": {"()": "ctxlog.zmq.ZMQQueueHandler", "address": listener.endpoint, "hwm": 100}},
        "loggers": {"zmqdict": {"handlers": ["zmq"], "level": "INFO", "propagate": False}},
    })
    log = logging.getLogger("zmqdict")
    try:
        log.info("configured")
        assert wait_until(lambda: sink.records)
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()

    assert ["configured"] == sink.lines


# --- the example ------------------------------------------------------------------------------

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "zmq_pipeline.py")


def test_example_demo_prints_the_senders_context_and_one_traceback():
    """examples/zmq_pipeline.py demo: three records collected, with the request's fields."""
    result = subprocess.run([sys.executable, EXAMPLE, "demo"], capture_output=True, text=True, timeout=60, check=False)

    assert 0 == result.returncode, result.stderr
    lines = [line for line in result.stdout.splitlines() if " shop: " in line]
    assert 3 == len(lines)
    assert all(" 203.0.113.7 alice 4be1c0d2a9f34e6b " in line for line in lines[:2])
    assert " - - - " in lines[2]
    assert 1 == result.stdout.count("Traceback")


def test_example_collect_and_send_in_separate_processes():
    """The collector prints what two sender processes log; SIGTERM stops it cleanly."""
    env = {**os.environ, "ZMQ_ADDRESS": f"tcp://127.0.0.1:{free_port()}", "CTXLOG_SECRET": SECRET.decode()}
    collector = subprocess.Popen([sys.executable, EXAMPLE, "collect"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(collector.stdout), daemon=True)
    reader.start()
    try:
        assert "collecting on" in collector.stderr.readline()
        for _ in range(2):
            subprocess.run([sys.executable, EXAMPLE, "send"], env=env, timeout=60, check=True)
        assert wait_until(lambda: sum(" shop: " in line for line in lines) == 6, timeout=20)
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(30)
        reader.join(10)
        collector.stdout.close()
        collector.stderr.close()

    assert 0 == collector.returncode
    assert 2 == len({line.split("pid=")[1].split()[0] for line in lines if " shop: " in line})
