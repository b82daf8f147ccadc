"""
The handler in front of the delivery workers: one bounded queue and one thread per target.

:func:`ctxlog.nonblocking` returns a :class:`NonBlockingHandler`. Its ``emit()`` runs in the
thread that logs: it prepares the record once (:meth:`ctxlog.QueueHandler.prepare`) and appends
it to the :class:`~ctxlog.queue.BoundedQueue` of every target whose level admits it; each
target's :class:`~ctxlog.queue.worker.Worker` delivers from there. ``flush()`` and ``close()``
wait for the workers (never while logging's module lock is held, which a target may need), and
the handlers alive in the process are drained at exit and get fresh threads in a forked child.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Self

from ctxlog._lifecycle import register as register_component
from ctxlog._stderr import write_line
from ctxlog.queue.bounded import DEFAULT_MAX_BYTES, BoundedQueue, Flush, Overflow, size_of
from ctxlog.queue.names import find_handler
from ctxlog.queue.prepare import copy_record
from ctxlog.queue.stdlib import QueueHandler, listener_threads
from ctxlog.queue.worker import Worker

__all__ = ["NonBlockingHandler", "holds_logging_lock", "live"]

#: The nonblocking() handlers open in this process (drained at exit, restarted on fork).
live: weakref.WeakSet[NonBlockingHandler] = weakref.WeakSet()
#: Handlers closed while logging's lock was held: their workers finish on their own, and the
#: exit hook waits for them (held strongly until then: nothing else may refer to them).
_draining: set[NonBlockingHandler] = set()


def holds_logging_lock() -> bool:
    """Tell whether this thread holds the logging module's lock (dictConfig, shutdown)."""
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    return bool(is_owned is not None and is_owned())


