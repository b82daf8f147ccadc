"""Non-blocking delivery: QueueHandler, QueueListener, BoundedQueue and nonblocking()."""

from __future__ import annotations

import gc
import json
import logging
import logging.config
import logging.handlers
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import ctxlog
import ctxlog.testing
from ctxlog.queue import BoundedQueue
from ctxlog.queue.target import Batching


class Sink(logging.Handler):
    """Keep records; optionally take a while per record; remember the thread that handled them."""

    def __init__(self, delay: float = 0.0, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.delay = delay
        self.records: list[logging.LogRecord] = []
        self.threads: set[str] = set()
        self.setFormatter(logging.Formatter("%(ip)s %(user)s %(request_id)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.delay:
            time.sleep(self.delay)
        self.threads.add(threading.current_thread().name)
        self.lines.append(self.format(record))
        self.records.append(record)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[logging.LogRecord]:
        deadline = time.monotonic() + timeout
        while len(self.records) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return list(self.records)


@pytest.fixture
def logger():
    log = logging.getLogger("queued")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.propagate = True


def _in_request(user: str, rid: str):
    return ctxlog.testing.request(ip="203.0.113.7", user=user, request_id=rid)


# --- QueueHandler / QueueListener as drop-in subclasses ---------------------------------------


def test_subclasses_of_the_stdlib_pair():
    """The drop-ins are subclasses with the stdlib's constructor signatures."""
    q: queue.Queue[logging.LogRecord] = queue.Queue()
    listener = ctxlog.QueueListener(q, logging.NullHandler(), respect_handler_level=True)

    assert isinstance(ctxlog.QueueHandler(q), logging.handlers.QueueHandler)
    assert isinstance(listener, logging.handlers.QueueListener)
    assert listener.respect_handler_level is True


def test_context_is_captured_in_the_logging_thread(logger):
    """A ContextFilter behind the listener runs in its thread; the fields were stamped before."""
    q: queue.Queue[logging.LogRecord] = queue.Queue()
    sink = Sink()
    sink.addFilter(ctxlog.ContextFilter())  # runs in the listener thread, where no request exists
    listener = ctxlog.QueueListener(q, sink)
    listener.start()
    logger.addHandler(ctxlog.QueueHandler(q))
    with _in_request("alice", "rid-a"):
        logger.info("paid")
    listener.stop()

    assert ["203.0.113.7 alice rid-a paid"] == sink.lines
    assert all(name.startswith("ctxlog-listener") for name in sink.threads)


def test_exceptions_and_stack_info_cross_the_queue_as_text_once(logger):
    """logger.exception behind the queue shows one traceback, and stack_info once."""
    q: queue.Queue[logging.LogRecord] = queue.Queue()
    sink = Sink()
    sink.setFormatter(logging.Formatter("%(message)s"))
    listener = ctxlog.QueueListener(q, sink)
    listener.start()
    logger.addHandler(ctxlog.QueueHandler(q))
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logger.exception("failed %s", "x")
    logger.error("where", stack_info=True)
    listener.stop()

    text = "\n".join(sink.lines)
    assert (1, 1, 1) == (text.count("Traceback"), text.count("ZeroDivisionError"), text.count("Stack (most recent call last)"))
    assert sink.lines[0].startswith("failed x\nTraceback")
    assert sink.records[0].exc_info is None  # nothing unpicklable crosses


def test_prepared_records_pickle_with_awkward_extras(logger):
    """Extras that do not pickle (a lock, an object) become text before the record is queued."""
    import pickle  # the test checks what a multiprocessing queue would do

    q: queue.Queue[logging.LogRecord] = queue.Queue()
    logger.addHandler(ctxlog.QueueHandler(q))
    logger.info("x", extra={"lock": threading.Lock(), "data": {"n": [1, 2]}, "raw": b"\x00"})
    record = pickle.loads(pickle.dumps(q.get_nowait()))  # noqa: S301 - our own bytes

    assert record.lock.startswith("<unlocked")
    assert ({"n": [1, 2]}, "b'\\x00'") == (record.data, record.raw)
    assert json.dumps({"lock": record.lock, "data": record.data})


def test_listener_lifecycle_cannot_be_misused():
    """start/stop in any order, any number of times: one thread, nothing lost (all Pythons)."""
    q: queue.Queue[logging.LogRecord] = queue.Queue()
    sink = Sink()
    listener = ctxlog.QueueListener(q, sink)
    listener.stop()  # before start: harmless
    listener.start()
    listener.start()  # twice: still one thread
    threads = [t for t in threading.enumerate() if t.name.startswith(f"ctxlog-listener-{id(listener):x}")]
    listener.stop()
    listener.stop()  # twice: no stale sentinel left behind (3.11/3.12 stdlib kill the next start)
    listener.start()
    handler = ctxlog.QueueHandler(q)
    for i in range(5):
        handler.handle(logging.makeLogRecord({"msg": f"m{i}"}))
    listener.stop()

    assert 1 == len(threads)
    assert [f"m{i}" for i in range(5)] == [r.getMessage() for r in sink.records]


def test_stop_with_a_timeout_returns_even_if_a_handler_hangs():
    """stop(timeout) gives up after its timeout when a handler hangs; a later stop() waits again."""
    q: queue.Queue[logging.LogRecord] = queue.Queue()
    release = threading.Event()

    class Hang(logging.Handler):
        def emit(self, record):
            release.wait(10)

    listener = ctxlog.QueueListener(q, Hang())
    listener.start()
    q.put_nowait(logging.makeLogRecord({"msg": "x"}))
    started = time.monotonic()
    stopped = listener.stop(timeout=0.2)
    elapsed = time.monotonic() - started
    release.set()

    assert (False, True) == (stopped, listener.stop(timeout=5))
    assert elapsed < 2


def test_handler_that_logs_does_not_feed_its_own_queue(logger):
    """A handler that logs while it emits (urllib3, smtplib debug) does not loop through the queue."""
    q: queue.Queue[logging.LogRecord] = queue.Queue()
    calls = []

    class Chatty(logging.Handler):
        def emit(self, record):
            calls.append(record.getMessage())
            logging.getLogger("queued.urllib3").debug("connection pool for %s", record.getMessage())

    handler = ctxlog.QueueHandler(q)
    logger.addHandler(handler)
    listener = ctxlog.QueueListener(q, Chatty())
    listener.start()
    logger.info("one record")
    time.sleep(0.3)
    listener.stop()

    assert ["one record"] == calls
    assert 1 == handler.suppressed


# --- BoundedQueue --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overflow", "kept"),
    [("drop_oldest", [7, 8, 9]), ("drop_newest", [0, 1, 2]), ("block", [0, 1, 2])],
)
def test_overflow_policies(overflow, kept):
    """A full queue keeps maxsize items, by the chosen policy, and counts what it dropped."""
    bounded = BoundedQueue(3, overflow, block_timeout=0.01)
    for i in range(10):
        bounded.put_nowait(i)

    assert (kept, 7) == ([bounded.get_nowait() for _ in range(3)], bounded.dropped)
    assert bounded.empty()


def test_block_waits_for_room():
    """overflow='block' waits until the consumer makes room, then queues."""
    bounded = BoundedQueue(1, "block", block_timeout=5)
    bounded.put_nowait("first")
    threading.Timer(0.1, bounded.get_nowait).start()
    started = time.monotonic()
    bounded.put_nowait("second")

    assert 0.05 < time.monotonic() - started < 4
    assert ("second", 0) == (bounded.get_nowait(), bounded.dropped)


def test_the_stop_sentinel_is_never_dropped():
    """drop_oldest and drop_newest never lose the listener's sentinel (None)."""
    bounded = BoundedQueue(2, "drop_oldest")
    bounded.put_nowait(None)
    bounded.put_nowait("a")
    bounded.put_nowait("b")
    bounded.put_nowait(None)  # a full queue still takes a sentinel

    assert [None, "a", None] == [bounded.get_nowait() for _ in range(3)]


def test_get_wakes_up_when_an_item_arrives():
    """A consumer blocked in get() returns as soon as an item is put."""
    bounded = BoundedQueue(10)
    threading.Timer(0.05, bounded.put_nowait, args=("x",)).start()

    assert "x" == bounded.get(timeout=5)
    with pytest.raises(queue.Empty):
        bounded.get(timeout=0.01)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"maxsize": 0}, "maxsize"), ({"overflow": "spill"}, "overflow"), ({"block_timeout": -1}, "block_timeout")],
)
def test_bad_queue_settings_are_rejected(kwargs, match):
    """Bad settings fail at construction with a message naming them."""
    with pytest.raises(ValueError, match=match):
        BoundedQueue(**kwargs)


