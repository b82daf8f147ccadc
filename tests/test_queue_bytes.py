"""nonblocking() and BoundedQueue bound the bytes they hold, not only the records."""

from __future__ import annotations

import gc
import logging
import queue
import re
import threading
import time
import tracemalloc

import pytest

import ctxlog
from ctxlog.queue import DEFAULT_MAX_BYTES, BoundedQueue

BIG = 256 * 1024
MIB = 1024 * 1024


class Stalled(logging.Handler):
    """A target that blocks on its first record until released, then keeps what it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.resume = threading.Event()
        self.messages: list[str] = []
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "ctxlog.queue":
            self.reports.append(record.getMessage())
            return
        self.entered.set()
        self.resume.wait(60)  # never forever, should a test fail before releasing it
        self.messages.append(record.getMessage())


@pytest.fixture
def logger():
    # Not propagating, but only from inside the test (see quiet()): pytest attaches its capture
    # handlers to the loggers that do not propagate when the test starts, and would keep a copy
    # of every 256 KiB message.
    log = logging.getLogger("queued_bytes")
    log.setLevel(logging.DEBUG)
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.propagate = True


def wait_for(condition, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return bool(condition())


def quiet(logger: logging.Logger) -> None:
    """Keep records of ``logger`` to its own handlers (pytest's stay on the root logger)."""
    logger.propagate = False


def stall(logger: logging.Logger, **options) -> tuple[Stalled, ctxlog.NonBlockingHandler]:
    """Put a nonblocking() handler with a stalled target on ``logger``; wait until it stalls."""
    quiet(logger)
    target = Stalled()
    handler = ctxlog.nonblocking([target], report_interval=600, **options)
    logger.addHandler(handler)
    logger.warning("%d %s", 0, "x" * BIG)
    assert target.entered.wait(10)  # the worker holds record 0, the queue is empty again
    return target, handler


def index(message: str) -> int:
    return int(message.split(" ", 1)[0])


def test_400_big_records_behind_a_stalled_target_hold_at_most_max_bytes(logger):
    """400 x log.warning("%s", 256 KiB) with the default cap: 64 MiB queued, not 100 MiB."""
    target, handler = stall(logger)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1, 400):
            logger.warning("%d %s", i, "x" * BIG)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    stats = handler.stats()

    assert held <= DEFAULT_MAX_BYTES + 4 * MIB, f"{held / MIB:.1f} MiB held"
    assert stats["queued_bytes"] <= DEFAULT_MAX_BYTES
    assert stats["queued"] * BIG <= DEFAULT_MAX_BYTES
    queued = stats["queued"]
    assert queued >= 200  # the cap is about bytes: it holds what fits, not a handful
    assert 399 - queued == stats["dropped"] == stats["dropped_for_bytes"]

    target.resume.set()
    assert handler.flush(timeout=30)
    stats = handler.stats()

    # Everything under the cap was delivered: record 0, then the newest (drop_oldest).
    assert [0, *range(400 - queued, 400)] == [index(m) for m in target.messages]
    assert (0, 0, 1 + queued) == (stats["queued"], stats["queued_bytes"], stats["delivered"])
    assert 1 == len(target.reports)
    assert f"{399 - queued} of them for max_bytes" in target.reports[0]


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
def test_drop_policies_honour_the_byte_cap(logger, overflow):
    """With max_bytes=4 MiB, drop_oldest keeps the newest records and drop_newest the oldest."""
    target, handler = stall(logger, max_bytes=4 * MIB, overflow=overflow)
    for i in range(1, 100):
        logger.warning("%d %s", i, "x" * BIG)
    stats = handler.stats()
    queued = stats["queued"]

    assert stats["queued_bytes"] <= 4 * MIB
    assert 4 * MIB // (BIG + 2048) <= queued < 4 * MIB // BIG
    assert (99 - queued, 99 - queued) == (stats["dropped"], stats["dropped_for_bytes"])
    target.resume.set()
    assert handler.flush(timeout=30)

    kept = range(100 - queued, 100) if overflow == "drop_oldest" else range(1, 1 + queued)
    assert [0, *kept] == [index(m) for m in target.messages]
    assert 0 == handler.stats()["queued_bytes"]


