"""
Deliver records to slow handlers without ever making the application wait.

:func:`ctxlog.nonblocking` builds the whole path in one call; :class:`QueueHandler` and
:class:`QueueListener` are drop-in subclasses of the standard library's pair.
"""

from ctxlog.queue.nonblocking import (
    DEFAULT_MAX_BYTES,
    BoundedQueue,
    NonBlockingHandler,
    QueueHandler,
    QueueListener,
    flush,
    nonblocking,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "BoundedQueue",
    "NonBlockingHandler",
    "QueueHandler",
    "QueueListener",
    "flush",
    "nonblocking",
]