# --- nonblocking() ---------------------------------------------------------------------------


def test_nonblocking_is_started_and_delivers_with_context(logger):
    """nonblocking() returns a ready handler; records arrive with the request's fields."""
    sink = Sink()
    handler = ctxlog.nonblocking([sink])
    logger.addHandler(handler)
    with _in_request("bob", "rid-b"):
        logger.warning("hello")

    assert ["203.0.113.7 bob rid-b hello"] == [sink.format(r) for r in sink.wait_for(1)]
    stats = handler.stats()
    assert {"queued": 0, "delivered": 1, "dropped": 0, "failed": 0} == {k: stats[k] for k in ("queued", "delivered", "dropped", "failed")}


def test_log_call_does_not_wait_for_a_slow_handler(logger):
    """With a 200 ms handler behind it, a log call returns at once (generous bound, not a benchmark)."""
    slow = Sink(delay=0.2)
    handler = ctxlog.nonblocking([slow])
    logger.addHandler(handler)
    durations = []
    for i in range(5):
        started = time.perf_counter()
        logger.error("error %d", i)
        durations.append(time.perf_counter() - started)
    handler.close()

    assert max(durations) < 0.1
    assert 5 == len(slow.records)


def test_a_slow_target_does_not_delay_the_others(logger):
    """Each target has its own thread: a fast file-like sink is not held up by a 1 s one."""
    slow, fast = Sink(delay=1.0), Sink()
    arrived = []

    class Timed(Sink):
        def emit(self, record):
            arrived.append(time.monotonic())
            super().emit(record)

    fast = Timed()
    handler = ctxlog.nonblocking([slow, fast])
    logger.addHandler(handler)
    sent = time.monotonic()
    for i in range(3):
        logger.error("e%d", i)
    fast.wait_for(3, timeout=2)
    handler.flush(timeout=0)

    assert 3 == len(fast.records)
    assert max(arrived) - sent < 0.5
    handler.close()
    assert 3 == len(slow.records)


