"""
ctxlog's :class:`QueueHandler` and :class:`QueueListener`: drop-in subclasses of the stdlib pair.

An SMTP, socket or syslog handler can take seconds per record; called from a request it stalls the
response. The standard library's answer is a ``QueueHandler`` in front and a ``QueueListener``
thread behind. ctxlog's pair fix what goes wrong with them in a web app:

* the request's context is captured in the thread that logs (:meth:`QueueHandler.prepare`), not
  in the listener's thread, where no request exists;
* ``start()``/``stop()`` can be called in any order, any number of times, on every Python;
* a record logged by a handler running on a listener thread (urllib3, smtplib debug output) is
  never fed back into the queue it came from.

:func:`ctxlog.nonblocking` builds on them: its handler is a :class:`QueueHandler`, and each of its
delivery workers (:mod:`ctxlog.queue.worker`) a :class:`QueueListener`.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from typing import Any

from ctxlog._lifecycle import register as register_component
from ctxlog._stderr import write_line
from ctxlog.queue.prepare import (
    RECORD_OVERHEAD,
    exception_text,
    make_plain,
    texts_size,
)
from ctxlog.record.stamp import stamp

__all__ = ["QueueHandler", "QueueListener", "listener_threads"]

#: Idents of the threads that run ctxlog listeners: their records are never queued again.
listener_threads: set[int] = set()
_autostart_lock = threading.Lock()
_getsizeof = sys.getsizeof
_new_record = object.__new__


class _ListenerThreads:
    """Forget the parent's listener threads in a forked child (their idents may come again)."""

    def after_fork_in_child(self) -> None:
        listener_threads.clear()


_listener_threads = _ListenerThreads()


class _StopAtExit:
    """Stop, draining its queue, a listener that ctxlog started for a ``QueueHandler``."""

    __slots__ = ("__weakref__", "listener")

    def __init__(self, listener: QueueListener) -> None:
        self.listener = listener

    def at_exit(self) -> None:
        if self.listener._thread is not None:  # noqa: SLF001 - this module's class
            self.listener.stop()


#: The listeners ctxlog started, kept (as atexit would keep them) until they are stopped at exit.
_started_here: list[_StopAtExit] = []


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
        with _autostart_lock:
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
                    # Its handlers exist already: registered after them, it is stopped first.
                    _started_here.append(stop := _StopAtExit(listener))
                    register_component(stop)
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
            return prepared, make_plain(prepared) + texts_size(prepared)
        message = record.getMessage()
        exc_text = record.exc_text
        if record.exc_info and not exc_text:
            exc_text = exception_text(record.exc_info)
        # copy_record() inlined, and the copy's attributes set in its dict: the cheapest way.
        prepared = _new_record(type(record))
        attrs = prepared.__dict__
        attrs.update(record.__dict__)
        attrs["msg"] = attrs["message"] = message
        attrs["args"] = attrs["exc_info"] = None
        attrs["exc_text"] = exc_text
        # texts_size() inlined: this runs for every record. An ASCII text takes a byte a
        # character; len() is three times cheaper than getsizeof().
        size = make_plain(prepared) + RECORD_OVERHEAD
        size += len(message) if message.isascii() else _getsizeof(message)
        if exc_text:
            size += _getsizeof(exc_text)
        if record.stack_info:
            size += _getsizeof(record.stack_info)
        return prepared, size

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record``, unless it comes from a ctxlog listener thread."""
        if threading.get_ident() in listener_threads:
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
            register_component(_listener_threads)
            thread.start()

    def _monitor(self) -> None:
        ident = threading.get_ident()
        listener_threads.add(ident)
        try:
            super()._monitor()  # type: ignore[misc]  # typeshed omits the private method
        finally:
            listener_threads.discard(ident)

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
