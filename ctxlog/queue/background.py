"""
Put slow handlers behind queues in one call, :func:`nonblocking`, and wait for them: :func:`flush`.

``nonblocking(handlers)`` resolves the handlers (objects, or names of handlers configured by
``dictConfig``), builds a :class:`~ctxlog.queue.NonBlockingHandler` with one bounded queue and one
delivery worker per target, and starts it; :func:`flush` waits for every such handler of the
process. The handlers are drained at exit and get their own threads in a forked child.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from ctxlog.queue.bounded import DEFAULT_MAX_BYTES, Overflow
from ctxlog.queue.handler import NonBlockingHandler, holds_logging_lock, live
from ctxlog.queue.names import configuration_handlers, resolve

__all__ = ["flush", "nonblocking"]


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
    for handler in list(live):
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        done = handler.flush(remaining) and done
    return done


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
    targets = resolve(handlers, configuring=holds_logging_lock())
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
        configured=configuration_handlers(handlers),
    )
    handler.start()
    return handler