def test_each_target_gets_its_own_record_copy(logger):
    """Two targets formatting in two threads never see each other's asctime or message changes."""
    a, b = Sink(), Sink()
    a.setFormatter(logging.Formatter("A %(asctime)s %(message)s", "%H"))
    b.setFormatter(logging.Formatter("B %(asctime)s %(message)s", "%Y"))
    handler = ctxlog.nonblocking([a, b])
    logger.addHandler(handler)
    for i in range(50):
        logger.info("m%d", i)
    handler.close()

    assert all(line.startswith("A ") and len(line.split()[1]) == 2 for line in a.lines)
    assert all(line.startswith("B ") and len(line.split()[1]) == 4 for line in b.lines)
    assert a.records[0] is not b.records[0]


def test_respect_handler_level_is_on_by_default(logger):
    """An ERROR-level target behind nonblocking() never gets INFO records."""
    errors_only = Sink(level=logging.ERROR)
    everything = Sink()
    handler = ctxlog.nonblocking([errors_only, everything])
    logger.addHandler(handler)
    for _ in range(20):
        logger.info("info")
    logger.error("error")
    handler.close()

    assert (["error"], 21) == ([r.getMessage() for r in errors_only.records], len(everything.records))


def test_overload_is_bounded_counted_and_reported_once(logger, capsys):
    """10,000 records into a slow target with maxsize 100: bounded, drops counted, one report."""
    slow = Sink(delay=0.001)
    handler = ctxlog.nonblocking([slow], maxsize=100, report_interval=60)
    logger.addHandler(handler)
    for i in range(10_000):
        logger.info("r%d", i)
    peak = handler.stats()["queued"]
    handler.close()
    stats = handler.stats()

    assert peak <= 100
    reports = [r for r in slow.records if r.name == "ctxlog.queue"]
    delivered = [r for r in slow.records if r.name != "ctxlog.queue"]
    assert 10_000 == len(delivered) + stats["dropped"]
    assert stats["dropped"] > 0
    assert 1 == len(reports)
    assert f"dropped {stats['dropped']} records" in reports[0].getMessage() or "dropped" in reports[0].getMessage()
    assert "Traceback" not in capsys.readouterr().err


def test_drop_report_goes_to_stderr_for_error_level_targets(logger, capfd):
    """A target above WARNING gets no report record; one line goes to stderr instead."""
    slow = Sink(delay=0.002, level=logging.ERROR)
    handler = ctxlog.nonblocking([slow], maxsize=10)
    logger.addHandler(handler)
    for _ in range(500):
        logger.error("storm")
    handler.close()

    err = capfd.readouterr().err
    assert 1 == err.count("ctxlog dropped")
    assert all(r.name == "queued" for r in slow.records)


def test_failing_target_is_counted_and_reported_once(logger, capfd):
    """A target whose emit fails: failures counted, one traceback, never one per record."""

    class Broken(logging.Handler):
        def emit(self, record):
            try:
                msg = "disk full"
                raise OSError(msg)
            except OSError:
                self.handleError(record)

    handler = ctxlog.nonblocking([Broken()])
    logger.addHandler(handler)
    for _ in range(50):
        logger.error("x")
    handler.close()

    assert 50 == handler.stats()["failed"]
    assert 1 == capfd.readouterr().err.count("OSError: disk full")


