"""
``ctxlog receive``: one process that writes the records of many.

Worker processes cannot share a log file: a :class:`~logging.handlers.RotatingFileHandler` in
each of them loses lines at every rollover. Instead every worker sends its records with
:class:`ctxlog.handlers.JSONSocketHandler` and one receiver writes them, through one logging
configuration: a rotating file by default, or any dictConfig.

The receiver reads the frames of :mod:`ctxlog.wire` (length-prefixed JSON, never pickle). It
is written for a port that hostile peers can reach:

- a frame's size is checked from its header before any body byte is kept (``max_frame``);
- a body is parsed as JSON with a strict schema (and a record dated after the year 9999, which
  no clock can print, is rejected); a message is never combined with arguments
  (``msg % args``) from the network;
- a frame must arrive whole within ``read_timeout`` seconds of its first byte, and an idle
  connection is closed after ``idle_timeout`` seconds; a connection that has not sent a valid
  frame within ``read_timeout`` of opening (a TLS handshake included) is closed;
- at most ``max_connections`` connections are served at once, TLS handshakes included. When
  all are taken, a new connection evicts the oldest one without a valid frame yet, else the
  one idle the longest; only if every connection is in the middle of a frame is it refused;
- the bytes of unfinished frames held for all connections together are capped
  (``max_buffered``); over it, the connection holding the most is closed;
- with a secret, a frame without a valid HMAC-SHA256 tag is rejected, and so is a frame seen
  before or signed outside ``replay_window`` (skipped; the connection goes on);
- a bad frame closes its connection only; it is counted by reason and reported on the logger
  ``ctxlog.receiver`` (at most one line per reason every 10 seconds);
- every record carries ``peer``, the address the frame came from, next to the ``ip``, ``user``
  and ``request_id`` the sender claims (a frame cannot set ``peer``), and a record without
  ``process``, ``thread``, ``processName`` or ``threadName`` shows ``-`` for them.

A record is handed to the nearest logger *already configured* in the receiver for its name
(``shop.payments.refunds`` goes to ``shop.payments`` if your configuration names that logger),
else to the root logger; the receiver never creates a logger for a name it reads from the
network.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import logging.config
import logging.handlers
import os
import re
import select
import signal
import ssl
import stat
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Self

from ctxlog import wire as _wire
from ctxlog.context import MISSING
from ctxlog.record import escape as _sanitize
from ctxlog.record.formatter import Formatter

__all__ = ["LineFormatter", "Receiver", "ReceiverThread", "add_arguments", "main"]

#: The default line: the sender's time, level, the request's fields, logger, message, then
#: where the record came from.
DEFAULT_FORMAT: Final = (
    "%(asctime)s %(levelname)s %(ip)s %(user)s %(request_id)s %(name)s %(message)s "
    "[pid %(process)s from %(peer)s]"
)
#: What starts each line of a traceback or stack that follows a record's line.
CONTINUATION: Final = _sanitize.CONTINUATION
_REPORT_EVERY: Final = 10.0
_FIELD_CAP: Final = 1024
#: Names of records up to this length keep their route in a cache.
_ROUTE_NAME_CAP: Final = 256
#: The default cap on unfinished frames held for all connections together.
_MAX_BUFFERED: Final = 64 * 1024 * 1024
_SIZE: Final = re.compile(r"(?i)\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*")
_UNITS: Final = dict(
    zip(
        ("", "b", "k", "kb", "kib", "m", "mb", "mib", "g", "gb", "gib"),
        (1, 1, 1024, 1000, 1024, 1024**2, 1000**2, 1024**2, 1024**3, 1000**3, 1024**3),
        strict=True,
    )
)

log = logging.getLogger("ctxlog.receiver")


class LineFormatter(Formatter):
    r"""
    Format received records as one line each, safe against forged lines.

    :class:`ctxlog.Formatter` with the receiver's defaults: the line format that shows the
    context fields and the peer, ``-`` for a field a sender did not send, and a length cap on
    every field (1024 characters) and on the message (the largest frame). Every field the
    format names, the message and extra fields included, has its control, bidi and separator
    characters escaped (``\n``, ``\x1b``): a record can never start a second line. A traceback
    or stack follows on lines that each begin with ``"  | "``, so it cannot pass for a record
    either.

    Args:
        fmt: A ``%``-style format; the default shows the context fields and the peer.
        datefmt: As for :class:`logging.Formatter`.

    Raises:
        ValueError: ``fmt`` contains a line break or is not a ``%``-style format.

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
       A subclass of :class:`ctxlog.Formatter`: one escaping rule for every line ctxlog writes.
    """

    _field_limit = _FIELD_CAP
    _message_limit = _wire.MAX_BODY

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt or DEFAULT_FORMAT, datefmt, defaults={"peer": MISSING})


class _Reporter:
    """Report rejections: the first of each reason at once, then one line per 10 s."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._last: dict[str, float] = {}
        self._held: collections.Counter[str] = collections.Counter()

    def __call__(self, kind: str, peer: str, detail: str, *, closed: bool = True) -> None:
        self.counts[kind] += 1
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < _REPORT_EVERY:
            self._held[kind] += 1
            return
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        more = f" ({held} more since the last report)" if held else ""
        what = "closed connection from" if closed else "rejected a frame from"
        log.warning("%s %s: %s: %s%s", what, peer, kind, detail, more)


