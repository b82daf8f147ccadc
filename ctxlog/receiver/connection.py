"""
One sender's connection: frames cut from the bytes as they arrive, checked, then dispatched.

A :class:`Connection` is the asyncio protocol of one accepted socket. It reads a frame's header
first (so an oversized frame is refused before its body is kept), waits for the whole frame,
decodes and verifies it with :mod:`ctxlog.wire` (signature and replay window included), stamps
the ``peer`` it came from, and hands the record to its receiver. Its deadlines are its own: a
frame must be whole within ``read_timeout`` of its first byte, a quiet connection closes after
``idle_timeout``, and one without a valid frame (a TLS handshake included) keeps its slot for
``read_timeout`` at most. A bad frame closes this connection only.

What a connection needs of the receiver that accepted it (its limits, its counters, the slot
bookkeeping) is written down as :class:`Server`, which :class:`~ctxlog.receiver.Receiver` is.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Protocol

from ctxlog.receiver.report import Reporter
from ctxlog.wire import HEADER_SIZE, Replay, ReplayError, WireError, decode, read_header

__all__ = ["Connection", "Server"]


class Server(Protocol):
    """What a :class:`Connection` reads from, and reports to, the receiver that accepted it."""

    secret: bytes | None
    max_frame: int
    max_buffered: int
    read_timeout: float
    idle_timeout: float
    tls: ssl.SSLContext | None
    replay: Replay | None
    report: Reporter
    dispatch: Callable[[logging.LogRecord], None]
    connections: set[Connection]
    received: int
    idle_closed: int
    #: Bytes of unfinished frames held for all connections; each keeps its share counted.
    buffered: int

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the receiver runs in."""

    def admit(self, connection: Connection) -> bool:
        """Give ``connection`` a slot (making room if needed); ``False`` if it is refused."""

    def start_tls(self, connection: Connection, transport: asyncio.Transport) -> None:
        """Run ``connection``'s TLS handshake on ``transport`` in a task the receiver keeps."""

    def mark_proven(self, connection: Connection) -> None:
        """Note that ``connection`` sent its first valid frame."""

    def release(self, connection: Connection) -> None:
        """Give back ``connection``'s slot."""

    def shed(self, current: Connection) -> None:
        """Close connections holding the most unfinished bytes until under ``max_buffered``."""

    def end_batch(self) -> None:
        """Flush what the records of one read wrote."""


class _Rejected(Exception):  # noqa: N818 - a signal between two methods, never raised further
    """A frame that closes its connection: the kind of rejection, and why."""

    def __init__(self, *, kind: str, detail: str) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