def test_the_worker_changes_nothing_of_its_target(logger):
    """Failures are counted without patching the target: its class and attributes stay its own."""
    failures = []

    class Broken(Sink):
        def emit(self, record):
            self.records.append(record)
            self.handleError(record)

        def handleError(self, record):
            failures.append(record.getMessage())

    target = Broken()
    attributes = dict(vars(target))
    handler = ctxlog.nonblocking([target])
    logger.addHandler(handler)
    logger.error("x")
    assert 1 == len(target.wait_for(1))
    during = (type(target), dict(vars(target)))
    handler.close()

    assert (Broken, attributes) == (during[0], {k: v for k, v in during[1].items() if k in attributes})
    assert set(attributes) == set(during[1])
    assert (["x"], 1) == (failures, handler.stats()["failed"])


def test_a_batching_target_is_told_while_the_worker_owns_it(logger):
    """A target with set_batching() (the Batching protocol) batches behind the worker, not after."""
    calls = []

    class Batcher(Sink):
        def set_batching(self, enabled):
            calls.append(("batching", enabled))

        def flush(self):
            calls.append(("flush", len(self.records)))

    target = Batcher()
    assert isinstance(target, Batching)
    handler = ctxlog.nonblocking([target])
    logger.addHandler(handler)
    for i in range(3):
        logger.info("m%d", i)
    assert 3 == len(target.wait_for(3))
    handler.close()

    assert ("batching", True) == calls[0]
    assert ("batching", False) == calls[-2]
    assert ("flush", 3) == calls[-1]


def test_flush_returns_within_its_timeout_when_a_handler_hangs(logger):
    """flush(timeout) returns False in time if a target hangs."""
    release = threading.Event()

    class Hang(logging.Handler):
        def emit(self, record):
            release.wait(10)

    handler = ctxlog.nonblocking([Hang()], stall_timeout=0.5)
    logger.addHandler(handler)
    logger.error("x")
    started = time.monotonic()
    flushed = handler.flush(timeout=0.2)
    elapsed = time.monotonic() - started
    release.set()

    assert (False, True) == (flushed, elapsed < 2)
    assert handler.flush(timeout=5)


def test_close_gives_up_on_a_stalled_target(logger, capfd):
    """close() waits while a target makes progress, and gives up after stall_timeout without any."""
    release = threading.Event()

    class Hang(logging.Handler):
        def emit(self, record):
            release.wait(10)

    handler = ctxlog.nonblocking([Hang()], stall_timeout=0.3)
    logger.addHandler(handler)
    logger.error("x")
    logger.error("y")
    started = time.monotonic()
    handler.close()
    elapsed = time.monotonic() - started
    release.set()

    assert elapsed < 3
    assert "gave up waiting" in capfd.readouterr().err


def test_close_is_idempotent_and_later_records_are_delivered_directly(logger):
    """close() twice is harmless; after close records go straight to the targets."""
    sink = Sink()
    handler = ctxlog.nonblocking([sink])
    logger.addHandler(handler)
    logger.info("before")
    handler.close()
    handler.close()
    logger.info("after")

    assert ["before", "after"] == [r.getMessage() for r in sink.records]


def test_context_manager_closes(logger):
    """with nonblocking(...) as h: records are delivered when the block ends."""
    sink = Sink(delay=0.01)
    with ctxlog.nonblocking([sink]) as handler:
        logger.addHandler(handler)
        for i in range(20):
            logger.info("m%d", i)

    assert 20 == len(sink.records)


def test_signal_handler_that_logs_does_not_deadlock(logger):
    """A signal handler logging while the interrupted code is logging completes."""
    sink = Sink()
    handler = ctxlog.nonblocking([sink], maxsize=1_000_000)
    logger.addHandler(handler)
    received = []

    def on_signal(signum, frame):
        received.append(signum)
        logger.warning("from signal handler")

    old = signal.signal(signal.SIGUSR1, on_signal)
    stop = time.monotonic() + 2
    try:
        killer = threading.Thread(
            target=lambda: [os.kill(os.getpid(), signal.SIGUSR1) or time.sleep(0.002) for _ in range(300)]
        )
        killer.start()
        count = 0
        while killer.is_alive() and time.monotonic() < stop + 5:
            logger.info("tight loop")
            count += 1
        killer.join(5)
    finally:
        signal.signal(signal.SIGUSR1, old)
    handler.close()

    from_signal = [r for r in sink.records if r.getMessage() == "from signal handler"]
    assert len(received) == len(from_signal)
    assert count + len(from_signal) == len(sink.records) + handler.stats()["dropped"]