class _Connection(asyncio.Protocol):
    """One sender: frames are cut from the bytes as they arrive, checked and dispatched."""

    def __init__(self, receiver: Receiver) -> None:
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
        if not isinstance(transport, asyncio.Transport):  # pragma: no cover - stream servers
            transport.close()
            return
        self.transport = transport
        receiver = self.receiver
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            host = str(peer[0])
            self.peer = f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
        if not receiver._admit(self):  # noqa: SLF001 - the receiver's half of this class
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
            receiver._start_tls(self, transport)  # noqa: SLF001

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
                self._reject("tls handshake", f"failed: {error!r}"[:300])
            return
        if secure is None or self.transport is not raw:
            # Closed while in the handshake (evicted, timed out, stopped, or a bad first frame
            # read as soon as the handshake was done).
            if secure is not None:
                secure.abort()
            return
        self.transport = secure
        self.handshaking = False

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
            self._reject(
                "tls handshake", f"not complete {receiver.read_timeout:g} s after connecting"
            )
        elif self.buffer:
            self._reject(
                "read timeout",
                f"a frame was not complete {receiver.read_timeout:g} s after it began"
                if self.proven
                else f"no whole frame {receiver.read_timeout:g} s after connecting",
            )
        else:
            receiver.idle_closed += 1
            self._close()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.handshaking = False  # with TLS, data arrives once the handshake is done
        receiver = self.receiver
        buffer = self.buffer
        was_empty = not buffer
        buffer += data
        receiver.buffered += len(data)
        self.last_data = time.monotonic()
        start = 0
        end = len(buffer)
        completed = False
        while True:
            if not self.frame_size:
                if end - start < _wire.HEADER_SIZE:
                    break
                header = bytes(buffer[start : start + _wire.HEADER_SIZE])
                try:
                    size, length = _wire.read_header(header, receiver.max_frame)
                except _wire.WireError as error:
                    self._reject("bad header", str(error))
                    return
                if receiver.secret is not None and not size:
                    self._reject("unsigned frame", "this receiver requires signed frames")
                    return
                self.signature_size = size
                self.frame_size = _wire.HEADER_SIZE + size + length
            if end - start < self.frame_size:
                break
            header_end = start + _wire.HEADER_SIZE
            body_start = header_end + self.signature_size
            frame_end = start + self.frame_size
            try:
                record = _wire.decode(
                    bytes(buffer[start:header_end]),
                    bytes(buffer[body_start:frame_end]),
                    bytes(buffer[header_end:body_start]) if self.signature_size else None,
                    receiver.secret,
                    receiver.max_frame,
                    replay=receiver.replay,
                )
            except _wire.ReplayError as error:
                # A whole, authentic frame, seen before or too old: skip it, keep reading.
                receiver.report(error.reason, self.peer, str(error), closed=False)
                record = None
            except _wire.WireError as error:
                self._reject("bad frame", str(error))
                return
            start = frame_end
            self.frame_size = 0
            if record is not None:
                completed = True
                record.peer = self.peer
                receiver.received += 1
                receiver.dispatch(record)
        if completed:
            if not self.proven:
                self.proven = True
                receiver._fresh.pop(self, None)  # noqa: SLF001
            receiver.end_batch()
        if start:
            del buffer[:start]
            receiver.buffered -= start
        if receiver.buffered > receiver.max_buffered:
            receiver._shed(self)  # noqa: SLF001
            if self.transport is None:
                return
        if not self.proven:
            return  # the deadline set when it connected stands
        if buffer and (was_empty or start):
            # A frame began: it must be whole within read_timeout of its first byte.
            self._arm(self.last_data + receiver.read_timeout)
        elif not buffer:
            self._arm(self.last_data + receiver.idle_timeout)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        receiver = self.receiver
        if self in receiver.connections and self.buffer and self.transport is not None:
            receiver.report(
                "truncated frame",
                self.peer,
                f"the connection ended {len(self.buffer)} bytes into a frame",
            )
        self.transport = None
        self._forget()

    def _reject(self, kind: str, detail: str) -> None:
        self.receiver.report(kind, self.peer, detail)
        self._close(abort=True)

    def _close(self, *, abort: bool = False) -> None:
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
        receiver.connections.discard(self)
        receiver._fresh.pop(self, None)  # noqa: SLF001
        receiver.buffered -= len(self.buffer)
        self.buffer = bytearray()
        self.frame_size = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Receiver:
    """
    Serve senders on ``host:port`` and hand each record they send to this process's logging.

    Use ``await start()`` and ``await stop()`` in an event loop, :class:`ReceiverThread` to run
    one in a thread of a program, or the ``ctxlog receive`` command.

    Args:
        host: The address to listen on; 127.0.0.1 unless senders come from other machines.
        port: The port; 0 picks a free one (read it from :attr:`port` after ``start()``).
        secret: If given (at least 16 bytes), only frames signed with it are accepted, each
            once (see ``replay_window``).
        max_frame: The largest frame body accepted, in bytes.
        max_connections: Connections served at once. When all are taken, a new connection
            takes the slot of the oldest one that has not sent a valid frame yet, else of the
            one idle the longest; if every connection is in the middle of a frame, the new
            one is refused. Evicted and refused connections are counted.
        idle_timeout: Seconds a connection may stay silent between frames.
        read_timeout: Seconds a frame may take to arrive, from its first byte; and the most a
            connection keeps its slot before its first valid frame, TLS handshake included.
        tls: An SSL context with the server's certificate, for senders using ``tls=``.
        dispatch: Called with each record instead of the default routing (nearest configured
            logger, else root).
        max_buffered: The most bytes of unfinished frames held for all connections together
            (``None``: 64 MiB, or one largest frame if that is more). When over, the
            connection holding the most is closed.
        replay_window: With ``secret``: seconds a frame's signing time may be from this
            process's clock. A frame outside it, or seen before, is skipped and counted.

    Raises:
        ValueError: A secret shorter than 16 bytes, a limit that is not positive, or
            ``max_buffered`` smaller than one largest frame.

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
       ``max_buffered`` and ``replay_window``; eviction when full; a connection holds its
       slot for ``read_timeout`` at most until its first valid frame; TLS handshakes count
       against ``max_connections``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9020,
        *,
        secret: bytes | str | None = None,
        max_frame: int = _wire.MAX_BODY,
        max_connections: int = 1024,
        idle_timeout: float = 300.0,
        read_timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        dispatch: Callable[[logging.LogRecord], None] | None = None,
        max_buffered: int | None = None,
        replay_window: float = 300.0,
    ) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        if secret is not None and len(secret) < 16:
            msg = "Receiver: secret must be at least 16 bytes; use a random key"
            raise ValueError(msg)
        for name, value in (
            ("max_frame", max_frame),
            ("max_connections", max_connections),
            ("idle_timeout", idle_timeout),
            ("read_timeout", read_timeout),
            ("max_buffered", 1 if max_buffered is None else max_buffered),
            ("replay_window", replay_window),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                msg = f"Receiver: {name}={value!r} must be a positive number"
                raise ValueError(msg)
        if max_frame > 0xFFFFFFFF:
            msg = f"Receiver: max_frame={max_frame!r} is over the 4 GiB the frame header allows"
            raise ValueError(msg)
        largest = int(max_frame) + _wire.MAX_OVERHEAD
        if max_buffered is None:
            max_buffered = max(_MAX_BUFFERED, largest)
        elif max_buffered < largest:
            msg = (
                f"Receiver: max_buffered={max_buffered!r} is smaller than one frame of "
                f"max_frame={max_frame!r} (plus {_wire.MAX_OVERHEAD} bytes of header); "
                f"raise it to at least {largest}"
            )
            raise ValueError(msg)
        self.host, self.port = host, port
        self.secret = secret
        self.max_frame = int(max_frame)
        self.max_connections = int(max_connections)
        self.idle_timeout = float(idle_timeout)
        self.read_timeout = float(read_timeout)
        self.tls = tls
        self.max_buffered = int(max_buffered)
        #: With a secret, the frames seen (see :class:`ctxlog.wire.Replay`).
        self.replay = _wire.Replay(replay_window) if secret is not None else None
        self.dispatch = dispatch or self._route
        #: Handlers that write without flushing; flushed once after each read from a
        #: connection instead of after every record.
        self.flush_after_batch: list[logging.Handler] = []
        self.report = _Reporter()
        #: Records received, connections accepted, refused (over the limit with every
        #: connection busy), evicted (to make room), closed idle.
        self.received = 0
        self.accepted = 0
        self.refused = 0
        self.evicted = 0
        self.idle_closed = 0
        #: Bytes of unfinished (so far unverified) frames held for all connections.
        self.buffered = 0
        self.connections: set[_Connection] = set()
        #: Connections without a valid frame yet, oldest first.
        self._fresh: dict[_Connection, None] = {}
        self._handshakes: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._routes: dict[str, logging.Logger] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the receiver runs in."""
        if self._loop is None:
            msg = "Receiver is not started"
            raise RuntimeError(msg)
        return self._loop

    @property
    def rejected(self) -> dict[str, int]:
        """Connections closed (or, for a replayed or stale frame, frames skipped), by reason."""
        return dict(self.report.counts)

    def stats(self) -> dict[str, Any]:
        """Return the counters as one dict."""
        return {
            "received": self.received,
            "accepted": self.accepted,
            "active": len(self.connections),
            "refused": self.refused,
            "evicted": self.evicted,
            "idle_closed": self.idle_closed,
            "buffered": self.buffered,
            "rejected": self.rejected,
        }

    async def start(self) -> None:
        """Listen; return once the port is bound."""
        self._loop = asyncio.get_running_loop()
        # TLS is started on each accepted connection (see _Connection.handshake), not by the
        # server: a peer in the handshake then holds a slot, under the same limits as a frame.
        self._server = await self._loop.create_server(
            lambda: _Connection(self),
            self.host,
            self.port,
            backlog=1024,
            reuse_address=True,
        )
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self, grace: float = 5.0) -> None:
        """
        Stop accepting, take in what senders already sent, then close every connection.

        Connections are read until each has been quiet for 0.2 s (or has closed), for at most
        ``grace`` seconds. Senders that connected before the call but were not accepted yet
        (still in the listen backlog) are accepted first: closing the listening socket would
        reset them, with what they had sent.
        """
        deadline = time.monotonic() + grace
        if self._server is not None:
            await self._accept_waiting(self._server, deadline)
            self._server.close()
        while self.connections and time.monotonic() < deadline:
            now = time.monotonic()
            if all(now - c.last_data >= 0.2 and not c.buffer for c in self.connections):
                break
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            if connection.buffer:
                self.report(
                    "truncated frame",
                    connection.peer,
                    "the receiver stopped while a frame was still arriving",
                )
            connection._close()  # noqa: SLF001
        if self._handshakes:
            # Closed above: each ends at once.
            await asyncio.wait(list(self._handshakes), timeout=1.0)
        server, self._server = self._server, None
        if server is not None:
            # From Python 3.12.1 this waits for every transport the server made; never wait
            # for one longer than a second.
            abort_clients = getattr(server, "abort_clients", None)
            if abort_clients is not None:
                abort_clients()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    @staticmethod
    async def _accept_waiting(server: asyncio.Server, deadline: float) -> None:
        """Let the event loop accept every connection waiting in the listen backlog."""
        listening = list(server.sockets)
        while listening and time.monotonic() < deadline:
            waiting, _, _ = select.select(listening, [], [], 0)
            if not waiting:
                break
            await asyncio.sleep(0.005)
        # An accepted socket becomes a connection a few loop iterations later (a task builds
        # its transport, then connection_made runs): let that happen before anything closes.
        for _ in range(8):
            await asyncio.sleep(0)

    def _admit(self, connection: _Connection) -> bool:
        """Take ``connection`` in, evicting another if all slots are taken; or refuse it."""
        if len(self.connections) >= self.max_connections:
            victim = self._victim()
            if victim is None:
                self.refused += 1
                self.report(
                    "too many connections",
                    connection.peer,
                    f"limit {self.max_connections}, every one in the middle of a frame",
                )
                return False
            self.evicted += 1
            if victim.proven:
                idle = time.monotonic() - victim.last_data
                why = f"idle for {idle:.1f} s"
            else:
                why = "no valid frame yet"
            victim._reject(  # noqa: SLF001 - the receiver's half of _Connection
                "evicted",
                f"{why}; its slot went to {connection.peer} (limit {self.max_connections})",
            )
        self.connections.add(connection)
        self._fresh[connection] = None
        self.accepted += 1
        return True

    def _victim(self) -> _Connection | None:
        # First the oldest connection that has not proven itself with a valid frame (a TLS
        # handshake, silence, or bytes that are no frame yet); then the one idle the longest
        # between frames. Never one in the middle of a frame after a valid one.
        for connection in self._fresh:
            return connection
        idle = [c for c in self.connections if not c.buffer]
        return min(idle, key=lambda c: c.last_data, default=None)

    def _shed(self, current: _Connection) -> None:
        """Close the connections holding the most unfinished bytes until under max_buffered."""
        while self.buffered > self.max_buffered:
            victim = current if current.transport is not None else None
            for connection in self.connections:
                if victim is None or len(connection.buffer) > len(victim.buffer):
                    victim = connection
            if victim is None or not victim.buffer:  # pragma: no cover - the count is exact
                return
            victim._reject(  # noqa: SLF001
                "buffer limit",
                f"{len(victim.buffer)} bytes of an unfinished frame, the most of any "
                f"connection, when all held more than {self.max_buffered} bytes",
            )

    def _start_tls(self, connection: _Connection, transport: asyncio.Transport) -> None:
        task = self.loop.create_task(connection.handshake(transport))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def end_batch(self) -> None:
        """Flush :attr:`flush_after_batch`: the records of one read are all written."""
        for handler in self.flush_after_batch:
            handler.flush()

    def _route(self, record: logging.LogRecord) -> None:
        name = record.name
        logger = self._routes.get(name)
        if logger is None:
            logger = self._nearest(name)
            # Only short names are kept: 4096 names of a megabyte each would hold 4 GiB.
            if len(name) <= _ROUTE_NAME_CAP:
                if len(self._routes) >= 4096:
                    self._routes.clear()
                self._routes[name] = logger
        logger.handle(record)

    @staticmethod
    def _nearest(name: str) -> logging.Logger:
        # Only loggers the receiver's configuration made; never one per network name, and
        # never the receiver's own (a sender could pass off its lines as the receiver's).
        existing = logging.Logger.manager.loggerDict
        parts = name.split(".", 32)[:32]
        while parts:
            candidate = existing.get(".".join(parts))
            if isinstance(candidate, logging.Logger) and not candidate.name.startswith(
                "ctxlog.receiver"
            ):
                return candidate
            parts.pop()
        return logging.getLogger()


