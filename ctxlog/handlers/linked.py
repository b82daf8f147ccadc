"""
:class:`LinkedHandler`: what a network handler passes on to its sender.

:class:`~ctxlog.handlers.JSONSocketHandler` and :class:`~ctxlog.handlers.SyslogHandler` format a
record into bytes and hand them to a sender (:mod:`ctxlog.handlers.sender` for TCP and TLS,
:mod:`ctxlog.handlers.datagram` for UDP). Batching, the counters, flushing and closing are the
sender's; the handler only calls it under its own lock, which the sender's retry thread takes too.
"""

from __future__ import annotations

import logging

from ctxlog._lifecycle import unregister
from ctxlog.handlers.datagram import DatagramSender
from ctxlog.handlers.sender import StreamSender

__all__ = ["LinkedHandler"]


class LinkedHandler(logging.Handler):
    """A handler whose records leave through ``self._sender``; the calls it passes on."""

    _sender: StreamSender | DatagramSender

    @property
    def sent(self) -> int:
        """Records handed to the kernel by this process."""
        return self._sender.sent

    @property
    def dropped(self) -> int:
        """Records dropped: the buffer was full, a record could not be encoded, or (UDP) sent."""
        return self._sender.dropped

    @property
    def connections(self) -> int:
        """Connections made by this process (sockets opened, for UDP)."""
        return self._sender.connections

    @property
    def failures(self) -> int:
        """Connection attempts and sends that failed."""
        return self._sender.failures

    def set_batching(self, enabled: bool) -> None:
        """
        Hold records until :meth:`flush` or a full batch (``enabled``), or send each at once.

        :func:`ctxlog.nonblocking`'s delivery thread switches it on while it owns the handler
        (see :class:`ctxlog.queue.target.Batching`): a burst then leaves in a few sends instead
        of one per record. Switched off, what is held is sent. Over UDP it changes nothing.

        .. versionadded:: 0.3.0
        """
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock() made it
            self._sender.set_batching(enabled)

    def stats(self) -> dict[str, int]:
        """Return the counters: sent, dropped, buffered, connections, failures."""
        with self.lock:  # type: ignore[union-attr]
            return self._sender.stats()

    def flush(self) -> None:
        """Send what is held, connecting first unless a back-off is running."""
        with self.lock:  # type: ignore[union-attr]
            self._sender.flush()

    def close(self) -> None:
        """Send what is held (one attempt, whatever the back-off), then close the connection."""
        with self.lock:  # type: ignore[union-attr]
            self._sender.close()
        unregister(self._sender)
        super().close()