def test_names_of_dictconfig_handlers_in_any_order(tmp_path):
    """dictConfig builds nonblocking() from handler names, even when they sort after it."""
    path = tmp_path / "out.log"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"ctx": {"format": "%(user)s %(request_id)s %(message)s"}},
            "handlers": {
                "a_queue": {"()": "ctxlog.nonblocking", "handlers": ["z_file"], "maxsize": 1000},
                "z_file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "ctx"},
            },
            "loggers": {"dictcfg": {"handlers": ["a_queue"], "level": "INFO", "propagate": False}},
        }
    )
    log = logging.getLogger("dictcfg")
    queue_handler = log.handlers[0]
    with _in_request("carol", "rid-c"):
        log.info("configured")
    queue_handler.close()

    assert isinstance(queue_handler, ctxlog.queue.NonBlockingHandler)
    assert "carol rid-c configured\n" == path.read_text()
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    queue_handler.workers[0].target.close()


def test_dictconfig_handler_only_the_queue_uses_survives_a_collection(tmp_path):
    """A target no logger holds is not collected between dictConfig and the first record."""
    path = tmp_path / "out.log"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"ctx": {"format": "%(user)s %(message)s"}},
            "handlers": {
                "a_queue": {"()": "ctxlog.nonblocking", "handlers": ["z_file"]},
                "z_file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "ctx"},
            },
            "loggers": {"dictcfg2": {"handlers": ["a_queue"], "level": "INFO", "propagate": False}},
        }
    )
    gc.collect()  # dictConfig keeps no reference to z_file, and logging's registry is weak
    log = logging.getLogger("dictcfg2")
    queue_handler = log.handlers[0]
    with ctxlog.testing.request(user="erin"):
        log.info("kept")
    queue_handler.close()

    assert "erin kept\n" == path.read_text()
    log.removeHandler(queue_handler)
    queue_handler.workers[0].target.close()


def test_dictconfig_single_name_and_formatter_reach_a_later_handler(tmp_path):
    """One name (not a list) sorting after the queue, and the queue's formatter, reach that handler."""
    path = tmp_path / "out.log"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"ctx": {"format": "%(user)s %(message)s"}},
            "handlers": {
                "a_queue": {"()": "ctxlog.nonblocking", "handlers": "z_file", "formatter": "ctx"},
                "z_file": {"class": "logging.FileHandler", "filename": str(path)},
            },
            "loggers": {"dictcfg1": {"handlers": ["a_queue"], "level": "INFO", "propagate": False}},
        }
    )
    log = logging.getLogger("dictcfg1")
    queue_handler = log.handlers[0]
    with ctxlog.testing.request(user="dave"):
        log.info("configured")
    queue_handler.close()

    assert "dave configured\n" == path.read_text()
    log.removeHandler(queue_handler)
    queue_handler.workers[0].target.close()


def test_dictconfig_name_the_configuration_lacks_fails_at_once():
    """A name that neither a handler nor the configuration has makes dictConfig fail, saying which."""
    with pytest.raises(ValueError, match="a_queue") as failed:
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"a_queue": {"()": "ctxlog.nonblocking", "handlers": ["z_nope"]}},
            }
        )
    assert "no handler named 'z_nope'" in str(failed.value.__cause__)


def test_unknown_handler_name_fails_clearly():
    """A name that no configured handler has is a clear error."""
    with pytest.raises(ValueError, match="no handler named 'nope'"):
        ctxlog.nonblocking(["nope"])


def test_bad_nonblocking_settings_fail_at_construction():
    """Bad settings are rejected before any thread starts."""
    with pytest.raises(ValueError, match="overflow"):
        ctxlog.nonblocking([logging.NullHandler()], overflow="later")
    with pytest.raises(ValueError, match="at least one handler"):
        ctxlog.nonblocking([])
    with pytest.raises(TypeError, match=r"not a logging\.Handler"):
        ctxlog.nonblocking([object()])


# --- processes: exit, fork, multiprocessing ------------------------------------------------------

EXIT_SCRIPT = """
import logging, os, signal, sys, time
import ctxlog

class Slow(logging.FileHandler):
    def emit(self, record):
        time.sleep(0.002)
        super().emit(record)

sink = Slow(sys.argv[1])
sink.setFormatter(logging.Formatter("%(user)s %(message)s"))
log = logging.getLogger("app")
log.addHandler(ctxlog.nonblocking([sink]))
log.setLevel(logging.INFO)
mode = sys.argv[2]
if mode == "sigterm":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
with ctxlog.scope(user="exiting"):
    for i in range(500):
        log.info("record %d", i)
if mode == "sys.exit":
    sys.exit(0)
if mode == "raise":
    raise SystemExit("unhandled")
if mode == "error":
    raise RuntimeError("crash after logging")
if mode == "sigterm":
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
"""


@pytest.mark.parametrize("mode", ["normal", "sys.exit", "raise", "error", "sigterm"])
def test_everything_queued_is_delivered_at_exit(tmp_path, mode):
    """At interpreter exit (normal, sys.exit, an exception, SIGTERM handled) all 500 records arrive."""
    path = tmp_path / "out.log"
    subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(path), mode], timeout=60, capture_output=True, check=False)

    lines = path.read_text().splitlines()
    assert [f"exiting record {i}" for i in range(500)] == lines