class ReceiverThread:
    """
    Run a :class:`Receiver` in a background thread of this process.

    ``start()`` returns once the port is bound (read it from ``.receiver.port``); ``stop()``
    takes in what senders already sent and closes. Also a context manager.

    .. versionadded:: 0.2.0
    """

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._done: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the thread and wait until the receiver listens."""
        thread = threading.Thread(target=self._run, name="ctxlog-receiver", daemon=True)
        self._thread = thread
        thread.start()
        if not self._ready.wait(timeout):
            msg = "the receiver did not start in time"
            raise RuntimeError(msg)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._done = asyncio.Event()
            try:
                await self.receiver.start()
            except BaseException as error:
                self._error = error
                self._ready.set()
                return
            self._ready.set()
            await self._done.wait()

        asyncio.run(serve())

    def stop(self, grace: float = 5.0) -> None:
        """Stop the receiver (see :meth:`Receiver.stop`) and wait for the thread."""
        loop, done, thread = self._loop, self._done, self._thread
        if loop is None or done is None or thread is None or not thread.is_alive():
            return

        async def finish() -> None:
            await self.receiver.stop(grace)
            done.set()

        future = asyncio.run_coroutine_threadsafe(finish(), loop)
        with contextlib.suppress(Exception):
            future.result(grace + 10.0)
        thread.join(grace + 10.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the command line --------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """
    Return a size given as ``10MB``, ``512KiB``, ``1G`` or plain bytes, in bytes.

    ``K``, ``M``, ``G``, ``KiB``, ``MiB`` and ``GiB`` are powers of 1024; ``KB``, ``MB`` and
    ``GB`` powers of 1000.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        msg = f"{text!r} is not a size (examples: 10MB, 512KiB, 1048576)"
        raise argparse.ArgumentTypeError(msg)
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def parse_listen(text: str) -> tuple[str, int]:
    """Return ``(host, port)`` from ``HOST:PORT``, ``[IPv6]:PORT`` or ``PORT``."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        msg = f"{text!r} is not HOST:PORT (example: 127.0.0.1:9020)"
        raise argparse.ArgumentTypeError(msg)
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``ctxlog receive`` to ``parser``."""
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 9020),
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:9020; port 0 picks a free one)",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--file", help="write to this file (default: standard output)")
    out.add_argument(
        "--config",
        help="a logging dictConfig as JSON (.json) or TOML (.toml) to write through instead",
    )
    parser.add_argument(
        "--max-bytes",
        type=parse_size,
        default=0,
        metavar="SIZE",
        help="with --file: rotate when the file would grow past SIZE (e.g. 10MB)",
    )
    parser.add_argument(
        "--backup-count",
        type=int,
        default=5,
        metavar="N",
        help="with --file and --max-bytes: rotated files to keep (default 5)",
    )
    parser.add_argument(
        "--format", default=DEFAULT_FORMAT, help="a %%-style line format (default shows the fields)"
    )
    parser.add_argument(
        "--secret-file", help="accept only frames signed with the key in this file (16+ bytes)"
    )
    parser.add_argument("--tls-cert", help="serve TLS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", help="the private key for --tls-cert (PEM)")
    parser.add_argument(
        "--max-frame",
        type=parse_size,
        default=_wire.MAX_BODY,
        metavar="SIZE",
        help="largest frame accepted (default 1MiB)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=1024,
        metavar="N",
        help="connections served at once (default 1024)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="close a connection silent this long (default 300)",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="close a connection whose frame is not whole this long after it began, or that "
        "has sent no valid frame (TLS handshake included) this long after it opened (default 10)",
    )
    parser.add_argument(
        "--max-buffered",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="most bytes of unfinished frames held for all connections together; when over, "
        "the connection holding the most is closed (default 64MiB, at least --max-frame)",
    )
    parser.add_argument(
        "--replay-window",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="with --secret-file: refuse a frame signed further than this from the receiver's "
        "clock, and any frame seen before (default 300)",
    )


