"""
Deliver records to slow handlers without ever making the application wait.

An SMTP, socket or syslog handler can take seconds per record; called from a request it stalls the
response. The standard library's answer is a ``QueueHandler`` in front and a ``QueueListener``
thread behind. ctxlog's pair are drop-in subclasses that fix what goes wrong with them in a web
app:

* the request's context is captured in the thread that logs (:meth:`QueueHandler.prepare`), not
  in the listener's thread, where no request exists;
* ``start()``/``stop()`` can be called in any order, any number of times, on every Python;
* a record logged by a handler running on a listener thread (urllib3, smtplib debug output) is
  never fed back into the queue it came from.

:func:`nonblocking` builds the whole path in one call: one bounded queue and one thread per target
handler (a slow target never delays the others), bounded in records and in bytes, an overflow
policy instead of unbounded memory, counters, a drop report at most once per interval, draining at
exit and a fresh set of threads in a forked child.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import logging.handlers
import os
import queue as stdlib_queue
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any, Final, Literal, Self

from ctxlog._stderr import write_line
from ctxlog.context import DEFAULTS, RESERVED
from ctxlog.record.stamp import stamp

__all__ = [
    "BoundedQueue",
    "NonBlockingHandler",
    "QueueHandler",
    "QueueListener",
    "flush",
    "nonblocking",
]

Overflow = Literal["drop_oldest", "drop_newest", "block"]
OVERFLOW_POLICIES: Final = ("drop_oldest", "drop_newest", "block")

_PLAIN_TYPES: Final = (str, int, float, bool, type(None))

#: The default ``max_bytes`` of a queue: what its records may hold, estimated, in all.
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
#: What a queued record costs beyond its texts: the record, its attribute dict, its numbers.
_RECORD_OVERHEAD: Final = 512
_getsizeof: Final = sys.getsizeof


class _Flush:
    """
    Queued to make a worker flush its target, in the worker's thread; ``done`` is set after.

    Like the stop sentinel (``None``), a full queue never drops it.
    """

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()

    def __repr__(self) -> str:
        return "<flush>"


def _is_control(item: object) -> bool:
    return item is None or type(item) is _Flush


def _holds_logging_lock() -> bool:
    """Tell whether this thread holds the logging module's lock (dictConfig, shutdown)."""
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    return bool(is_owned is not None and is_owned())


_exception_formatter = logging.Formatter()


class _State:
    """All of this module's global state, in one place."""

    def __init__(self) -> None:
        #: Idents of the threads that run ctxlog listeners: their records are never re-queued.
        self.workers: set[int] = set()
        #: The nonblocking() handlers alive in this process (drained at exit, restarted on fork).
        self.live: weakref.WeakSet[NonBlockingHandler] = weakref.WeakSet()
        #: Handlers closed while logging's lock was held: their workers finish on their own.
        self.draining: weakref.WeakSet[NonBlockingHandler] = weakref.WeakSet()
        self.hooks_installed = False
        self.autostart_lock = threading.Lock()


_state = _State()


def _stop_listener(listener: logging.handlers.QueueListener) -> None:
    if getattr(listener, "_thread", None) is not None:
        listener.stop()


def _plain(value: Any, depth: int = 0) -> Any:
    """Return ``value`` if it pickles and serialises as it is, else its text."""
    if isinstance(value, _PLAIN_TYPES):
        return value
    if depth < 4:
        if isinstance(value, list | tuple):
            return [_plain(item, depth + 1) for item in value]
        if isinstance(value, dict):
            return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _make_plain(record: logging.LogRecord) -> int:
    """
    Turn every extra attribute that is not plain data into text (for pickle and JSON).

    Return the estimated size in bytes of the extras: a text counts its length (its size for
    ASCII, and three times cheaper to find), lists and dicts their items too.
    """
    attrs = record.__dict__
    size = 0
    for key in attrs.keys() - RESERVED:  # the extras only, found in C
        value = attrs[key]
        if type(value) is str:
            size += len(value)
        elif type(value) not in _PLAIN_TYPES:
            value = attrs[key] = _plain(value)
            size += _value_size(value)
    return size


def _value_size(value: Any, depth: int = 0) -> int:
    """Estimate the bytes ``value`` holds: its own size and, a few levels deep, its items'."""
    size = _getsizeof(value)
    if depth < 5:
        if isinstance(value, list | tuple):
            size += sum(_value_size(item, depth + 1) for item in value)
        elif isinstance(value, dict):
            size += sum(_value_size(item, depth + 1) for item in value.values())
    return size


def _texts_size(record: logging.LogRecord) -> int:
    """Estimate the bytes of a prepared record's message, traceback and stack (not extras)."""
    size = _RECORD_OVERHEAD + _getsizeof(record.msg)
    if record.exc_text:
        size += _getsizeof(record.exc_text)
    if record.stack_info:
        size += _getsizeof(record.stack_info)
    return size