class NonBlockingHandler(QueueHandler):
    """
    Put records on one bounded queue per target; one thread per target delivers them.

    Made by :func:`nonblocking`, which starts it. A log call only snapshots the record and appends
    it to the queues; it never waits for a target (unless ``overflow="block"`` and a queue is
    full). After :meth:`close`, records are handed to the targets directly, in the caller's
    thread, so that nothing logged at exit is lost.

    A target given by its name (a ``dictConfig`` handler configured after this one) is looked
    up when the first record arrives; the threads start then.

    Once started, it is registered with ctxlog's process lifecycle: it is drained at interpreter
    exit (and when a forked :mod:`multiprocessing` child ends), a fork waits until each worker
    is between records, and a forked child gets fresh threads and empty queues.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
       ``max_bytes``: each target's queue is bounded in bytes too.
    """

    def __init__(
        self,
        targets: Sequence[logging.Handler | str],
        *,
        maxsize: int,
        overflow: Overflow,
        respect_handler_level: bool,
        block_timeout: float,
        report_interval: float,
        stall_timeout: float,
        max_bytes: int = DEFAULT_MAX_BYTES,
        configured: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(None)
        self.workers: list[Worker] = []
        self.respect_handler_level = respect_handler_level
        self.stall_timeout = stall_timeout
        self._closed = False
        #: Records go to the queues: the targets are found and the handler is open. The one
        #: test on the path of a record; the rare cases are sorted out off it.
        self._queuing = False
        self._close_lock = threading.Lock()
        self._held_for_fork: list[threading.Lock] = []
        self._targets = list(targets)
        self._queue_settings = (maxsize, overflow, block_timeout, max_bytes)
        self._report_interval = report_interval
        self._formatter_for_targets: logging.Formatter | None = None
        self._missing_reported = False
        #: The handlers of the dictConfig that named targets not built yet (see
        #: ctxlog.queue.names.configuration_handlers); dropped once the targets are found.
        self._configured = configured
        self._find_targets()

    def _find_targets(self) -> bool:
        """Make the workers, if every target is found; tell whether they exist."""
        with self._close_lock:
            if self.workers:
                return True
            found = [self._find(t) if isinstance(t, str) else t for t in self._targets]
            targets = [handler for handler in found if handler is not None]
            if len(targets) < len(found):
                return False
            self._configured = None
            self.workers = [
                Worker(BoundedQueue(*self._queue_settings), target, self._report_interval)
                for target in targets
            ]
            self.queue = self.workers[0].bounded
            if self._formatter_for_targets is not None:
                self.setFormatter(self._formatter_for_targets)
            self._queuing = not self._closed
            return True

    def _find(self, name: str) -> logging.Handler | None:
        """Return the handler named ``name``: built by the configuration, or registered."""
        if self._configured is not None:
            built = self._configured.get(name)
            if isinstance(built, logging.Handler):
                return built
        return find_handler(name)

    def start(self) -> None:
        """Start every target's thread (idempotent), and drain them at exit."""
        if not self.workers and not self._find_targets():
            return  # names a running dictConfig has yet to configure: the first record starts
        for worker in self.workers:
            worker.start()
        if not self._closed:
            live.add(self)
            # After the targets, which exist already: this handler is drained before they
            # are closed at exit (see ctxlog._lifecycle).
            register_component(self)

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 - stdlib name
        """
        Give ``fmt`` to each target that has no formatter of its own.

        The targets format records, in their own threads; this handler only merges each
        message with its arguments. So ``logging.basicConfig(format=..., handlers=[handler])``
        and a dictConfig ``formatter`` on this handler style the targets' output, instead of
        being baked into every message.
        """
        self._formatter_for_targets = fmt  # for targets found later (see start())
        for worker in self.workers:
            if worker.target.formatter is None:
                worker.target.setFormatter(fmt)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue a prepared copy of ``record``, unless it comes from a ctxlog listener thread."""
        if threading.get_ident() in listener_threads:
            self.suppressed += 1
            return
        try:
            # prepare() measures what it copies on the way: no second look for the byte cap.
            prepared, size = self._prepare(record)
            workers = self.workers
            if self._queuing and len(workers) == 1:  # _enqueue()'s common case, inlined
                if not self.respect_handler_level or prepared.levelno >= workers[0].target.level:
                    workers[0].bounded._put(prepared, size)  # noqa: SLF001 - this room's queue
            else:
                self._enqueue(prepared, size)
        except Exception:
            self.handleError(record)

    def enqueue(self, record: logging.LogRecord) -> None:
        """Put ``record`` on the queue of every target whose level admits it."""
        self._enqueue(record, size_of(record))

    def _enqueue(self, record: logging.LogRecord, size: int) -> None:
        if not self._queuing:
            self._enqueue_off_path(record, size)
            return
        workers = self.workers
        respect = self.respect_handler_level
        if len(workers) == 1:
            worker = workers[0]
            if not respect or record.levelno >= worker.target.level:
                worker.bounded._put(record, size)  # noqa: SLF001 - this room's own queue
            return
        for worker in workers:
            if not respect or record.levelno >= worker.target.level:
                # Each target formats in its own thread: give each its own copy (the texts are
                # shared: each queue counts them, but memory holds them once).
                worker.bounded._put(copy_record(record), size)  # noqa: SLF001

    def _enqueue_off_path(self, record: logging.LogRecord, size: int) -> None:
        """Deliver ``record`` at once after close; before the first record, find the targets."""
        if self._closed:
            self._deliver_now(record)
            return
        if not self.workers:
            self.start()
        if not self.workers:
            self._report_missing()
            return
        for worker in self.workers:
            if not self.respect_handler_level or record.levelno >= worker.target.level:
                worker.bounded._put(copy_record(record), size)  # noqa: SLF001

    def _report_missing(self) -> None:
        if self._missing_reported:
            return
        self._missing_reported = True
        names = [t for t in self._targets if isinstance(t, str) and find_handler(t) is None]
        write_line(
            f"ctxlog: nonblocking: no handler named {', '.join(map(repr, names))}; "
            "records are dropped until there is"
        )

    def _deliver_now(self, record: logging.LogRecord) -> None:
        for worker in self.workers:
            if not self.respect_handler_level or record.levelno >= worker.target.level:
                worker.target.handle(copy_record(record))
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
            marker = Flush()
            worker.bounded.put_nowait(marker)
            markers.append((worker, marker))
        if holds_logging_lock():
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
            self._queuing = False
        live.discard(self)
        for worker in self.workers:
            worker.bounded.put_nowait(Flush())  # a digest handler sends what it collected
            worker.stop(timeout=0)  # stop after what is queued; waiting is _join_workers' job
        if holds_logging_lock():
            # See flush(): the workers drain and stop on their own; at_exit() waits for them.
            _draining.add(self)
        else:
            self._join_workers()
        super().close()

    def _join_workers(self) -> None:
        _draining.discard(self)
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
            worker.release()

    # -- the process lifecycle (ctxlog._lifecycle calls these) -----------------------------------

    def before_fork(self, deadline: float) -> None:
        """Wait until each worker is between records, and keep it there until the fork is done."""
        # A worker forked in the middle of writing a record leaves the child a stream whose
        # internal lock is held by a thread that does not exist there: the child's first write
        # hangs. Wait (as logging does with its module lock), at most stall_timeout.
        deadline = min(deadline, time.monotonic() + self.stall_timeout)
        for worker in self.workers:
            if worker.handling.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
                self._held_for_fork.append(worker.handling)

    def after_fork_in_parent(self) -> None:
        """Let the workers go on."""
        while self._held_for_fork:
            self._held_for_fork.pop().release()

    def after_fork_in_child(self) -> None:
        """Start afresh: empty queues, zero counters, new threads (unless closed)."""
        self._held_for_fork.clear()
        _draining.discard(self)  # the parent delivers what it was draining
        for worker in self.workers:
            worker.after_fork()
        self.suppressed = 0
        self._close_lock = threading.Lock()
        if not self._closed:
            self.start()

    def at_exit(self) -> None:
        """Deliver what is queued and stop (see :meth:`close`)."""
        self.close()
        if self in _draining:
            self._join_workers()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