def read_secret(path: str) -> bytes:
    """Return the key in ``path`` (one trailing newline removed); it must be 16+ bytes."""
    try:
        secret = Path(path).read_bytes()
    except OSError as error:
        msg = f"cannot read the secret file {path!r}: {error.strerror or error}"
        raise ValueError(msg) from None
    secret = secret.removesuffix(b"\n").removesuffix(b"\r")
    if len(secret) < 16:
        msg = f"the secret in {path!r} is {len(secret)} bytes; use at least 16 random bytes"
        raise ValueError(msg)
    return secret


def _configure(args: argparse.Namespace) -> list[logging.Handler]:
    own = logging.getLogger("ctxlog.receiver")
    own.propagate = False
    own.setLevel(logging.INFO)
    report = logging.StreamHandler(sys.stderr)
    report.setFormatter(logging.Formatter("ctxlog receive: %(message)s"))
    own.addHandler(report)
    if args.max_bytes and not args.file:
        msg = "--max-bytes needs --file"
        raise ValueError(msg)
    if args.config:
        path = Path(args.config)
        try:
            text = path.read_text(encoding="utf-8")
            config = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as error:
            msg = f"cannot read --config {args.config!r}: {error}"
            raise ValueError(msg) from None
        if not isinstance(config, dict):
            msg = f"--config {args.config!r} does not hold a dictConfig object"
            raise ValueError(msg)
        config.setdefault("version", 1)
        config.setdefault("disable_existing_loggers", False)
        try:
            logging.config.dictConfig(config)
        except (ValueError, TypeError, AttributeError, ImportError) as error:
            msg = f"--config {args.config!r} is not a valid logging configuration: {error}"
            raise ValueError(msg) from None
        return []
    handler: logging.Handler
    if args.file:
        if args.max_bytes < 0 or args.backup_count < 0:
            msg = "--max-bytes and --backup-count must not be negative"
            raise ValueError(msg)
        if args.max_bytes and not args.backup_count:
            # RotatingFileHandler's own rule: without a backup it never rotates, and the file
            # grows past the limit, reopened for every record.
            msg = "--max-bytes needs --backup-count of 1 or more (rotated files to keep)"
            raise ValueError(msg)
        try:
            handler = _LineFile(
                args.file, maxBytes=args.max_bytes, backupCount=args.backup_count, encoding="utf-8"
            )
        except OSError as error:
            msg = f"cannot open --file {args.file!r}: {error.strerror or error}"
            raise ValueError(msg) from None
    else:
        handler = _LineStream(sys.stdout)
    handler.setFormatter(LineFormatter(args.format))
    root = logging.getLogger()
    root.addHandler(handler)
    # Received records skip logger levels (Logger.handle); this level only keeps the
    # receiver's own libraries (asyncio's debug lines) out of the file.
    root.setLevel(logging.WARNING)
    return [handler]