class Connection(asyncio.Protocol):
    """One sender: frames are cut from the bytes as they arrive, checked and dispatched."""

    def __init__(self, receiver: Server) -> None:
        self.receiver = receiver
        self.transport: asyncio.Transport | None = None
        self.peer = "-"
        self.buffer = bytearray()
        self.frame_size = 0  # of the frame being read, once its header is known
        self.signature_size = 0
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.last_data = 0.0
        #: A valid frame came on this connection. Until one does, the connection keeps its
        #: slot for ``read_timeout`` at most, and is the first to make room for another.
        self.proven = False
        #: In the TLS handshake (which counts against the same limits as a frame).
        self.handshaking = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Take a slot (or be refused), start the first deadline, and the TLS handshake."""
        if not isinstance(transport, asyncio.Transport):  # pragma: no cover - stream servers
            transport.close()
            return
        self.transport = transport
        receiver = self.receiver
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            host = str(peer[0])
            self.peer = f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
        if not receiver.admit(self):
            self.transport = None
            transport.abort()
            return
        self.last_data = time.monotonic()
        # Not extended by what it sends: a connection without a valid frame (or a TLS
        # handshake) this long after it opened is closed.
        self._arm(self.last_data + min(receiver.read_timeout, receiver.idle_timeout))
        if receiver.tls is not None:
            self.handshaking = True
            transport.pause_reading()  # the handshake reads first
            receiver.start_tls(self, transport)

    async def handshake(self, raw: asyncio.Transport) -> None:
        """Upgrade ``raw`` to TLS; on failure, close it and count the reason."""
        receiver = self.receiver
        tls = receiver.tls
        if self.transport is not raw or tls is None:
            return  # closed (evicted, stopped) before the handshake began
        try:
            secure = await receiver.loop.start_tls(
                raw, self, tls, server_side=True, ssl_handshake_timeout=receiver.read_timeout
            )
        except Exception as error:  # ssl.SSLError, a reset, a timeout: each is counted
            if self.transport is raw:
                self.reject("tls handshake", f"failed: {error!r}"[:300])
            return
        if secure is None or self.transport is not raw:
            # Closed while in the handshake (evicted, timed out, stopped, or a bad first frame
            # read as soon as the handshake was done).
            if secure is not None:
                secure.abort()
            return
        self.transport = secure
        self.handshaking = False

    def data_received(self, data: bytes) -> None:
        """Dispatch the frames ``data`` completes, keep the rest, and move the deadline."""
        if self.transport is None:
            return
        self.handshaking = False  # with TLS, data arrives once the handshake is done
        receiver = self.receiver
        buffer = self.buffer
        was_empty = not buffer
        buffer += data
        receiver.buffered += len(data)
        self.last_data = time.monotonic()
        try:
            used, completed = self._read_frames(buffer)
        except _Rejected as rejection:
            self.reject(rejection.kind, rejection.detail)
            return
        if completed:
            if not self.proven:
                self.proven = True
                receiver.mark_proven(self)
            receiver.end_batch()
        if used:
            del buffer[:used]
            receiver.buffered -= used
        if receiver.buffered > receiver.max_buffered:
            receiver.shed(self)
            if self.transport is None:
                return
        if self.proven:  # else the deadline set when it connected stands
            self._rearm(began=was_empty or bool(used))

    def _read_frames(self, buffer: bytearray) -> tuple[int, bool]:
        """
        Dispatch every whole frame at the start of ``buffer``.

        Return the bytes they took and whether any held a record (a replayed or stale frame is
        skipped). A frame still arriving stays, its size known once its header has come.

        Raises:
            _Rejected: A header or frame that closes the connection.
        """
        receiver = self.receiver
        start = 0
        end = len(buffer)
        completed = False
        while True:
            if not self.frame_size:
                if end - start < HEADER_SIZE:
                    break
                self._begin_frame(bytes(buffer[start : start + HEADER_SIZE]))
            frame_end = start + self.frame_size
            if frame_end > end:
                break
            record = self._decode(buffer, start, frame_end)
            start = frame_end
            self.frame_size = 0
            if record is not None:
                completed = True
                record.peer = self.peer
                receiver.received += 1
                receiver.dispatch(record)
        return start, completed

    def _begin_frame(self, header: bytes) -> None:
        """Read a frame's header: how long the frame is, and whether it may come at all."""
        receiver = self.receiver
        try:
            size, length = read_header(header, receiver.max_frame)
        except WireError as error:
            raise _Rejected(kind="bad header", detail=str(error)) from None
        if receiver.secret is not None and not size:
            raise _Rejected(kind="unsigned frame", detail="this receiver requires signed frames")
        self.signature_size = size
        self.frame_size = HEADER_SIZE + size + length

    def _decode(self, buffer: bytearray, start: int, end: int) -> logging.LogRecord | None:
        """Return the record of the whole frame ``buffer[start:end]``, or None to skip it."""
        receiver = self.receiver
        header_end = start + HEADER_SIZE
        body_start = header_end + self.signature_size
        try:
            return decode(
                bytes(buffer[start:header_end]),
                bytes(buffer[body_start:end]),
                bytes(buffer[header_end:body_start]) if self.signature_size else None,
                receiver.secret,
                receiver.max_frame,
                replay=receiver.replay,
            )
        except ReplayError as error:
            # A whole, authentic frame, seen before or too old: skip it, keep reading.
            receiver.report(error.reason, self.peer, str(error), closed=False)
            return None
        except WireError as error:
            raise _Rejected(kind="bad frame", detail=str(error)) from None

    def _rearm(self, *, began: bool) -> None:
        """Set the deadline after a read: idle between frames, or a frame's own time to come."""
        if not self.buffer:
            self._arm(self.last_data + self.receiver.idle_timeout)
        elif began:
            # A frame began: it must be whole within read_timeout of its first byte.
            self._arm(self.last_data + self.receiver.read_timeout)

    def _arm(self, deadline: float) -> None:
        # One timer per connection; moving the deadline later costs nothing until it fires.
        self.deadline = deadline
        if self.timer is not None:
            if self.timer_at <= deadline:
                return
            self.timer.cancel()
        self.timer_at = deadline
        loop = self.receiver.loop
        self.timer = loop.call_at(loop.time() + (deadline - time.monotonic()), self._check)

    def _check(self) -> None:
        self.timer = None
        if self.transport is None:
            return
        now = time.monotonic()
        if now < self.deadline:
            self._arm(self.deadline)
            return
        receiver = self.receiver
        if self.handshaking:
            self.reject(
                "tls handshake", f"not complete {receiver.read_timeout:g} s after connecting"
            )
        elif self.buffer:
            self.reject(
                "read timeout",
                f"a frame was not complete {receiver.read_timeout:g} s after it began"
                if self.proven
                else f"no whole frame {receiver.read_timeout:g} s after connecting",
            )
        else:
            receiver.idle_closed += 1
            self.close()

    def eof_received(self) -> bool:
        """Close when the sender has closed its side."""
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        """Count a frame cut short, and give back what the connection held."""
        receiver = self.receiver
        if self in receiver.connections and self.buffer and self.transport is not None:
            receiver.report(
                "truncated frame",
                self.peer,
                f"the connection ended {len(self.buffer)} bytes into a frame",
            )
        self.transport = None
        self._forget()

    def reject(self, kind: str, detail: str) -> None:
        """Count and report a rejection of ``kind``, then close the connection at once."""
        self.receiver.report(kind, self.peer, detail)
        self.close(abort=True)

    def close(self, *, abort: bool = False) -> None:
        """Close the connection (reset it if ``abort``) and give back what it held."""
        transport, self.transport = self.transport, None
        self._forget()
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()

    def _forget(self) -> None:
        """Give back this connection's slot, buffered bytes and timer (any number of times)."""
        receiver = self.receiver
        receiver.release(self)
        receiver.buffered -= len(self.buffer)
        self.buffer = bytearray()
        self.frame_size = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
