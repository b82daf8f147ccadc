"""
One connection to the configuration listener, and the part of its message received so far.

The listener's thread reads each connection without blocking, as bytes arrive: first the
4-byte length, which is checked against :data:`~ctxlog.liveconfig.MAX_PAYLOAD` before a byte of
the payload is read, then the payload. A connection that fails, or whose peer hangs up before
the whole message, is rejected as ``"incomplete"``; one that hangs up before sending anything
is closed quietly. The listener owns the deadline (``read_timeout``) and closes the socket.
"""

from __future__ import annotations

import logging
import socket
from typing import Final

from ctxlog.liveconfig.protocol import INCOMPLETE, LENGTH, MAX_PAYLOAD, TOO_LARGE, RejectedError

__all__ = ["Connection"]

#: The most bytes read from a connection at once.
_CHUNK: Final = 64 * 1024

_log = logging.getLogger("ctxlog.config")


class Connection:
    """One peer's connection and the part of its message received so far."""

    __slots__ = ("data", "deadline", "length", "payload", "peer", "sock")

    def __init__(self, sock: socket.socket, peer: str, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        #: When the whole message must have arrived (:func:`time.monotonic` seconds).
        self.deadline = deadline
        self.data = bytearray()
        #: The payload length announced, once the 4 bytes that carry it have arrived.
        self.length: int | None = None
        #: The whole payload, once it has arrived.
        self.payload: bytes | None = None

    def progress(self) -> str:
        """Say how much of the message has arrived."""
        if self.length is None:
            return f"{len(self.data)} of the 4 length bytes"
        return f"{len(self.data)} of the {self.length} payload bytes announced"

    def incomplete(self, kind: str, reason: str) -> RejectedError:
        """Return the rejection of this connection's message, cut short for ``reason``."""
        return RejectedError(kind, f"incomplete message ({self.progress()}): {reason}")

    def read(self) -> bool:
        """
        Read what has arrived; return True when this connection is done with.

        A connection is done once its whole payload has arrived (it is then in
        :attr:`payload`), or once its peer has hung up without sending anything.

        Raises:
            RejectedError: The length announced is too large, or the connection ended (failed,
                or the peer hung up) before the whole message arrived.
        """
        while True:
            expected = LENGTH.size if self.length is None else self.length
            wanted = expected - len(self.data)
            if wanted == 0:
                if self.length is not None:
                    self.payload = bytes(self.data)
                    return True
                self._start_payload()
                continue
            try:
                chunk = self.sock.recv(min(wanted, _CHUNK))
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as error:
                reason = f"the connection failed ({error.strerror or error})"
                raise self.incomplete(INCOMPLETE, reason) from None
            if not chunk:
                if self.length is None and not self.data:
                    _log.debug("connection from %s closed without a message", self.peer)
                    return True
                raise self.incomplete(INCOMPLETE, "the peer closed the connection")
            self.data += chunk

    def _start_payload(self) -> None:
        (length,) = LENGTH.unpack(self.data)
        if length > MAX_PAYLOAD:
            detail = f"announces {length} bytes, over the limit of {MAX_PAYLOAD} (not read)"
            raise RejectedError(TOO_LARGE, detail)
        self.length = length
        self.data = bytearray()