def _size_of(item: Any) -> int:
    """
    Estimate the bytes ``item`` holds in a queue, without pickling or formatting it.

    A record counts its message, traceback, stack, arguments and extras; markers count nothing.
    """
    if _is_control(item):
        return 0
    if not isinstance(item, logging.LogRecord):
        return _value_size(item)
    attrs = item.__dict__
    extras = sum(_value_size(attrs[key]) for key in attrs.keys() - RESERVED)
    return _texts_size(item) + extras + (_value_size(item.args) if item.args else 0)


def _copy(record: logging.LogRecord) -> logging.LogRecord:
    """Return a shallow copy of ``record`` (what copy.copy does, in a third of the time)."""
    clone: logging.LogRecord = object.__new__(type(record))
    clone.__dict__.update(record.__dict__)
    return clone


class QueueHandler(logging.handlers.QueueHandler):
    """
    A :class:`logging.handlers.QueueHandler` that keeps the request's context.

    Same constructor and behaviour as the standard library's, with these differences:

    * :meth:`prepare` stamps the current context (``ip``, ``user``, ``request_id``, ``method``,
      ``path`` and bound fields) on the record in the logging thread, so handlers behind the
      queue see the request's values; a ``ContextFilter`` there never overwrites them.
    * Without a formatter of its own, the queued record keeps the merged message in ``msg`` and
      the traceback as text in ``exc_text`` (and ``stack_info`` as it is), so the formatter of
      the handler behind the queue renders them once, in its own layout. With a formatter set,
      ``msg`` is that formatter's output, as in the standard library.
    * Extra attributes that are not plain data become text, so the record pickles (a
      :class:`multiprocessing.Queue` works) and serialises to JSON.
    * A record logged on a ctxlog listener thread is not queued again (a handler that logs while
      it emits would otherwise feed its own queue forever); such records are counted in
      ``suppressed``.
    * A ``listener`` attached by ``dictConfig`` (Python 3.12+, ``"handlers": [...]``) that nobody
      started is started by the first record, and stopped (drained) at exit: the standard
      library leaves it stopped, and records pile up in the queue.

    .. versionadded:: 0.1.0
    """

    def __init__(self, queue: Any) -> None:
        super().__init__(queue)
        #: Records logged on ctxlog's own listener threads and therefore not queued.
        self.suppressed = 0
        self._listener_checked = False

    def _start_listener(self) -> None:
        with _state.autostart_lock:
            if self._listener_checked:
                return
            listener = getattr(self, "listener", None)
            if listener is not None and getattr(listener, "_thread", None) is None:
                if type(listener) is logging.handlers.QueueListener:
                    # dictConfig's default listener class. Make it ours (same state, safe
                    # start/stop), so that the application's own later start() is harmless.
                    listener = QueueListener.adopt(listener)
                if isinstance(listener, QueueListener):
                    listener.start()
                    atexit.register(_stop_listener, listener)
                else:
                    write_line(
                        f"ctxlog: the listener of {self!r} was never started; records wait in "
                        "its queue until something calls its start()"
                    )
            self._listener_checked = True

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return a copy of ``record`` with the context stamped on and nothing unpicklable."""
        return self._prepare(record)[0]

    def _prepare(self, record: logging.LogRecord) -> tuple[logging.LogRecord, int]:
        """Return what :meth:`prepare` returns, and the estimated bytes it holds."""
        stamp(record)
        if self.formatter is not None:
            prepared: logging.LogRecord = super().prepare(record)
            return prepared, _make_plain(prepared) + _texts_size(prepared)
        message = record.getMessage()
        exc_text = record.exc_text
        if record.exc_info and not exc_text:
            exc_text = _exception_formatter.formatException(record.exc_info)
        prepared = _copy(record)
        prepared.msg = prepared.message = message
        prepared.args = None
        prepared.exc_info = None
        prepared.exc_text = exc_text
        # _texts_size() inlined: this runs for every record. An ASCII text takes a byte a
        # character; len() is three times cheaper than getsizeof().
        size = _make_plain(prepared) + _RECORD_OVERHEAD
        size += len(message) if message.isascii() else _getsizeof(message)
        if exc_text:
            size += _getsizeof(exc_text)
        if record.stack_info:
            size += _getsizeof(record.stack_info)
        return prepared, size

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record``, unless it comes from a ctxlog listener thread."""
        if threading.get_ident() in _state.workers:
            self.suppressed += 1
            return
        if not self._listener_checked:
            self._start_listener()
        try:
            self.enqueue(self.prepare(record))
        except Exception:
            self.handleError(record)


