"""
:class:`JSONSocketHandler`: send records to ``ctxlog receive`` as length-prefixed JSON frames.

The standard library's SocketHandler pickles records, and the receiver that unpickles them runs
whatever code the bytes name. This handler sends the frames of :mod:`ctxlog.wire` instead, and
differs from SocketHandler where that one loses records or corrupts the stream:

- **One connection per process.** The socket is opened on the first record a process sends and
  checked against :func:`os.getpid` before every send: a worker forked from a master that had
  already connected opens its own connection and never writes into the one it inherited (two
  processes writing into one TCP stream interleave their frames).
- **Nothing is lost silently while the receiver is away.** Frames that cannot be sent wait in a
  bounded buffer (``buffer`` frames, at most ``buffer_bytes`` bytes) and go out, in order, as
  soon as a connection succeeds; a small thread retries with exponential back-off while frames
  are waiting, so they do not depend on the next record to leave. When the buffer is full the
  *oldest* frame is dropped and counted in :attr:`JSONSocketHandler.dropped`; the first drop of
  an outage is reported on stderr.
- **A closed connection is noticed before writing.** The receiver never sends anything, so a
  connection that has become readable was closed by it (idle timeout, restart): the handler
  opens a new one instead of writing a record into a dead one.
- **A frame is never cut.** If a send fails or times out part-way through a frame, that
  connection is closed (the receiver discards the half frame) and the whole frame is sent again
  on the next connection.

Sending blocks for up to ``timeout`` seconds while a receiver stalls: put the handler behind
:func:`ctxlog.nonblocking` so that this happens in the delivery thread, not in a request. Name
resolution happens in that thread too, when a connection is made.

Delivery is *at most once* across a connection that breaks: frames the kernel had accepted
before the receiver went away cannot be told apart from frames it had read, and are not sent
again. Everything sent while the receiver is down, or before a send fails, is buffered and sent.

With a ``secret``, a frame is signed when it is sent, not when its record is logged: its
sequence number and time (which the receiver checks to refuse a replayed frame) are those of
the send, so a record kept through a long outage is still accepted. A frame sent again after a
failed send is signed again.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import os
import socket
import ssl
import threading
import time
import weakref
from typing import Final

from ctxlog import wire as _wire
from ctxlog._stderr import write_line
from ctxlog.handlers.syslog import _peer_closed
from ctxlog.record.stamp import stamp

__all__ = ["JSONSocketHandler"]

_live: weakref.WeakSet[JSONSocketHandler] = weakref.WeakSet()
_hooks: list[bool] = []
#: A whole number of frames is joined into one send up to this many bytes.
_BATCH: Final = 256 * 1024
#: ... and up to this many frames.
_FRAMES: Final = 64


def _after_fork_in_child() -> None:
    for handler in list(_live):
        handler._after_fork()  # noqa: SLF001


def _install_fork_hook() -> None:
    if not _hooks and hasattr(os, "register_at_fork"):
        _hooks.append(True)
        os.register_at_fork(after_in_child=_after_fork_in_child)


class JSONSocketHandler(logging.Handler):
    """
    Send each record to a ``ctxlog receive`` over TCP (optionally TLS) as one JSON frame.

    Args:
        host: The receiver's host name or address.
        port: The receiver's port.
        tls: ``None`` for plain TCP; ``True`` for TLS with the system's trusted certificates
            and host name checking; or an :class:`ssl.SSLContext` of your own.
        secret: A key shared with the receiver (``ctxlog receive --secret-file``); every
            frame then carries a sender id, a sequence number, the time it was sent and an
            HMAC-SHA256 tag over them and the record. At least 16 bytes; a ``str`` is encoded
            as UTF-8.
        timeout: Seconds a connection attempt or a send may take before it counts as failed.
        buffer: The most frames kept while the receiver cannot be reached.
        buffer_bytes: The most bytes those frames may take together.
        retry_start: The first wait before reconnecting, in seconds; it doubles on each
            failure up to ``retry_max``.
        retry_max: The longest wait between attempts.

    Raises:
        ValueError: A port, timeout, buffer size or back-off that is not usable, or a secret
            shorter than 16 bytes.
        TypeError: ``tls`` is neither ``None``, a bool nor an SSL context.

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
       Signed frames carry a sender id, sequence and time, set when the frame is sent; a
       record holding a lone surrogate is sent (escaped), no longer dropped.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | bool | None = None,
        secret: bytes | str | None = None,
        timeout: float = 5.0,
        buffer: int = 10_000,
        buffer_bytes: int = 16 * 1024 * 1024,
        retry_start: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        super().__init__()
        if not isinstance(host, str) or not host:
            msg = f"JSONSocketHandler: host={host!r} is not a host name or address"
            raise ValueError(msg)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            msg = f"JSONSocketHandler: port={port!r} is not a TCP port (1-65535)"
            raise ValueError(msg)
        if tls is True:
            tls = ssl.create_default_context()
        elif tls is False:
            tls = None
        if tls is not None and not isinstance(tls, ssl.SSLContext):
            msg = f"JSONSocketHandler: tls={tls!r}; use None, True or an ssl.SSLContext"
            raise TypeError(msg)
        if isinstance(secret, str):
            secret = secret.encode()
        if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
            msg = "JSONSocketHandler: secret must be at least 16 bytes (use a random key)"
            raise ValueError(msg)
        for name, value in (
            ("timeout", timeout),
            ("retry_start", retry_start),
            ("retry_max", retry_max),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                msg = f"JSONSocketHandler: {name}={value!r} is not a positive number of seconds"
                raise ValueError(msg)
        for name, value in (("buffer", buffer), ("buffer_bytes", buffer_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"JSONSocketHandler: {name}={value!r} is not a positive integer"
                raise ValueError(msg)
        self.host, self.port = host, port
        self.tls = tls
        self.timeout = float(timeout)
        self.buffer, self.buffer_bytes = buffer, buffer_bytes
        self.retry_start, self.retry_max = float(retry_start), float(retry_max)
        self._signer = _wire.Signer(secret) if secret is not None else None
        #: Records sent (handed to the kernel), records dropped (buffer full or not encodable),
        #: connections made, and connection or send failures.
        self.sent = 0
        self.dropped = 0
        self.connections = 0
        self.failures = 0
        self._sock: socket.socket | None = None
        self._pid = os.getpid()
        #: Frames waiting to be sent: unsigned frames, or the bodies of frames to sign.
        self._pending: collections.deque[bytes] = collections.deque()
        self._pending_bytes = 0
        self._delay = self.retry_start
        self._next_attempt = 0.0
        self._retry: threading.Thread | None = None
        self._wake = threading.Event()
        self._outage = False
        self._closed = False
        #: Set by ctxlog's delivery thread (nonblocking()): frames wait for its flush() at the
        #: end of a burst, or until a batch is full, and leave together.
        self._ctxlog_batching = False
        _install_fork_hook()
        _live.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``record`` as one frame now, or keep it until the receiver can be reached."""
        if record.levelno < self.level:
            return
        if "request_id" not in record.__dict__:
            # Attached directly, not behind ctxlog's QueueHandler or a ContextFilter: this is
            # the thread that logged, so the request's context is the current one.
            stamp(record)
        try:
            body = _wire.encode_body(record)
        except Exception:  # a record the wire format cannot carry; the stdlib contract
            self.dropped += 1
            self.handleError(record)
            return
        # Handler.handle() holds self.lock; the retry thread takes it too.
        if os.getpid() != self._pid:  # pragma: no cover - the fork hook runs first
            self._after_fork()
        self._keep(body if self._signer is not None else _wire.unsigned(body))
        if self._ctxlog_batching and len(self._pending) < _FRAMES and self._pending_bytes < _BATCH:
            return
        self._send_pending()

    def stats(self) -> dict[str, int]:
        """Return the counters: sent, dropped, buffered, connections, failures."""
        with self.lock:  # type: ignore[union-attr] # Handler.createLock() made it
            return {
                "sent": self.sent,
                "dropped": self.dropped,
                "buffered": len(self._pending),
                "connections": self.connections,
                "failures": self.failures,
            }

    def flush(self) -> None:
        """Send what is held (connecting first if no back-off is running)."""
        with self.lock:  # type: ignore[union-attr]
            if self._pending:
                self._send_pending()

    def close(self) -> None:
        """Send what is buffered (one attempt, whatever the back-off), then close."""
        with self.lock:  # type: ignore[union-attr]
            self._closed = True
            self._wake.set()
            if self._pending and os.getpid() == self._pid:
                self._next_attempt = 0.0
                self._send_pending()
            if self._pending:
                self.dropped += len(self._pending)
                write_line(
                    f"ctxlog: JSONSocketHandler closed with {len(self._pending)} records not "
                    f"sent to {self.host}:{self.port}"
                )
                self._pending.clear()
                self._pending_bytes = 0
            self._disconnect()
        _live.discard(self)
        super().close()

    # -- under self.lock ------------------------------------------------------------------------

    def _keep(self, frame: bytes) -> None:
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        over = 0
        while len(self._pending) > self.buffer or (
            self._pending_bytes > self.buffer_bytes and len(self._pending) > 1
        ):
            self._pending_bytes -= len(self._pending.popleft())
            over += 1
        if over:
            if not self.dropped:
                write_line(
                    f"ctxlog: JSONSocketHandler buffer for {self.host}:{self.port} is full "
                    f"({self.buffer} records); dropping the oldest, counted in .dropped"
                )
            self.dropped += over

    def _send_pending(self) -> None:
        if self._sock is not None and _peer_closed(self._sock, self.timeout):
            # The receiver closed this connection (idle timeout, restart): a frame written into
            # it now would vanish without an error. Open a new one instead.
            self._disconnect()
            self._next_attempt = 0.0
        if self._sock is None:
            if time.monotonic() < self._next_attempt:
                self._start_retry()
                return
            if not self._connect():
                self._start_retry()
                return
        sock = self._sock
        pending = self._pending
        while pending and sock is not None:
            # Join whole frames into one send; a failure re-sends all of them.
            batch = [pending[0]]
            size = len(batch[0])
            for frame in itertools.islice(pending, 1, _FRAMES):
                if size + len(frame) > _BATCH:
                    break
                batch.append(frame)
                size += len(frame)
            if self._signer is not None:
                # Signed now, as it leaves: the receiver checks the time and sequence.
                batch = [self._signer.sign(body) for body in batch]
            try:
                sock.sendall(b"".join(batch) if len(batch) > 1 else batch[0])
            except OSError as error:
                self._failed(error)
                self._start_retry()
                return
            for _ in batch:
                self._pending_bytes -= len(pending.popleft())
            self.sent += len(batch)

    def _connect(self) -> bool:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as error:
            self._failed(error)
            return False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except (OSError, ValueError) as error:
            sock.close()
            self._failed(error)
            return False
        self._sock = sock
        self.connections += 1
        self._delay = self.retry_start
        if self._outage:
            self._outage = False
            write_line(f"ctxlog: JSONSocketHandler reaches {self.host}:{self.port} again")
        return True

    def _failed(self, error: OSError | ValueError) -> None:
        self.failures += 1
        self._disconnect()
        self._next_attempt = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.retry_max)
        if not self._outage:
            self._outage = True
            write_line(
                f"ctxlog: JSONSocketHandler cannot send to {self.host}:{self.port} ({error!r}); "
                f"keeping up to {self.buffer} records and retrying with back-off"
            )

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):  # close() may report an earlier failure
                sock.close()

    def _start_retry(self) -> None:
        if self._retry is not None or self._closed:
            return
        thread = threading.Thread(
            target=self._retry_loop, name=f"ctxlog-socket-retry-{id(self):x}", daemon=True
        )
        self._retry = thread
        thread.start()

    def _retry_loop(self) -> None:
        while True:
            with self.lock:  # type: ignore[union-attr]
                if self._closed or not self._pending or os.getpid() != self._pid:
                    self._retry = None
                    return
                wait = self._next_attempt - time.monotonic()
                if wait <= 0:
                    self._send_pending()
                    if not self._pending:
                        self._retry = None
                        return
                    wait = self._next_attempt - time.monotonic()
            self._wake.wait(max(wait, 0.01))

    def _after_fork(self) -> None:
        # The parent's connection belongs to the parent: forget it without closing the
        # shared stream, and drop the parent's backlog (the parent sends it).
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                os.close(sock.detach())
        self._pid = os.getpid()
        self._pending.clear()
        self._pending_bytes = 0
        self._retry = None
        self._wake = threading.Event()
        self._delay = self.retry_start
        self._next_attempt = 0.0
        self._outage = False

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        tls = " tls" if self.tls is not None else ""
        return f"<JSONSocketHandler {self.host}:{self.port}{tls} ({level})>"
