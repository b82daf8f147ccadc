"""
:class:`StreamSender`: frames over one TCP or TLS connection per process, kept through outages.

Both stream handlers send through it: :class:`~ctxlog.handlers.JSONSocketHandler` (JSON frames
to ``ctxlog receive``) and :class:`~ctxlog.handlers.SyslogHandler` over TCP and TLS (RFC 6587
octet-counted messages). The handler turns a record into one frame and calls :meth:`push`; the
sender does the rest:

- **Connect on first use**, in the thread that sends (name resolution included), with
  ``TCP_NODELAY`` and, for TLS, the handler's :class:`ssl.SSLContext` and server name. A forked
  child forgets the parent's connection and opens its own (see :class:`~ctxlog.handlers.link.Link`).
- **Notice a connection the server closed** before writing into it: the servers never send
  anything, so a readable connection was closed (an idle timeout, a restart). A new one is
  opened at once; that is no failure.
- **Keep what cannot leave** in a bounded buffer (``buffer`` frames, ``buffer_bytes`` bytes);
  when it is full the *oldest* frames are dropped, counted, and the first drop is reported.
- **Retry with back-off.** A connection that worked and fails gets one new attempt at once;
  a failed attempt on a new one backs off (see :class:`~ctxlog.handlers.link.Link`), and a
  small thread sends the kept frames when the wait is over, so they do not wait for the next
  record. The thread ends when nothing is kept.
- **Send in batches.** Whole frames are joined into one send (at most :data:`BATCH_FRAMES`
  frames, :data:`BATCH_BYTES` bytes); a failed send closes the connection, so the server never
  takes a cut frame for a whole one, and the whole batch is sent again. While a delivery worker
  has switched batching on (:meth:`set_batching`), frames wait for its ``flush()`` at the end of a
  burst, or for a full batch.

The sender is not thread-safe: the handler calls it under its lock, which it shares with the
sender's retry thread.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Final

from ctxlog._stderr import write_line
from ctxlog.handlers.link import Link

__all__ = ["BATCH_BYTES", "BATCH_FRAMES", "StreamSender", "peer_closed"]

#: Whole frames are joined into one send up to this many frames ...
BATCH_FRAMES: Final = 64
#: ... and up to this many bytes.
BATCH_BYTES: Final = 256 * 1024


def peer_closed(sock: socket.socket, timeout: float) -> bool:
    """Tell whether the server closed ``sock`` (or sent something, which neither server does)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    if not isinstance(sock, ssl.SSLSocket):
        return True  # end of stream, a reset, or bytes the server never sends
    # A TLS 1.3 server sends session tickets after the handshake: readable, yet alive.
    sock.settimeout(0)  # non-blocking
    try:
        sock.recv(1)
    except ssl.SSLWantReadError:
        return False
    except (OSError, ValueError):
        return True
    finally:
        sock.settimeout(timeout)
    return True  # close_notify or unexpected data