class QueueListener(logging.handlers.QueueListener):
    """
    A :class:`logging.handlers.QueueListener` whose lifecycle cannot be misused.

    Same constructor and behaviour as the standard library's, and on every supported Python:

    * ``start()`` twice starts one thread; ``stop()`` before ``start()`` or twice is harmless
      (on 3.11 and 3.12 the standard library's second ``stop()`` leaves a sentinel behind that
      silently kills the next ``start()``);
    * ``stop(timeout)`` waits at most ``timeout`` seconds for the queue to drain;
    * the thread is a daemon named after the listener, registered so that records its handlers
      log are not queued again by a ctxlog :class:`QueueHandler`.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, queue: Any, *handlers: logging.Handler, respect_handler_level: bool = False
    ) -> None:
        super().__init__(queue, *handlers, respect_handler_level=respect_handler_level)
        self._lifecycle = threading.Lock()
        self._stopping = False

    @classmethod
    def adopt(cls, listener: logging.handlers.QueueListener) -> QueueListener:
        """Turn a standard library listener (not yet started) into one of these, in place."""
        listener.__class__ = cls
        adopted: QueueListener = listener  # type: ignore[assignment]
        adopted._lifecycle = threading.Lock()
        adopted._stopping = False
        return adopted

    def start(self) -> None:
        """Start the listener thread, unless it is already running."""
        with self._lifecycle:
            thread = self._thread
            if thread is not None and thread.is_alive():
                return
            self._stopping = False
            self._thread = thread = threading.Thread(
                target=self._monitor, name=f"ctxlog-listener-{id(self):x}", daemon=True
            )
            thread.start()

    def _monitor(self) -> None:
        ident = threading.get_ident()
        _state.workers.add(ident)
        try:
            super()._monitor()  # type: ignore[misc]  # typeshed omits the private method
        finally:
            _state.workers.discard(ident)

    def stop(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """
        Process what is queued, then stop the thread.

        Args:
            timeout: Give up waiting after this many seconds (``None``: wait until drained).

        Returns:
            ``True`` if the thread has stopped, ``False`` if the timeout ran out first; a later
            ``stop()`` waits again.
        """
        with self._lifecycle:
            thread = self._thread
            if thread is None:
                return True
            if not self._stopping:
                self._stopping = True
                self.enqueue_sentinel()
            thread.join(timeout)
            if thread.is_alive():
                return False
            self._thread = None
            self._stopping = False
            return True

    def _after_fork(self) -> None:
        """Forget the parent's thread (it does not exist in a forked child)."""
        self._lifecycle = threading.Lock()
        self._thread = None
        self._stopping = False


#: An idle consumer looks for work after 5 ms, then less and less often, at least every 100 ms;
#: a producer wakes it at once when this many items are waiting.
_POLL_MIN: Final = 0.005
_POLL_MAX: Final = 0.1
_WAKE_AT: Final = 64


