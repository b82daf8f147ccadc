"""
:class:`DatagramSender`: one UDP datagram per record, nothing kept.

:class:`~ctxlog.handlers.SyslogHandler` with ``transport="udp"`` sends through it. Nothing tells
a UDP sender whether anyone received a datagram, so nothing is kept for later: a datagram that
cannot be sent is dropped and counted. The socket is connected, so that the kernel reports the
ICMP "port unreachable" of an earlier datagram as an error of a later send (counted as a
failure). Back-off, counters and the fork are those of every :class:`~ctxlog.handlers.link.Link`;
over UDP only the first failure is ever printed, since a datagram the kernel took says nothing
about the server.
"""

from __future__ import annotations

import os
import socket

from ctxlog.handlers.link import Link

__all__ = ["DatagramSender"]


class DatagramSender(Link):
    """Send each message as one datagram on a connected UDP socket (see the module)."""

    def push(self, datagram: bytes) -> None:
        """Send ``datagram``, on a new socket if the kernel reports an earlier one refused."""
        if os.getpid() != self.pid:  # pragma: no cover - the fork hook runs first
            self.after_fork_in_child()
        for _ in range(2):
            sock = self.sock or self.connect()
            if sock is None:
                break
            try:
                sock.send(datagram)
            except OSError as error:
                # ECONNREFUSED reports an earlier datagram that nobody received; try this one
                # once more on a new socket.
                self.failed(error, backoff=False)
                continue
            self.sent += 1
            self.succeeded()
            return
        self.dropped += 1

    def set_batching(self, enabled: bool) -> None:
        """Do nothing: every datagram leaves on its own."""

    def flush(self) -> None:
        """Do nothing: nothing is kept."""

    def close(self) -> None:
        """Close the socket."""
        self.disconnect()

    def connect(self) -> socket.socket | None:
        """Open a connected socket if the back-off allows; ``None`` if not, or if it failed."""
        if not self.due():
            return None
        try:
            family, _, proto, _, address = socket.getaddrinfo(
                self.host, self.port, 0, socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, socket.SOCK_DGRAM, proto)
        except (OSError, ValueError) as error:  # ValueError: a name IDNA cannot encode
            self.failed(error, backoff=True)
            return None
        try:
            sock.connect(address)  # a connected socket hears of ICMP port unreachable
        except OSError as error:
            sock.close()
            self.failed(error, backoff=True)
            return None
        self.sock = sock
        self.connections += 1
        return sock