class _LineStream(logging.StreamHandler):  # type: ignore[type-arg]
    """Standard output for ``ctxlog receive``: written per record, flushed per read."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except RecursionError:
            raise
        except Exception:  # the stdlib contract: report and go on
            self.handleError(record)


class _LineFile(logging.handlers.RotatingFileHandler):
    """
    The ``--file`` handler: a RotatingFileHandler that costs one write per record.

    The standard library's formats a record twice when a size limit is set (once to measure
    it), looks at the file twice per record on 3.11 and 3.12 to decide whether to rotate, and
    flushes after every record. This one formats once, keeps count of the file's size itself,
    and leaves flushing to :meth:`Receiver.end_batch`.
    """

    _size = 0
    _regular = True

    def _open(self) -> Any:
        stream = super()._open()
        status = os.fstat(stream.fileno())
        self._size = status.st_size
        self._regular = stat.S_ISREG(status.st_mode)  # never rotate a pipe or a terminal
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            size = len(line) if line.isascii() else len(line.encode("utf-8", "replace"))
            if self.stream is None:
                self.stream = self._open()
            if (
                self.maxBytes > 0
                and self._regular
                and self._size
                and self._size + size > self.maxBytes
            ):
                self.doRollover()
                if self.stream is None:
                    self.stream = self._open()
            self.stream.write(line)
            self._size += size
        except RecursionError:
            raise
        except Exception:  # the stdlib contract: report and go on
            self.handleError(record)


def _server_tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not (cert or key):
        return None
    if not (cert and key):
        msg = "--tls-cert and --tls-key go together"
        raise ValueError(msg)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        tls.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        msg = f"cannot load --tls-cert/--tls-key: {error}"
        raise ValueError(msg) from None
    return tls


def _raise_fd_limit() -> None:
    try:
        import resource  # noqa: PLC0415 - POSIX only

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX or not allowed
        pass


def main(args: argparse.Namespace) -> int:
    """Run ``ctxlog receive`` until SIGTERM or SIGINT; return the exit status."""
    try:
        secret = read_secret(args.secret_file) if args.secret_file else None
        tls = _server_tls(args.tls_cert, args.tls_key)
        host, port = args.listen
        receiver = Receiver(
            host,
            port,
            secret=secret,
            max_frame=args.max_frame,
            max_connections=args.max_connections,
            idle_timeout=args.idle_timeout,
            read_timeout=args.read_timeout,
            tls=tls,
            max_buffered=args.max_buffered,
            replay_window=args.replay_window,
        )
        receiver.flush_after_batch = _configure(args)
    except ValueError as error:
        sys.stderr.write(f"ctxlog receive: {error}\n")
        return 2
    _raise_fd_limit()
    try:
        return asyncio.run(_serve(receiver))
    finally:
        logging.shutdown()


async def _serve(receiver: Receiver) -> int:
    # The handlers come first: a SIGTERM that arrives as soon as the port accepts must stop
    # the receiver in order (writing what it has), not end the process on the spot.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await receiver.start()
    except OSError as error:
        sys.stderr.write(
            f"ctxlog receive: cannot listen on {receiver.host}:{receiver.port}: "
            f"{error.strerror or error}\n"
        )
        return 1
    host = f"[{receiver.host}]" if ":" in receiver.host else receiver.host
    signed = ""
    if receiver.replay is not None:
        signed = f", signed frames only (replay window {receiver.replay.window:g} s)"
    log.info("listening on %s:%d%s", host, receiver.port, signed)
    await stop.wait()
    await receiver.stop()
    stats = receiver.stats()
    rejected = ", ".join(f"{k}: {v}" for k, v in sorted(stats["rejected"].items())) or "none"
    log.info(
        "stopped: %d records from %d connections; refused %d, closed idle %d, rejected: %s",
        stats["received"],
        stats["accepted"],
        stats["refused"],
        stats["idle_closed"],
        rejected,
    )
    return 0