class BoundedQueue:
    """
    A queue that never blocks the producer for long and never holds more than it is allowed.

    It holds at most ``maxsize`` items and at most ``max_bytes`` bytes in them, as estimated
    when each is queued: a record counts its message, traceback, stack, arguments and extras
    (their in-memory size, never by pickling or formatting them) plus 512 bytes for the record
    itself. A queue full by either measure applies the overflow policy.

    It has the methods ``QueueHandler`` and ``QueueListener`` use (``put_nowait``, ``get``) and
    takes no lock on the producer side, so a signal handler that logs while the interrupted code
    was itself logging cannot deadlock. A consumer waiting in ``get()`` is not woken for each
    item (that would cost the producer a system call): it looks again within 5 to 100 ms, or at
    once when 64 items or half of ``max_bytes`` are waiting, or a stop or flush marker arrives.
    The listener's stop sentinel (``None``) and ctxlog's flush marker are never dropped.

    Args:
        maxsize: How many items it holds at most.
        overflow: What a full queue does with a new item: ``"drop_oldest"`` (make room by
            dropping the oldest), ``"drop_newest"`` (drop the new one), or ``"block"`` (wait up
            to ``block_timeout`` seconds for room, then drop the new one). An item larger than
            ``max_bytes`` on its own is dropped at once, whatever the policy.
        block_timeout: The longest wait for ``"block"``.
        max_bytes: How many bytes its items hold at most, as estimated (64 MiB by default).

    Raises:
        ValueError: ``maxsize`` or ``max_bytes`` is not a positive integer, ``overflow`` is not
            a known policy, or ``block_timeout`` is negative.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
       ``max_bytes``, :meth:`queued_bytes` and ``dropped_for_bytes``.
    """

    def __init__(
        self,
        maxsize: int = 10_000,
        overflow: Overflow = "drop_oldest",
        block_timeout: float = 1.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            msg = f"maxsize: {maxsize!r} is not a positive integer"
            raise ValueError(msg)
        if overflow not in OVERFLOW_POLICIES:
            msg = f"overflow: {overflow!r} is not one of {', '.join(map(repr, OVERFLOW_POLICIES))}"
            raise ValueError(msg)
        if not isinstance(block_timeout, int | float) or block_timeout < 0:
            msg = f"block_timeout: {block_timeout!r} is not a number of seconds >= 0"
            raise ValueError(msg)
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            msg = f"max_bytes: {max_bytes!r} is not a positive integer (a number of bytes)"
            raise ValueError(msg)
        self.maxsize = maxsize
        self.overflow = overflow
        self.block_timeout = float(block_timeout)
        self.max_bytes = max_bytes
        #: Items dropped because the queue was full. Counters are plain ints: CPython with the
        #: GIL does not switch threads inside ``+= 1`` on an int attribute.
        self.dropped = 0
        #: Of ``dropped``, those dropped because of ``max_bytes`` (the count alone had room).
        self.dropped_for_bytes = 0
        self._reset()

    def _reset(self) -> None:
        #: Each item with the bytes it was counted for, so that taking it out gives back as
        #: much as putting it in took.
        self._items: collections.deque[tuple[Any, int]] = collections.deque()
        self._bytes = 0
        self._wake: stdlib_queue.SimpleQueue[None] = stdlib_queue.SimpleQueue()
        self._waiting = False

    def qsize(self) -> int:
        """Return how many items are queued."""
        return len(self._items)

    def queued_bytes(self) -> int:
        """
        Return the estimated bytes the queued items hold (at most ``max_bytes``).

        .. versionadded:: 0.3.0
        """
        return self._bytes

    def records(self) -> int:
        """Return how many queued items are records (not stop or flush markers)."""
        return sum(1 for item, _ in list(self._items) if not _is_control(item))

    def empty(self) -> bool:
        """Tell whether nothing is queued."""
        return not self._items

    def full(self) -> bool:
        """Tell whether the queue holds ``maxsize`` items or ``max_bytes`` bytes."""
        return len(self._items) >= self.maxsize or self._bytes >= self.max_bytes

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:  # noqa: ARG002
        """Queue ``item`` following the overflow policy (the arguments exist for compatibility)."""
        self.put_nowait(item)

    def put_nowait(self, item: Any) -> None:
        """Queue ``item``; if the queue is full, apply the overflow policy."""
        self._put(item, _size_of(item))

    def _put(self, item: Any, size: int) -> None:
        """Queue ``item``, counted as ``size`` bytes (0 for a marker)."""
        items = self._items
        full = size and (len(items) >= self.maxsize or self._bytes + size > self.max_bytes)
        if full and (size > self.max_bytes or not self._make_room(size)):
            self.dropped += 1
            if len(items) < self.maxsize:
                self.dropped_for_bytes += 1
            return
        # Counted before it can be taken out, so that the count is never below what is queued.
        self._bytes += size
        items.append((item, size))
        # Waking an idle consumer costs the caller a system call (~10 us): leave a sporadic
        # record to its poll, and wake it only for a burst or for a stop or flush marker.
        if self._waiting and (
            len(items) >= _WAKE_AT or not size or self._bytes * 2 >= self.max_bytes
        ):
            self._wake.put(None)

    def _make_room(self, size: int) -> bool:
        """Apply the overflow policy to make room for ``size`` bytes; tell whether there is."""
        items = self._items
        if self.overflow == "drop_oldest":
            while len(items) >= self.maxsize or self._bytes + size > self.max_bytes:
                try:
                    oldest = items.popleft()
                except IndexError:
                    return True
                if not oldest[1]:  # stop and flush markers stay
                    items.appendleft(oldest)
                    return False
                self._bytes -= oldest[1]
                self.dropped += 1
                if len(items) + 1 < self.maxsize:  # there was room for one more record
                    self.dropped_for_bytes += 1
            return True
        if self.overflow == "block":
            deadline = time.monotonic() + self.block_timeout
            while len(items) >= self.maxsize or self._bytes + size > self.max_bytes:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.0005)
            return True
        return False

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item, waiting for one if ``block`` is true."""
        items = self._items
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = _POLL_MIN
        while True:
            try:
                item, size = items.popleft()
            except IndexError:
                pass
            else:
                self._bytes -= size
                return item
            if not block:
                raise stdlib_queue.Empty
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise stdlib_queue.Empty
            self._waiting = True
            try:
                if items:  # something arrived between popleft() and _waiting
                    continue
                with contextlib.suppress(stdlib_queue.Empty):
                    self._wake.get(timeout=poll if remaining is None else min(poll, remaining))
            finally:
                self._waiting = False
            poll = min(poll * 2, _POLL_MAX)

    def get_nowait(self) -> Any:
        """Remove and return the oldest item, or raise :class:`queue.Empty`."""
        return self.get(block=False)


class _Worker(QueueListener):
    """The listener of one target: counts, reports drops, fails quietly and visibly."""

    def __init__(
        self, queue: BoundedQueue, handler: logging.Handler, report_interval: float
    ) -> None:
        super().__init__(queue, handler, respect_handler_level=False)
        self.bounded = queue
        self.target = handler
        self.report_interval = report_interval
        self.delivered = 0
        self.failed = 0
        self.busy = False
        #: Held while a record is being handed to the target; a fork waits for it (see
        #: _before_fork), so a child never inherits a stream lock held mid-write.
        self.handling = threading.Lock()
        self.last_progress = time.monotonic()
        self._reported_drops = 0
        self._reported_drops_for_bytes = 0
        self._next_drop_report = 0.0
        self._failures_unreported = 0
        self._next_failure_report = 0.0
        self._handle_error = handler.handleError
        handler.handleError = self._count_failure  # type: ignore[method-assign]
        #: A target that can send several records at once (JSONSocketHandler) holds them
        #: until its flush(), which this worker calls when its queue runs empty: a burst of
        #: records then leaves in a few sends instead of one system call each.
        self.batching = hasattr(handler, "_ctxlog_batching")
        if self.batching:
            handler._ctxlog_batching = True  # type: ignore[attr-defined]  # noqa: SLF001

    def restore(self) -> None:
        """Give the target its own handleError back, and its own sending."""
        if self.target.__dict__.get("handleError") == self._count_failure:
            del self.target.handleError
        if self.batching:
            self.target._ctxlog_batching = False  # type: ignore[attr-defined]  # noqa: SLF001
            try:
                self.target.flush()
            except Exception:
                self.failed += 1

    def handle(self, record: logging.LogRecord | _Flush) -> None:
        """Hand ``record`` to the target, after a drop report if one is due."""
        if isinstance(record, _Flush):
            try:
                self._flush_target()
            finally:
                record.done.set()
            return
        self.busy = True
        try:
            with self.handling:
                if self.bounded.dropped != self._reported_drops:
                    self._report_drops()
                self.target.handle(record)
                if self.batching and not self.bounded._items:  # noqa: SLF001 - our own queue
                    self.target.flush()  # the end of a burst: send what the target holds
            self.delivered += 1
        except Exception:
            self._count_failure(record)
        finally:
            self.busy = False
            self.last_progress = time.monotonic()

    def _flush_target(self) -> None:
        self.busy = True
        try:
            with self.handling:
                self._report_drops()
                self.target.flush()
        except Exception:
            self.failed += 1
        finally:
            self.busy = False
            self.last_progress = time.monotonic()

    def drain_here(self) -> None:
        """Deliver whatever is still queued, in the calling thread."""
        while True:
            try:
                record = self.bounded.get_nowait()
            except stdlib_queue.Empty:
                return
            if record is not None:
                self.handle(record)

    def _count_failure(self, record: logging.LogRecord) -> None:
        self.failed += 1
        now = time.monotonic()
        if now < self._next_failure_report:
            self._failures_unreported += 1
            return
        self._next_failure_report = now + self.report_interval
        if self._failures_unreported:
            write_line(
                f"ctxlog: {self._failures_unreported} more failures of {self.target!r} were "
                f"counted, not printed, in the last {self.report_interval:g} s"
            )
            self._failures_unreported = 0
        self._handle_error(record)

    def _report_drops(self) -> None:
        dropped = self.bounded.dropped
        now = time.monotonic()
        if dropped == self._reported_drops or now < self._next_drop_report:
            return
        count = dropped - self._reported_drops
        for_bytes = self.bounded.dropped_for_bytes - self._reported_drops_for_bytes
        self._reported_drops = dropped
        self._reported_drops_for_bytes += for_bytes
        self._next_drop_report = now + self.report_interval
        bounded = self.bounded
        text = (
            f"ctxlog dropped {count} records for {self.target!r}: its queue was full "
            f"(maxsize={bounded.maxsize}, max_bytes={bounded.max_bytes}, "
            f"overflow={bounded.overflow})"
        )
        if for_bytes:
            text += f"; {for_bytes} of them for max_bytes"
        if self.target.level > logging.WARNING:
            write_line(text)
            return
        report = logging.LogRecord(
            "ctxlog.queue", logging.WARNING, __file__, 0, text, None, None, "_report_drops"
        )
        report.__dict__.update(DEFAULTS)
        self.target.handle(report)

    def after_fork(self) -> None:
        """Start afresh in a forked child: empty queue, zero counters, new thread."""
        self._after_fork()
        self.handling = threading.Lock()
        self.bounded._reset()  # noqa: SLF001 - the queue belongs to this worker
        self.bounded.dropped = self.bounded.dropped_for_bytes = 0
        self.delivered = self.failed = self._reported_drops = self._reported_drops_for_bytes = 0
        self.busy = False


class NonBlockingHandler(QueueHandler):
    """
    Put records on one bounded queue per target; one thread per target delivers them.

    Made by :func:`nonblocking`, which starts it. A log call only snapshots the record and appends
    it to the queues; it never waits for a target (unless ``overflow="block"`` and a queue is
    full). After :meth:`close`, records are handed to the targets directly, in the caller's
    thread, so that nothing logged at exit is lost.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
       ``max_bytes``: each target's queue is bounded in bytes too.
    """

    def __init__(
        self,
        targets: list[logging.Handler],
        *,
        maxsize: int,
        overflow: Overflow,
        respect_handler_level: bool,
        block_timeout: float,
        report_interval: float,
        stall_timeout: float,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        workers = [
            _Worker(
                BoundedQueue(maxsize, overflow, block_timeout, max_bytes), target, report_interval
            )
            for target in targets
        ]
        super().__init__(workers[0].bounded)
        self.workers = workers
        self.respect_handler_level = respect_handler_level
        self.stall_timeout = stall_timeout
        self._closed = False
        self._close_lock = threading.Lock()

    def start(self) -> None:
        """Start every target's thread (idempotent)."""
        for worker in self.workers:
            worker.start()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 - stdlib name
        """
        Give ``fmt`` to each target that has no formatter of its own.

        The targets format records, in their own threads; this handler only merges each
        message with its arguments. So ``logging.basicConfig(format=..., handlers=[handler])``
        and a dictConfig ``formatter`` on this handler style the targets' output, instead of
        being baked into every message.
        """
        for worker in self.workers:
            if worker.target.formatter is None:
                worker.target.setFormatter(fmt)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue a prepared copy of ``record``, unless it comes from a ctxlog listener thread."""
        if threading.get_ident() in _state.workers:
            self.suppressed += 1
            return
        try:
            # prepare() measures what it copies on the way: no second look for the byte cap.
            prepared, size = self._prepare(record)
            self._enqueue(prepared, size)
        except Exception:
            self.handleError(record)

    def enqueue(self, record: logging.LogRecord) -> None:
        """Put ``record`` on the queue of every target whose level admits it."""
        self._enqueue(record, _size_of(record))

    def _enqueue(self, record: logging.LogRecord, size: int) -> None:
        workers = self.workers
        respect = self.respect_handler_level
        if self._closed:
            self._deliver_now(record)
            return
        if len(workers) == 1:
            worker = workers[0]
            if not respect or record.levelno >= worker.target.level:
                worker.bounded._put(record, size)  # noqa: SLF001 - this module's own queue
            return
        for worker in workers:
            if not respect or record.levelno >= worker.target.level:
                # Each target formats in its own thread: give each its own copy (the texts are
                # shared: each queue counts them, but memory holds them once).
                worker.bounded._put(_copy(record), size)  # noqa: SLF001

    def _deliver_now(self, record: logging.LogRecord) -> None:
        for worker in self.workers:
            if not self.respect_handler_level or record.levelno >= worker.target.level:
                worker.target.handle(_copy(record))
                worker.delivered += 1

    def stats(self) -> dict[str, Any]:
        """
        Return the counters, in all and per target.

        The keys are ``queued``, ``queued_bytes``, ``delivered``, ``dropped``,
        ``dropped_for_bytes``, ``failed`` and ``suppressed``. ``dropped`` counts every record
        the overflow policy dropped; ``dropped_for_bytes`` those of them dropped because of
        ``max_bytes`` (the queue had room for more records, not for more bytes).
        ``queued_bytes`` is the estimate the byte cap applies to. ``targets`` breaks all but
        ``suppressed`` down per target handler, in the order given.

        .. versionchanged:: 0.3.0
           ``queued_bytes`` and ``dropped_for_bytes``.
        """
        targets = [
            {
                "handler": repr(worker.target),
                "queued": worker.bounded.records(),
                "queued_bytes": worker.bounded.queued_bytes(),
                "delivered": worker.delivered,
                "dropped": worker.bounded.dropped,
                "dropped_for_bytes": worker.bounded.dropped_for_bytes,
                "failed": worker.failed,
            }
            for worker in self.workers
        ]
        keys = ("queued", "queued_bytes", "delivered", "dropped", "dropped_for_bytes", "failed")
        totals = {key: sum(target[key] for target in targets) for key in keys}  # type: ignore[misc]
        return {**totals, "suppressed": self.suppressed, "targets": targets}

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """
        Deliver everything queued so far and flush the targets, each in its own thread.

        Args:
            timeout: The longest wait in seconds; ``None`` waits as long as the targets make
                progress, giving up on one that has delivered nothing for ``stall_timeout``.

        Returns:
            ``True`` if everything queued was handed to the targets and they were flushed.
        """
        if self._closed:
            return True
        markers = []
        for worker in self.workers:
            marker = _Flush()
            worker.bounded.put_nowait(marker)
            markers.append((worker, marker))
        if _holds_logging_lock():
            # dictConfig and logging.shutdown() call us holding logging's lock, which a target
            # may need (any logger.debug() in it): waiting here could deadlock. The markers are
            # queued; the workers flush on their own.
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker, marker in markers:
            while not marker.done.wait(0.005):
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                thread = worker._thread  # noqa: SLF001
                if thread is None or not thread.is_alive():
                    return False
                if now - worker.last_progress > self.stall_timeout:
                    return False
        return True

    def close(self) -> None:
        """Deliver what is queued (see :meth:`flush`), stop the threads, and close."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        _state.live.discard(self)
        for worker in self.workers:
            worker.bounded.put_nowait(_Flush())  # a digest handler sends what it collected
            worker.stop(timeout=0)  # stop after what is queued; waiting is _join_workers' job
        if _holds_logging_lock():
            # See flush(): the workers drain and stop on their own; the exit hook waits for them.
            _state.draining.add(self)
        else:
            self._join_workers()
        super().close()

    def _join_workers(self) -> None:
        _state.draining.discard(self)
        for worker in self.workers:
            while not worker.stop(timeout=0.05):
                idle_for = time.monotonic() - worker.last_progress
                undelivered = worker.bounded.records()
                if idle_for > self.stall_timeout and (worker.busy or undelivered):
                    write_line(
                        f"ctxlog: gave up waiting for {worker.target!r} after "
                        f"{self.stall_timeout:g} s without progress; "
                        f"{undelivered} records were not delivered"
                    )
                    break
            else:
                # Stopped, or never started, or died: deliver what is left from here.
                worker.drain_here()
            worker.restore()

    def _after_fork(self) -> None:
        for worker in self.workers:
            worker.after_fork()
        self.suppressed = 0
        self._close_lock = threading.Lock()
        if not self._closed:
            self.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close_all() -> None:
    for handler in list(_state.live):
        handler.close()
    for handler in list(_state.draining):
        handler._join_workers()  # noqa: SLF001


