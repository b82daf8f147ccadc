"""
The delivery worker: the thread that takes records off one bounded queue to hand them to a target.

:func:`ctxlog.nonblocking` makes one :class:`Worker` per target handler, so a slow target never
delays the others. A worker is a :class:`~ctxlog.queue.QueueListener` that counts what it
delivers and what fails, reports drops and failures at most once per ``report_interval`` (never a
traceback per record), flushes its target when asked (:class:`~ctxlog.queue.bounded.Flush`), and
holds a lock while a record is being handed over so that a fork never copies a target mid-write.
What it asks of the target beyond :class:`logging.Handler` is written in
:mod:`ctxlog.queue.target`.
"""

from __future__ import annotations

import logging
import queue as stdlib_queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ctxlog._stderr import write_line
from ctxlog.context import DEFAULTS
from ctxlog.queue.bounded import BoundedQueue, Flush
from ctxlog.queue.stdlib import QueueListener, listener_threads
from ctxlog.queue.target import Batching

__all__ = ["Worker", "counting_view"]


def _no_finalizer(self: object) -> None:
    """Stand in for the target class's ``__del__``: a view going away closes nothing."""


def counting_view(
    target: logging.Handler, on_error: Callable[[logging.LogRecord], None]
) -> logging.Handler:
    """
    Return ``target`` as a worker sees it: the same handler, with ``on_error`` as ``handleError``.

    The view is an instance of a subclass of the target's class, made for one worker, that
    shares the target's attribute dict: its lock, stream, buffers and counters are the
    target's, and what either changes the other sees. Only ``handleError(record)``, which the
    stdlib's handlers call when a record fails, differs: it calls ``on_error(record)``. The
    target itself is not changed in any way. A target that keeps attributes in ``__slots__``
    instead of its dict, or whose class cannot be subclassed, is returned as it is (its
    failures then reach its own ``handleError`` and are not counted).
    """
    cls = type(target)
    if any(vars(klass).get("__slots__") for klass in cls.__mro__):
        return target

    def handleError(self: logging.Handler, record: logging.LogRecord) -> None:  # noqa: N802, ARG001
        on_error(record)

    namespace: dict[str, Any] = {
        "__slots__": (),
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "handleError": handleError,
    }
    if hasattr(cls, "__del__"):
        namespace["__del__"] = _no_finalizer
    try:
        view_class = type(cls.__name__, (cls,), namespace)
        view: logging.Handler = object.__new__(view_class)  # no __init__: nothing opened
        view.__dict__ = target.__dict__
    except Exception:  # a metaclass or __init_subclass__ that refuses: use the target as it is
        return target
    return view


class Worker(QueueListener):
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
        #: NonBlockingHandler.before_fork), so a child never inherits a stream lock held mid-write.
        self.handling = threading.Lock()
        self.last_progress = time.monotonic()
        self._reported_drops = 0
        self._reported_drops_for_bytes = 0
        self._next_drop_report = 0.0
        self._failures_unreported = 0
        self._next_failure_report = 0.0
        #: What this thread hands records to: the target, its failures counted here.
        self._view = counting_view(handler, self._count_failure)
        #: A target that can send several records at once (JSONSocketHandler) holds them
        #: until its flush(), which this worker calls when its queue runs empty: a burst of
        #: records then leaves in a few sends instead of one system call each.
        self.batching = isinstance(handler, Batching)
        if isinstance(handler, Batching):
            handler.set_batching(True)

    def _monitor(self) -> None:
        """Hand each record to the target until the stop sentinel (``None``) comes."""
        # The standard library's loop, without its per-record dequeue() call and task_done()
        # test: this is the thread's whole work.
        ident = threading.get_ident()
        listener_threads.add(ident)
        get, handle = self.bounded.get, self.handle
        try:
            while (record := get()) is not None:
                handle(record)
        finally:
            listener_threads.discard(ident)

    def release(self) -> None:
        """Let the target go: it sends each record on its own again, what it holds first."""
        target = self.target
        if isinstance(target, Batching):
            target.set_batching(False)
            try:
                target.flush()
            except Exception:
                self.failed += 1

    def handle(self, record: logging.LogRecord | Flush) -> None:
        """Hand ``record`` to the target, after a drop report if one is due."""
        if isinstance(record, Flush):
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
                self._view.handle(record)
                if self.batching and not self.bounded._items:  # noqa: SLF001 - our own queue
                    self._view.flush()  # the end of a burst: send what the target holds
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
                self._view.flush()
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
        self.target.handleError(record)  # the target's own, on the target

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
        self._view.handle(report)

    def after_fork(self) -> None:
        """Start afresh in a forked child: empty queue, zero counters, new thread."""
        self._after_fork()
        self.handling = threading.Lock()
        self.bounded._reset()  # noqa: SLF001 - the queue belongs to this worker
        self.bounded.dropped = self.bounded.dropped_for_bytes = 0
        self.delivered = self.failed = self._reported_drops = self._reported_drops_for_bytes = 0
        self.busy = False