FORK_SCRIPT = """
import logging, os, sys, threading, time, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads running
import ctxlog

# Like a file object's internal buffer lock: held during a write, never re-initialised at fork.
io_lock = threading.Lock()

class SlowFile(logging.FileHandler):
    def emit(self, record):
        with io_lock:
            if record.getMessage() == "parent before fork":
                time.sleep(0.3)  # the fork below happens while this write is in progress
            super().emit(record)

path = sys.argv[1]
sink = SlowFile(path)
sink.setFormatter(logging.Formatter("%(process)d %(user)s %(message)s"))
handler = ctxlog.nonblocking([sink])
log = logging.getLogger("app")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.info("parent before fork")
time.sleep(0.05)

# Another thread holds the handler's lock while we fork: the child must not deadlock on it.
held = threading.Event()
release = threading.Event()
def hold():
    with handler.lock:
        held.set()
        release.wait(5)
threading.Thread(target=hold, daemon=True).start()
held.wait(5)

children = []
for n in range(4):
    pid = os.fork()
    if pid == 0:
        __import__("signal").alarm(10)  # a deadlock fails the test instead of hanging it
        with ctxlog.scope(user=f"child{n}"):
            for i in range(100):
                log.info("child record %d", i)
        ok = handler.flush(timeout=5)
        handler.close()
        os._exit(0 if ok else 3)
    children.append(pid)
release.set()
codes = [os.waitpid(pid, 0)[1] for pid in children]
log.info("parent after fork")
handler.close()
print(codes)
"""


def test_forked_children_get_their_own_listener(tmp_path):
    """Children forked mid-write and while the handler lock is held get a listener and deliver all."""
    path = tmp_path / "out.log"
    result = subprocess.run([sys.executable, "-c", FORK_SCRIPT, str(path)], timeout=60, capture_output=True, text=True, check=False)

    assert "[0, 0, 0, 0]" == result.stdout.strip(), result.stderr
    lines = path.read_text().splitlines()
    for n in range(4):
        mine = [line.split(" ", 1)[1] for line in lines if f" child{n} " in line]
        assert [f"child{n} child record {i}" for i in range(100)] == mine
    assert 1 == sum("parent before fork" in line for line in lines)  # not duplicated by children
    assert 1 == sum("parent after fork" in line for line in lines)


MP_SCRIPT = """
import logging, logging.handlers, multiprocessing, sys
import ctxlog

def listener_process(q, path):
    sink = logging.handlers.RotatingFileHandler(path, maxBytes=4000, backupCount=50)
    sink.setFormatter(logging.Formatter("%(processName)s %(user)s %(request_id)s %(message)s"))
    listener = ctxlog.QueueListener(q, sink)
    listener.start()
    listener.stop() if q.get() is None else None

def worker(q, n):
    log = logging.getLogger("worker")
    log.addHandler(ctxlog.QueueHandler(q))
    log.setLevel(logging.INFO)
    with ctxlog.scope(user=f"user{n}", request_id=f"rid{n}"):
        for i in range(200):
            log.info("record %d", i, extra={"lock": multiprocessing.Lock()})

if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[2])
    q = multiprocessing.Queue()
    sink = logging.handlers.RotatingFileHandler(sys.argv[1], maxBytes=4000, backupCount=50)
    sink.setFormatter(logging.Formatter("%(user)s %(request_id)s %(message)s %(lock)s"))
    listener = ctxlog.QueueListener(q, sink)
    listener.start()
    workers = [multiprocessing.Process(target=worker, args=(q, n)) for n in range(4)]
    for w in workers: w.start()
    for w in workers: w.join()
    listener.stop()
    sink.close()
"""


def test_multiprocessing_queue_recipe(tmp_path):
    """Workers with a QueueHandler on a multiprocessing queue, one listener writing a rotating file."""
    path = tmp_path / "mp.log"
    script = tmp_path / "mp_recipe.py"  # spawn imports the main module again: it must be a file
    script.write_text(MP_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(path), "spawn"], timeout=120, capture_output=True, text=True, check=False)

    assert 0 == result.returncode, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for p in tmp_path.glob("mp.log*") for line in Path(p).read_text().splitlines()]
    assert 800 == len(lines)
    for n in range(4):
        mine = sorted(int(line.split()[-2]) for line in lines if line.startswith(f"user{n} rid{n} "))
        assert list(range(200)) == mine
    assert len(list(tmp_path.glob("mp.log*"))) > 2  # it rotated