def flush(timeout: float | None = None) -> bool:
    """
    Deliver what every :func:`nonblocking` handler of this process has queued so far.

    Call it where a process may end without running ``atexit``: uvicorn re-raises SIGTERM after
    a graceful shutdown, which ends the process before exit handlers run. Behind
    :class:`ctxlog.ASGIMiddleware` that is done for you at the lifespan shutdown; an ASGI app
    without it should flush in its own lifespan shutdown. Exit handlers and
    :meth:`NonBlockingHandler.close` drain by themselves.

    Args:
        timeout: The longest wait in seconds for all handlers together; ``None`` waits while
            the targets make progress.

    Returns:
        ``True`` if everything was delivered in time.

    .. versionadded:: 0.1.0
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    done = True
    for handler in list(_state.live):
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        done = handler.flush(remaining) and done
    return done


_held_for_fork: list[threading.Lock] = []
#: The longest a fork waits for the workers to be between records.
_FORK_WAIT: Final = 5.0


def _before_fork() -> None:
    # A worker forked in the middle of writing a record leaves the child a stream whose internal
    # lock is held by a thread that does not exist there: the child's first write hangs. Wait
    # until each worker is between records (logging does the same with its module lock), at
    # most the longest stall_timeout in all.
    handlers = list(_state.live)
    if not handlers:
        return
    deadline = time.monotonic() + min(_FORK_WAIT, max(h.stall_timeout for h in handlers))
    for handler in handlers:
        for worker in handler.workers:
            remaining = max(deadline - time.monotonic(), 0.0)
            if worker.handling.acquire(timeout=remaining):
                _held_for_fork.append(worker.handling)


def _after_fork_in_parent() -> None:
    while _held_for_fork:
        _held_for_fork.pop().release()


def _after_fork_in_child() -> None:
    _held_for_fork.clear()
    _state.workers.clear()
    _state.draining = weakref.WeakSet()  # the parent delivers what those were draining
    live = list(_state.live)
    for handler in live:
        handler._after_fork()  # noqa: SLF001
    # A multiprocessing child started by fork leaves through os._exit(), which skips atexit;
    # multiprocessing runs its own finalizers first, so drain there too. Its child start-up
    # clears the finalizers after this hook, then runs its after-fork callbacks: register there.
    mp_util = sys.modules.get("multiprocessing.util")
    if live and mp_util is not None:
        mp_util.register_after_fork(_state, _finalize_with_multiprocessing)


def _finalize_with_multiprocessing(_: object) -> None:
    mp_util = sys.modules["multiprocessing.util"]
    mp_util.Finalize(None, _close_all, exitpriority=100)


def _install_hooks() -> None:
    if _state.hooks_installed:
        return
    _state.hooks_installed = True
    atexit.register(_close_all)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )


def _let_dictconfig_retry() -> bool:
    """
    If dictConfig is calling us, restore the handler's config so that it can retry later.

    ``DictConfigurator.configure_handler`` pops ``"()"`` off the config before calling the
    factory and restores it from its local ``config_copy`` only for the handlers it knows take a
    ``target`` (it does the same as this for MemoryHandler on 3.11-3.13). Without the restore, the
    deferred retry finds no factory.
    """
    frame = sys._getframe(1)  # noqa: SLF001
    for _ in range(6):
        frame = frame.f_back  # type: ignore[assignment]
        if frame is None:
            return False
        if (
            frame.f_code.co_name == "configure_handler"
            and frame.f_globals.get("__name__") == "logging.config"
        ):
            config, copy_ = frame.f_locals.get("config"), frame.f_locals.get("config_copy")
            if isinstance(config, dict) and isinstance(copy_, dict):
                config.update(copy_)
                return True
            return False
    return False


def _resolve(handlers: Iterable[logging.Handler | str] | logging.Handler) -> list[logging.Handler]:
    if isinstance(handlers, logging.Handler):
        handlers = [handlers]
    if isinstance(handlers, str):
        handlers = [handlers]
    resolved: list[logging.Handler] = []
    for handler in handlers:
        if isinstance(handler, str):
            # logging.getHandlerByName() from 3.12 on reads the same registry.
            found = logging._handlers.get(handler)  # type: ignore[attr-defined]  # noqa: SLF001
            if found is None:
                msg = f"nonblocking: no handler named {handler!r}"
                if _let_dictconfig_retry():
                    # dictConfig retries a handler whose error is caused by "target not
                    # configured yet" once it has configured the others: the order of the
                    # handlers in the configuration does not matter.
                    raise ValueError(msg) from TypeError(f"{handler!r}: target not configured yet")
                raise ValueError(msg)
            handler = found  # noqa: PLW2901
        if not isinstance(handler, logging.Handler):
            msg = f"nonblocking: {handler!r} is not a logging.Handler or a handler's name"
            raise TypeError(msg)
        resolved.append(handler)
    if not resolved:
        msg = "nonblocking: give at least one handler to deliver to"
        raise ValueError(msg)
    return resolved


def nonblocking(
    handlers: Iterable[logging.Handler | str] | logging.Handler,
    *,
    maxsize: int = 10_000,
    overflow: Overflow = "drop_oldest",
    respect_handler_level: bool = True,
    block_timeout: float = 1.0,
    report_interval: float = 60.0,
    stall_timeout: float = 30.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> NonBlockingHandler:
    """
    Return a started handler that delivers to ``handlers`` without blocking the caller.

    Each target handler gets its own bounded queue and its own thread, so a slow one never delays
    the others. The request's context is captured when the record is logged. Everything queued is
    delivered at interpreter exit (and on :meth:`~NonBlockingHandler.close`); a process forked
    after this call (gunicorn ``--preload``, multiprocessing) gets its own threads.

    ::

        smtp = ctxlog.handlers.DigestSMTPHandler(("mail", 25), "app@x", ["ops@x"], "errors")
        logging.getLogger().addHandler(ctxlog.nonblocking([smtp], maxsize=10_000))

    In ``dictConfig``: ``{"()": "ctxlog.nonblocking", "handlers": ["smtp", "sock"]}``, with the
    names of handlers of the same configuration, in any order.

    Args:
        handlers: Handler objects, or names of handlers configured by ``dictConfig``.
        maxsize: The most records each target's queue holds.
        overflow: What a full queue (by ``maxsize`` or by ``max_bytes``) does: ``"drop_oldest"``,
            ``"drop_newest"`` or ``"block"`` (wait up to ``block_timeout`` seconds, then drop
            the new record). A record larger than ``max_bytes`` on its own is always dropped.
        respect_handler_level: Queue a record for a target only if its level admits it.
        block_timeout: The longest wait of ``overflow="block"``.
        report_interval: Drops and handler failures are reported at most once per this many
            seconds: a WARNING record to the target (or a line on stderr if the target's level
            is above WARNING), never a traceback per record.
        stall_timeout: At close and exit, give up on a target that has delivered nothing for
            this many seconds.
        max_bytes: The most bytes the records in each target's queue hold, as estimated when
            they are logged (message, traceback, stack and extras, plus 512 bytes a record;
            see :class:`BoundedQueue`). 64 MiB by default: 400 records of 256 KiB each
            behind a stalled target hold 64 MiB, not 100.

    Raises:
        ValueError: No handlers, a name that no configured handler has, or a bad setting.
        TypeError: Something that is neither a handler nor a name.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
       ``max_bytes``.
    """
    targets = _resolve(handlers)
    for name, value in (("report_interval", report_interval), ("stall_timeout", stall_timeout)):
        if not isinstance(value, int | float) or value <= 0:
            msg = f"{name}: {value!r} is not a positive number of seconds"
            raise ValueError(msg)
    handler = NonBlockingHandler(
        targets,
        maxsize=maxsize,
        overflow=overflow,
        respect_handler_level=respect_handler_level,
        block_timeout=block_timeout,
        report_interval=float(report_interval),
        stall_timeout=float(stall_timeout),
        max_bytes=max_bytes,
    )
    _install_hooks()
    _state.live.add(handler)
    handler.start()
    return handler