def test_block_waits_for_bytes_to_free_up(logger):
    """overflow='block' holds the producer while the bytes are full, then delivers everything."""
    target, handler = stall(logger, max_bytes=4 * MIB, overflow="block", block_timeout=60)
    bounded = handler.workers[0].bounded

    def produce() -> None:
        for i in range(1, 40):
            logger.warning("%d %s", i, "x" * BIG)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        # The producer fills the queue up to the byte cap, then waits for room.
        assert wait_for(lambda: bounded.queued_bytes() + BIG + 512 > 4 * MIB)
        assert producer.is_alive()
        assert bounded.queued_bytes() <= 4 * MIB
        assert bounded.qsize() < 4 * MIB // BIG
    finally:
        target.resume.set()
        producer.join(60)

    assert not producer.is_alive()
    assert handler.flush(timeout=30)
    stats = handler.stats()
    assert list(range(40)) == [index(m) for m in target.messages]
    assert (0, 0, 40) == (stats["dropped"], stats["queued_bytes"], stats["delivered"])


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "block"])
def test_a_record_over_max_bytes_is_dropped_alone(logger, overflow):
    """A record larger than max_bytes is dropped at once and evicts nothing, whatever the policy."""
    target, handler = stall(logger, max_bytes=4 * MIB, overflow=overflow, block_timeout=60)
    logger.warning("%d %s", 1, "x" * BIG)
    started = time.monotonic()
    logger.warning("%d %s", 2, "x" * (5 * MIB))
    waited = time.monotonic() - started
    logger.warning("%d %s", 3, "x" * BIG)
    stats = handler.stats()
    target.resume.set()
    assert handler.flush(timeout=30)

    assert (1, 1, 2) == (stats["dropped"], stats["dropped_for_bytes"], stats["queued"])
    assert waited < 30  # "block" does not wait for room that can never be made
    assert [0, 1, 3] == [index(m) for m in target.messages]


def test_bytes_of_extras_bound_values_and_tracebacks_count(logger):
    """The estimate counts extras, bound fields and tracebacks, not just the message."""
    target, handler = stall(logger)
    logger.warning("extra", extra={"payload": "p" * MIB})
    logger.warning("nested", extra={"payload": {"items": ["q" * MIB]}})
    with ctxlog.scope(blob="b" * MIB):
        logger.warning("bound")
    try:
        raise ValueError("v" * MIB)  # a traceback to log
    except ValueError:
        logger.exception("failed")
    queued = handler.stats()["queued_bytes"]
    target.resume.set()
    assert handler.flush(timeout=30)

    assert 4 * MIB <= queued <= 4 * MIB + 16 * 1024


def test_each_target_counts_its_own_bytes_and_drops(logger):
    """Per target: bytes and drops are counted apart, and every record is accounted for."""
    quiet(logger)
    stalled = Stalled()
    fast = logging.NullHandler()
    handler = ctxlog.nonblocking([stalled, fast], max_bytes=2 * MIB, report_interval=600)
    logger.addHandler(handler)
    logger.warning("%d %s", 0, "x" * BIG)
    assert stalled.entered.wait(10)
    for i in range(1, 50):
        logger.warning("%d %s", i, "x" * BIG)
    held = handler.stats()["targets"][0]["queued_bytes"]
    stalled.resume.set()
    assert handler.flush(timeout=30)
    stats = handler.stats()

    slow, quick = stats["targets"]
    assert held <= 2 * MIB
    assert slow["dropped"] == slow["dropped_for_bytes"] >= 50 - 1 - 2 * MIB // BIG
    for target in (slow, quick):
        assert 50 == target["delivered"] + target["dropped"]
        assert 0 == target["queued_bytes"]
        assert target["dropped"] == target["dropped_for_bytes"]  # 10,000 records: never full
    for key in ("queued", "queued_bytes", "delivered", "dropped", "dropped_for_bytes", "failed"):
        assert stats[key] == slow[key] + quick[key]


def test_bounded_queue_counts_records_put_by_the_stdlib_handler():
    """BoundedQueue alone, behind logging.handlers.QueueHandler: bytes bounded, given back."""
    bounded = BoundedQueue(1000, "drop_newest", max_bytes=2 * MIB)
    log = logging.getLogger("queued_bytes.stdlib")
    quiet(log)
    log.addHandler(logging.handlers.QueueHandler(bounded))
    try:
        for i in range(20):
            log.warning("%d %s", i, "x" * BIG)
    finally:
        log.handlers.clear()
        log.propagate = True

    held = bounded.queued_bytes()
    got = []
    while True:
        try:
            got.append(bounded.get_nowait())
        except queue.Empty:
            break

    assert BIG * len(got) <= held <= 2 * MIB
    assert (20 - len(got), 20 - len(got)) == (bounded.dropped, bounded.dropped_for_bytes)
    assert list(range(len(got))) == [index(r.getMessage()) for r in got]
    assert 0 == bounded.queued_bytes()


def test_markers_are_not_counted_and_never_dropped_for_bytes():
    """The stop sentinel goes into a queue full of bytes, and costs none."""
    bounded = BoundedQueue(10, "drop_newest", max_bytes=100)
    bounded.put_nowait("x" * 50)
    bounded.put_nowait("y" * 50)  # over 100 with the first: dropped
    bounded.put_nowait(None)

    assert (1, 1) == (bounded.dropped, bounded.dropped_for_bytes)
    assert ["x" * 50, None] == [bounded.get_nowait(), bounded.get_nowait()]
    assert 0 == bounded.queued_bytes()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "64MB", None])
def test_bad_max_bytes_fails_at_construction_naming_the_value(bad):
    """max_bytes must be a positive number of bytes, for BoundedQueue and nonblocking()."""
    with pytest.raises(ValueError, match=re.escape(f"max_bytes: {bad!r}")):
        BoundedQueue(max_bytes=bad)
    with pytest.raises(ValueError, match=re.escape(f"max_bytes: {bad!r}")):
        ctxlog.nonblocking([logging.NullHandler()], max_bytes=bad)
