"""
What a delivery worker may ask of the handler it delivers to, beyond :class:`logging.Handler`.

A worker of :func:`ctxlog.nonblocking` hands each record to its target with ``handle()`` and,
when its queue runs empty, calls the target's ``flush()``. A target that can send several
records at once (one system call for a burst instead of one per record) says so by having the
method of :class:`Batching`: the worker then switches batching on while it owns the target, and
off (followed by a ``flush()``) when it lets it go.
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