def test_stdlib_queuehandler_from_dictconfig_is_not_needed_nonblocking_is_started():
    """Unlike a dictConfig-built stdlib QueueHandler on 3.12+, nonblocking() needs no start()."""
    sink = Sink()
    handler = ctxlog.nonblocking(sink)  # a single handler is accepted too
    try:
        handler.handle(logging.makeLogRecord({"msg": "x", "levelno": logging.INFO}))
        assert 1 == len(sink.wait_for(1))
    finally:
        handler.close()


def test_textwrap_is_used_for_scripts():
    """The scripts above are valid Python (guards against a broken edit of this file)."""
    for script in (EXIT_SCRIPT, FORK_SCRIPT, MP_SCRIPT):
        compile(textwrap.dedent(script), "<script>", "exec")


def test_flush_runs_target_flush_in_the_worker_and_keeps_its_timeout(logger):
    """flush(timeout) flushes targets in their own threads; a hanging target flush cannot hold it."""
    release = threading.Event()
    flushed_in = []

    class SlowFlush(Sink):
        def flush(self):
            flushed_in.append(threading.current_thread().name)
            release.wait(10)

    handler = ctxlog.nonblocking([SlowFlush()])
    logger.addHandler(handler)
    logger.info("x")
    started = time.monotonic()
    done = handler.flush(timeout=0.3)
    elapsed = time.monotonic() - started
    release.set()

    assert (False, True) == (done, elapsed < 2)
    assert flushed_in and all(name.startswith("ctxlog-listener") for name in flushed_in)


def test_close_sends_what_a_digest_handler_collected(logger, smtp_server):
    """Closing nonblocking() flushes its targets: the open SMTP digest goes out."""
    smtp = ctxlog.handlers.DigestSMTPHandler(("127.0.0.1", smtp_server.port), "app@x.test", ["ops@x.test"], "errors", interval=60)
    handler = ctxlog.nonblocking([smtp])
    logger.addHandler(handler)
    for i in range(3):
        logger.error("e%d", i)
    handler.close()
    messages = smtp_server.wait_for(2)
    smtp.close()

    assert 2 == len(messages)  # the first at once, the other two in the digest flushed at close
    assert "e1" in messages[1].get_content() and "e2" in messages[1].get_content()


def test_listener_attached_by_dictconfig_is_started_by_the_first_record(tmp_path):
    """A QueueHandler whose listener nobody started (3.12+ dictConfig) starts it when used."""
    path = tmp_path / "dc.log"
    if sys.version_info >= (3, 12):
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "file": {"class": "logging.FileHandler", "filename": str(path)},
                    "q": {"class": "ctxlog.QueueHandler", "handlers": ["file"]},
                },
                "loggers": {"dc312": {"handlers": ["q"], "level": "INFO", "propagate": False}},
            }
        )
        handler = logging.getLogger("dc312").handlers[0]
    else:  # what 3.12's dictConfig does, by hand
        handler = ctxlog.QueueHandler(queue.Queue())
        handler.listener = logging.handlers.QueueListener(handler.queue, logging.FileHandler(path))
        logging.getLogger("dc312").addHandler(handler)
        logging.getLogger("dc312").propagate = False
        logging.getLogger("dc312").setLevel(logging.INFO)
    log = logging.getLogger("dc312")
    for i in range(3):
        log.info("m%d", i)
    handler.listener.stop()

    assert ["m0", "m1", "m2"] == path.read_text().splitlines()
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    for h in handler.listener.handlers:
        h.close()


MP_FORK_SCRIPT = """
import logging, multiprocessing, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import ctxlog

def child(n):
    log = logging.getLogger("mpchild")
    with ctxlog.scope(user=f"child{n}"):
        for i in range(300):
            log.info("record %d", i)
    # no close(), no flush(): the process ends through multiprocessing's os._exit()

if __name__ == "__main__":
    sink = logging.FileHandler(sys.argv[1])
    sink.setFormatter(logging.Formatter("%(user)s %(message)s"))
    log = logging.getLogger("mpchild")
    log.addHandler(ctxlog.nonblocking([sink]))
    log.setLevel(logging.INFO)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=child, args=(n,)) for n in range(2)]
    for p in procs: p.start()
    for p in procs: p.join(30)
    print([p.exitcode for p in procs])
"""


def test_multiprocessing_fork_children_drain_before_os_exit(tmp_path):
    """A multiprocessing child started by fork delivers what it queued, though it ends with os._exit."""
    script = tmp_path / "mp_fork.py"
    script.write_text(MP_FORK_SCRIPT)
    path = tmp_path / "out.log"
    result = subprocess.run([sys.executable, str(script), str(path)], timeout=60, capture_output=True, text=True, check=False)

    assert "[0, 0]" == result.stdout.strip(), result.stderr
    lines = path.read_text().splitlines()
    for n in range(2):
        assert [f"child{n} record {i}" for i in range(300)] == [line for line in lines if line.startswith(f"child{n} ")]


