"""
:class:`Link`: what the socket of a network handler is, whatever the transport.

A handler that sends over the network (:class:`~ctxlog.handlers.JSONSocketHandler`,
:class:`~ctxlog.handlers.SyslogHandler`) formats a record into bytes and hands them to a sender:
:class:`~ctxlog.handlers.sender.StreamSender` for TCP and TLS,
:class:`~ctxlog.handlers.datagram.DatagramSender` for UDP. Both are links, and share:

- the server's address and the socket, opened on first use by the process that sends and
  forgotten (never closed, never written to) in a forked child, which opens its own;
- the counters of :meth:`Link.stats`, which tell about this process;
- the back-off between connection attempts after a failure (doubling from ``retry_start`` up to
  ``retry_max``, reset by a successful send);
- one line on stderr for the first failure of an outage, further failures counted, not printed.

A link is not thread-safe: its owner calls it under its handler's lock.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

from ctxlog._stderr import write_line

__all__ = ["Link"]


class Link:
    """
    The socket to one server, its counters, back-off and outage reports (see the module).

    Args:
        name: Who sends, for the lines on stderr (``"SyslogHandler"``).
        host: The server's host name or address.
        port: The server's port.
        transport: ``"udp"``, ``"tcp"`` or ``"tls"``.
        timeout: Seconds that connecting or one send may take.
        retry_start: The first wait after a failed attempt, in seconds.
        retry_max: The longest wait between attempts.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        transport: str,
        timeout: float,
        retry_start: float,
        retry_max: float,
    ) -> None:
        self.name = name
        self.host, self.port = host, port
        self.transport = transport
        self.timeout = timeout
        self.retry_start, self.retry_max = retry_start, retry_max
        #: Records handed to the kernel, records dropped, connections made (sockets opened, for
        #: UDP), connection or send failures: in this process.
        self.sent = 0
        self.dropped = 0
        self.connections = 0
        self.failures = 0
        self.sock: socket.socket | None = None
        self.pid = os.getpid()
        self.delay = retry_start
        self.next_attempt = 0.0
        self.outage = 0  # failures since the last successful send; 0 while all is well

    def stats(self) -> dict[str, int]:
        """Return the counters: sent, dropped, buffered, connections, failures."""
        return {
            "sent": self.sent,
            "dropped": self.dropped,
            "buffered": self.buffered(),
            "connections": self.connections,
            "failures": self.failures,
        }

    def buffered(self) -> int:
        """Return how many records wait to be sent (none: a link without a buffer)."""
        return 0

    def due(self) -> bool:
        """Tell whether the back-off allows a connection attempt now."""
        return time.monotonic() >= self.next_attempt

    def failed(self, error: OSError | ValueError, *, backoff: bool) -> None:
        """Count a failed attempt, close the socket, and back off (if ``backoff``)."""
        self.failures += 1
        self.disconnect()
        if backoff:
            self.next_attempt = time.monotonic() + self.delay
            self.delay = min(self.delay * 2, self.retry_max)
        if not self.outage:
            write_line(
                f"ctxlog: {self.name} cannot send to {self.host}:{self.port} over "
                f"{self.transport} ({error!r}); {self.keeping()}retrying with back-off, further "
                "failures are counted, not printed"
            )
        self.outage += 1

    def keeping(self) -> str:
        """Return what the link keeps during an outage, for the line on stderr."""
        return ""

    def succeeded(self) -> None:
        """After a send the kernel took: the next failure backs off from the start again."""
        self.delay = self.retry_start

    def disconnect(self) -> None:
        """Close the socket, if there is one."""
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):  # close() may report an earlier failure
                sock.close()

    def after_fork_in_child(self) -> None:
        """
        Start afresh in a forked child (called by ctxlog's fork hook).

        The socket belongs to the parent: it is forgotten without a TLS goodbye or a shutdown,
        which would end the parent's connection too. The counters tell about this process.
        """
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                os.close(sock.detach())
        self.pid = os.getpid()
        self.sent = self.dropped = self.connections = self.failures = 0
        self.delay = self.retry_start
        self.next_attempt = 0.0
        self.outage = 0
