"""
Deliver records to slow handlers without ever making the application wait.

:func:`ctxlog.nonblocking` builds the whole path in one call; :class:`QueueHandler` and
:class:`QueueListener` are drop-in subclasses of the standard library's pair.

The path of a queued record, one module each:

* :mod:`ctxlog.queue.stdlib`: :class:`QueueHandler` prepares the record in the thread that logs
  (:mod:`ctxlog.queue.prepare` copies it, makes it plain data and measures it), and
  :class:`QueueListener` runs a listener thread;
* :mod:`ctxlog.queue.bounded`: :class:`BoundedQueue`, bounded in records and bytes, with its
  overflow policies;
* :mod:`ctxlog.queue.worker`: the delivery worker of one target, and :mod:`ctxlog.queue.target`,
  what it asks of that target;
* :mod:`ctxlog.queue.handler`: :class:`NonBlockingHandler`, one queue and one worker per target;
* :mod:`ctxlog.queue.background`: :func:`nonblocking`, which builds all of it, and :func:`flush`.
"""

from ctxlog.queue.background import flush, nonblocking
from ctxlog.queue.bounded import DEFAULT_MAX_BYTES, BoundedQueue
from ctxlog.queue.handler import NonBlockingHandler
from ctxlog.queue.stdlib import QueueHandler, QueueListener

__all__ = [
    "DEFAULT_MAX_BYTES",
    "BoundedQueue",
    "NonBlockingHandler",
    "QueueHandler",
    "QueueListener",
    "flush",
    "nonblocking",
]