def test_module_flush_delivers_everything_queued(logger):
    """ctxlog.flush() waits for every nonblocking() handler of the process."""
    slow_a, slow_b = Sink(delay=0.002), Sink(delay=0.002)
    logger.addHandler(ctxlog.nonblocking([slow_a]))
    logger.addHandler(ctxlog.nonblocking([slow_b]))
    for i in range(100):
        logger.info("m%d", i)

    assert ctxlog.flush(timeout=10)
    assert (100, 100) == (len(slow_a.records), len(slow_b.records))


RECONFIGURE_SCRIPT = """
import logging, logging.config, sys, time
import ctxlog

class NeedsLoggingLock(logging.Handler):
    # It takes logging's module lock without holding its own handler lock (handle() below):
    # logging.shutdown() itself, under the module lock, takes every handler's lock, so a
    # handler that held its own while waiting for the module lock would deadlock with
    # dictConfig in the standard library already, ctxlog or not.
    def __init__(self, path):
        super().__init__()
        self.out = open(path, "a")
    def handle(self, record):
        self.emit(record)
        return True
    def emit(self, record):
        time.sleep(0.01)
        logging.getLogger(f"lib.{record.getMessage()}")  # takes logging's module lock
        self.out.write(record.getMessage() + "\\n")
        self.out.flush()

target = NeedsLoggingLock(sys.argv[1])
root = logging.getLogger()
root.addHandler(ctxlog.nonblocking([target]))
root.setLevel(logging.INFO)
for i in range(50):
    root.info("r%d", i)
# dictConfig holds logging's lock while it shuts the old handlers down.
logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
print("reconfigured")
"""


def test_reconfiguring_logging_does_not_deadlock_and_loses_nothing(tmp_path):
    """dictConfig closing a nonblocking() handler whose target needs logging's lock: no hang."""
    path = tmp_path / "out.log"
    result = subprocess.run([sys.executable, "-c", RECONFIGURE_SCRIPT, str(path)], timeout=60, capture_output=True, text=True, check=False)

    assert ("reconfigured", 0) == (result.stdout.strip(), result.returncode), result.stderr
    assert [f"r{i}" for i in range(50)] == path.read_text().splitlines()


ADOPT_SCRIPT = """
import logging, logging.config, logging.handlers, queue, sys, threading
import ctxlog
if sys.version_info >= (3, 12):
    logging.config.dictConfig({
        "version": 1,
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": sys.argv[1]},
            "q": {"class": "ctxlog.QueueHandler", "handlers": ["file"]},
        },
        "root": {"handlers": ["q"], "level": "INFO"},
    })
    handler = logging.getHandlerByName("q")
else:  # what 3.12's dictConfig does, by hand
    handler = ctxlog.QueueHandler(queue.Queue())
    handler.listener = logging.handlers.QueueListener(handler.queue, logging.FileHandler(sys.argv[1]))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
logging.info("before the application starts the listener")
handler.listener.start()  # what the Python docs tell you to do
logging.info("after")
listeners = [t for t in threading.enumerate() if t.name.startswith("ctxlog-listener")]
handler.listener.stop()
print(len(listeners))
"""


def test_dictconfig_listener_started_early_and_again_by_the_app(tmp_path):
    """The first record starts dictConfig's listener; the app's own start() then starts no second one."""
    path = tmp_path / "out.log"
    result = subprocess.run([sys.executable, "-c", ADOPT_SCRIPT, str(path)], timeout=30, capture_output=True, text=True, check=False)

    assert ("1", 0) == (result.stdout.strip(), result.returncode), result.stderr
    assert ["before the application starts the listener", "after"] == path.read_text().splitlines()


def test_basicconfig_format_styles_the_targets_not_the_message(tmp_path):
    """basicConfig(format=..., handlers=[nonblocking(...)]) formats in the target, once."""
    script = tmp_path / "basic.py"
    script.write_text(
        textwrap.dedent("""
        import logging, sys
        import ctxlog
        plain = logging.StreamHandler(sys.stdout)
        styled = logging.StreamHandler(sys.stdout)
        styled.setFormatter(logging.Formatter("own: %(message)s"))
        logging.basicConfig(
            level=logging.INFO,
            format="%(levelname)s %(request_id)s %(message)s",
            handlers=[ctxlog.nonblocking([plain]), ctxlog.nonblocking([styled])],
        )
        with ctxlog.scope(request_id="r-1"):
            logging.getLogger("app").info("paid %d", 5)
        """)
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert 0 == done.returncode, done.stderr
    assert ["INFO r-1 paid 5", "own: paid 5"] == sorted(done.stdout.splitlines())
