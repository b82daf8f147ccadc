"""
What a delivery worker asks of the handler it delivers to, beyond :class:`logging.Handler`.

A worker of :func:`ctxlog.nonblocking` owns one target handler from the moment the handler is
built until it is closed. It talks to the target only through this protocol, and changes none
of the target's attributes:

``handle(record)``
    Each record, in the worker's thread, as a :class:`~logging.handlers.QueueListener` does.
``flush()``
    When asked to (:meth:`ctxlog.queue.NonBlockingHandler.flush`, ``close()``, exit), and, for a
    target that batches, whenever the worker's queue runs empty: the end of a burst.
``handleError(record)``
    A target reports a record it could not deliver the stdlib's way, by calling its
    ``handleError``. The worker counts these failures (``stats()["failed"]``) and lets one
    traceback through per ``report_interval``: it hands records to a *view* of the target, an
    object of a subclass of the target's class made for that worker, which shares the target's
    attribute dict (so its lock, stream and state are the target's) and whose ``handleError``
    counts, then calls the target's own. Inside its methods, ``self`` may therefore be that view:
    a target must not rely on the identity of ``self`` (register it with ctxlog's lifecycle, or
    anywhere, in ``__init__``).
:class:`Batching`, optional
    A target that can send several records at once (one system call for a burst instead of one
    per record) says so by having the method of :class:`Batching`: the worker switches batching
    on while it owns the target, and off (followed by a ``flush()``) when it lets it go.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Batching"]


@runtime_checkable
class Batching(Protocol):
    """
    A target that may hold records and send them together.

    .. versionadded:: 0.3.0
    """

    def set_batching(self, enabled: bool) -> None:
        """
        Allow (or stop allowing) the target to hold records until ``flush()`` or a full batch.

        While it is off, every record must leave as soon as it is handled, as for any handler
        used on its own.
        """
