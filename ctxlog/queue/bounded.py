"""
The bounded queue between a log call and a delivery worker, and its overflow policies.

:func:`ctxlog.nonblocking` gives each target handler one :class:`BoundedQueue`: the thread that
logs appends a prepared record to it (never waiting for long, never taking a lock), the target's
worker takes records out. The queue holds at most ``maxsize`` records and ``max_bytes`` bytes,
as estimated when each is queued (:mod:`ctxlog.queue.prepare`); beyond that its overflow policy
drops the oldest, drops the newest, or waits a little. Two markers travel with the records and
are never dropped: the listener's stop sentinel (``None``) and :class:`Flush`, which asks the
worker to flush its target.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue as stdlib_queue
import threading
import time
from typing import Any, Final, Literal

from ctxlog.queue.prepare import record_size, value_size

__all__ = [
    "DEFAULT_MAX_BYTES",
    "OVERFLOW_POLICIES",
    "BoundedQueue",
    "Flush",
    "Overflow",
    "is_control",
    "size_of",
]

Overflow = Literal["drop_oldest", "drop_newest", "block"]
OVERFLOW_POLICIES: Final = ("drop_oldest", "drop_newest", "block")

#: The default ``max_bytes`` of a queue: what its records may hold, estimated, in all.
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024


class Flush:
    """
    Queued to make a worker flush its target, in the worker's thread; ``done`` is set after.

    Like the stop sentinel (``None``), a full queue never drops it.
    """

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()

    def __repr__(self) -> str:
        return "<flush>"


def is_control(item: object) -> bool:
    """Tell whether ``item`` is a marker (stop or flush) rather than a record."""
    return item is None or type(item) is Flush


def size_of(item: Any) -> int:
    """
    Estimate the bytes ``item`` holds in a queue, without pickling or formatting it.

    A record counts its message, traceback, stack, arguments and extras; markers count nothing.
    """
    if is_control(item):
        return 0
    if not isinstance(item, logging.LogRecord):
        return value_size(item)
    return record_size(item)


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
        return sum(1 for item, _ in list(self._items) if not is_control(item))

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
        self._put(item, size_of(item))

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
        try:
            item, size = self._items.popleft()
        except IndexError:
            return self._wait_for_item(block, timeout)
        self._bytes -= size
        return item

    def _wait_for_item(self, block: bool, timeout: float | None) -> Any:
        """Wait for an item (see :meth:`get`), polling less and less often while idle."""
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