class StreamSender(Link):
    """
    Send frames over one connection per process; keep them, bounded, while it cannot.

    Args:
        name: Who sends, for the lines on stderr (``"JSONSocketHandler"``).
        host: The server's host name or address.
        port: The server's port.
        tls: The context for a TLS connection, or ``None`` for plain TCP.
        timeout: Seconds that connecting, the TLS handshake or one send may take.
        lock: The handler's lock: held by every caller, taken by the retry thread.
        buffer: The most frames kept (0: none is kept beyond one attempt).
        buffer_bytes: The most bytes those frames may take together (one frame is always kept).
        retry_start: The first wait after a failed attempt, in seconds.
        retry_max: The longest wait between attempts.
        seal: Applied to each frame as it leaves (a signature that must be fresh); the frames
            kept are then what it takes.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        timeout: float,
        lock: threading.RLock,
        buffer: int,
        buffer_bytes: int | None = None,
        retry_start: float,
        retry_max: float,
        seal: Callable[[bytes], bytes] | None = None,
    ) -> None:
        super().__init__(
            name,
            host,
            port,
            transport="tcp" if tls is None else "tls",
            timeout=timeout,
            retry_start=retry_start,
            retry_max=retry_max,
        )
        self.tls = tls
        self.lock = lock
        self.buffer = buffer
        self.buffer_bytes = buffer_bytes
        self.seal = seal
        #: Frames waiting to be sent, oldest first, and their size.
        self.pending: collections.deque[bytes] = collections.deque()
        self.pending_bytes = 0
        #: Hold frames until flush() or a full batch (set by a delivery worker).
        self.batching = False
        self.closed = False
        self.retry: threading.Thread | None = None
        self.wake = threading.Event()
        # Frames are held while this many are kept, and this many bytes.
        self._hold_frames = min(BATCH_FRAMES, buffer)
        self._hold_bytes = BATCH_BYTES if buffer_bytes is None else min(BATCH_BYTES, buffer_bytes)

    def buffered(self) -> int:
        """Return how many frames wait to be sent."""
        return len(self.pending)

    def keeping(self) -> str:
        """Return what the sender keeps during an outage, for the line on stderr."""
        return f"keeping up to {self.buffer} records, "

    def push(self, frame: bytes) -> None:
        """Send ``frame`` with those kept before it, or keep it (the oldest go when full)."""
        if os.getpid() != self.pid:  # pragma: no cover - the fork hook runs first
            self.after_fork_in_child()
        self.pending.append(frame)
        self.pending_bytes += len(frame)
        if not (
            self.batching
            and len(self.pending) < self._hold_frames
            and self.pending_bytes < self._hold_bytes
        ):
            self.send_pending()
        self.trim()

    def set_batching(self, enabled: bool) -> None:
        """Hold frames until :meth:`flush` or a full batch; switched off, send what is held."""
        self.batching = enabled
        if not enabled:
            self.flush()

    def flush(self) -> None:
        """Send what is kept, connecting first if no back-off is running."""
        if self.pending and os.getpid() == self.pid:
            self.send_pending()

    def close(self) -> None:
        """Send what is kept (one attempt, whatever the back-off), then close the connection."""
        self.closed = True
        self.wake.set()
        if self.pending and os.getpid() == self.pid:
            self.next_attempt = 0.0
            self.send_pending()
        if self.pending:
            self.dropped += len(self.pending)
            write_line(
                f"ctxlog: {self.name} closed with {len(self.pending)} records not sent to "
                f"{self.host}:{self.port}"
            )
            self.pending.clear()
            self.pending_bytes = 0
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and os.getpid() == self.pid:
            # A TLS goodbye (close_notify): without one, the server logs the end of the
            # connection as an error. Its answer is awaited for at most the socket's timeout.
            with contextlib.suppress(OSError, ValueError):
                self.sock = sock.unwrap()
        self.disconnect()

    def send_pending(self) -> None:
        """Send the kept frames in batches; on failure, keep the rest and retry later."""
        if self.sock is not None and peer_closed(self.sock, self.timeout):
            # The server closed this connection (idle timeout, restart): a frame written into
            # it now would vanish without an error. Open a new one at once; no failure.
            self.disconnect()
            self.next_attempt = 0.0
        pending = self.pending
        fresh = False
        while pending:
            sock = self.sock
            if sock is None:
                sock = self.connect()
                if sock is None:
                    self.start_retry()
                    return
                fresh = True
            batch = self.batch()
            try:
                sock.sendall(b"".join(batch) if len(batch) > 1 else batch[0])
            except OSError as error:
                # A connection that worked gets one new attempt at once; a new one that fails
                # means the server is in trouble: back off.
                self.failed(error, backoff=fresh)
                if fresh:
                    self.start_retry()
                    return
                continue
            for _ in batch:
                self.pending_bytes -= len(pending.popleft())
            self.sent += len(batch)
            self.succeeded()

    def batch(self) -> list[bytes]:
        """Return the frames of the next send: whole frames from the oldest, sealed if asked."""
        pending = self.pending
        batch = [pending[0]]
        size = len(batch[0])
        for frame in itertools.islice(pending, 1, BATCH_FRAMES):
            if size + len(frame) > BATCH_BYTES:
                break
            batch.append(frame)
            size += len(frame)
        if self.seal is not None:
            # Sealed now, as they leave: a signature's time and sequence are the send's.
            batch = [self.seal(frame) for frame in batch]
        return batch

    def trim(self) -> None:
        """Drop the oldest frames beyond the buffer's bounds; report the first drop."""
        pending = self.pending
        limit = self.buffer_bytes
        over = 0
        while len(pending) > self.buffer or (
            limit is not None and self.pending_bytes > limit and len(pending) > 1
        ):
            self.pending_bytes -= len(pending.popleft())
            over += 1
        if over:
            if not self.dropped:
                write_line(
                    f"ctxlog: {self.name} buffer for {self.host}:{self.port} is full "
                    f"({self.buffer} records); dropping the oldest, counted in .dropped"
                )
            self.dropped += over

    def connect(self) -> socket.socket | None:
        """Open the connection if the back-off allows; ``None`` if not, or if it failed."""
        if not self.due():
            return None
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except (OSError, ValueError) as error:  # ValueError: a name IDNA cannot encode
            self.failed(error, backoff=True)
            return None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except (OSError, ValueError) as error:
            sock.close()
            self.failed(error, backoff=True)
            return None
        self.sock = sock
        self.connections += 1
        return sock

    def succeeded(self) -> None:
        """After a send the kernel took: back off from the start again; say the outage ended."""
        self.delay = self.retry_start
        if self.outage:
            write_line(
                f"ctxlog: {self.name} reaches {self.host}:{self.port} again after "
                f"{self.outage} failures"
            )
            self.outage = 0

    def start_retry(self) -> None:
        """Start the thread that sends the kept frames when the back-off is over."""
        if self.retry is not None or self.closed:
            return
        thread = threading.Thread(
            target=self._retry_loop, name=f"ctxlog-socket-retry-{id(self):x}", daemon=True
        )
        self.retry = thread
        thread.start()

    def _retry_loop(self) -> None:
        while True:
            with self.lock:
                if self.closed or not self.pending or os.getpid() != self.pid:
                    self.retry = None
                    return
                wait = self.next_attempt - time.monotonic()
                if wait <= 0:
                    self.send_pending()
                    if not self.pending:
                        self.retry = None
                        return
                    wait = self.next_attempt - time.monotonic()
            self.wake.wait(max(wait, 0.01))

    def after_fork_in_child(self) -> None:
        """Start afresh in a forked child: the connection, backlog and thread are the parent's."""
        super().after_fork_in_child()
        self.pending.clear()
        self.pending_bytes = 0
        self.retry = None
        self.wake = threading.Event()
