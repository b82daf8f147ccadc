"""
The server: listening, accepting, and the caps that keep hostile peers from holding it.

:class:`Receiver` listens, makes a :class:`~ctxlog.receiver.connection.Connection` per accepted
socket and keeps the books they share: the slots (``max_connections``, with eviction of the
oldest connection without a valid frame, else the one idle the longest), the bytes of unfinished
frames held for all of them (``max_buffered``, over which the connection holding the most is
closed), the replay memory of signed frames, and the counters. Each record goes to
``dispatch``: by default the nearest configured logger (:mod:`ctxlog.receiver.routing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import ssl
import time
from collections.abc import Callable
from typing import Any, Final

from ctxlog.receiver.connection import Connection
from ctxlog.receiver.report import Reporter
from ctxlog.receiver.routing import Router
from ctxlog.wire import MAX_BODY, MAX_OVERHEAD, Replay

__all__ = ["Receiver"]

#: The default cap on unfinished frames held for all connections together.
_MAX_BUFFERED: Final = 64 * 1024 * 1024


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
        max_frame: int = MAX_BODY,
        max_connections: int = 1024,
        idle_timeout: float = 300.0,
        read_timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        dispatch: Callable[[logging.LogRecord], None] | None = None,
        max_buffered: int | None = None,
        replay_window: float = 300.0,
    ) -> None:
        secret = _secret_bytes(secret)
        _check_positive(
            max_frame=max_frame,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            read_timeout=read_timeout,
            max_buffered=1 if max_buffered is None else max_buffered,
            replay_window=replay_window,
        )
        buffer_limit = _buffer_limit(max_frame, max_buffered)
        self.host, self.port = host, port
        self.secret = secret
        self.max_frame = int(max_frame)
        self.max_connections = int(max_connections)
        self.idle_timeout = float(idle_timeout)
        self.read_timeout = float(read_timeout)
        self.tls = tls
        self.max_buffered = buffer_limit
        #: With a secret, the frames seen (see :class:`ctxlog.wire.Replay`).
        self.replay = Replay(replay_window) if secret is not None else None
        self.dispatch = dispatch or Router().route
        #: Handlers that write without flushing; flushed once after each read from a
        #: connection instead of after every record.
        self.flush_after_batch: list[logging.Handler] = []
        self.report = Reporter()
        #: Records received, connections accepted, refused (over the limit with every
        #: connection busy), evicted (to make room), closed idle.
        self.received = 0
        self.accepted = 0
        self.refused = 0
        self.evicted = 0
        self.idle_closed = 0
        #: Bytes of unfinished (so far unverified) frames held for all connections.
        self.buffered = 0
        self.connections: set[Connection] = set()
        #: Connections without a valid frame yet, oldest first.
        self._fresh: dict[Connection, None] = {}
        self._handshakes: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
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
        # TLS is started on each accepted connection (see Connection.handshake), not by the
        # server: a peer in the handshake then holds a slot, under the same limits as a frame.
        self._server = await self._loop.create_server(
            lambda: Connection(self),
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
            await _accept_waiting(self._server, deadline)
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
            connection.close()
        if self._handshakes:
            # Closed above: each ends at once.
            await asyncio.wait(list(self._handshakes), timeout=1.0)
        server, self._server = self._server, None
        if server is not None:
            await _closed(server)

    def admit(self, connection: Connection) -> bool:
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
            victim.reject(
                "evicted",
                f"{why}; its slot went to {connection.peer} (limit {self.max_connections})",
            )
        self.connections.add(connection)
        self._fresh[connection] = None
        self.accepted += 1
        return True

    def _victim(self) -> Connection | None:
        # First the oldest connection that has not proven itself with a valid frame (a TLS
        # handshake, silence, or bytes that are no frame yet); then the one idle the longest
        # between frames. Never one in the middle of a frame after a valid one.
        for connection in self._fresh:
            return connection
        idle = [c for c in self.connections if not c.buffer]
        return min(idle, key=lambda c: c.last_data, default=None)

    def mark_proven(self, connection: Connection) -> None:
        """Note that ``connection`` sent a valid frame: it no longer goes first to make room."""
        self._fresh.pop(connection, None)

    def release(self, connection: Connection) -> None:
        """Give back ``connection``'s slot (any number of times)."""
        self.connections.discard(connection)
        self._fresh.pop(connection, None)

    def shed(self, current: Connection) -> None:
        """Close the connections holding the most unfinished bytes until under max_buffered."""
        while self.buffered > self.max_buffered:
            victim = current if current.transport is not None else None
            for connection in self.connections:
                if victim is None or len(connection.buffer) > len(victim.buffer):
                    victim = connection
            if victim is None or not victim.buffer:  # pragma: no cover - the count is exact
                return
            victim.reject(
                "buffer limit",
                f"{len(victim.buffer)} bytes of an unfinished frame, the most of any "
                f"connection, when all held more than {self.max_buffered} bytes",
            )

    def start_tls(self, connection: Connection, transport: asyncio.Transport) -> None:
        """Run ``connection``'s TLS handshake in a task that :meth:`stop` waits for."""
        task = self.loop.create_task(connection.handshake(transport))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def end_batch(self) -> None:
        """Flush :attr:`flush_after_batch`: the records of one read are all written."""
        for handler in self.flush_after_batch:
            handler.flush()


def _secret_bytes(secret: bytes | str | None) -> bytes | None:
    """Return ``secret`` as bytes, refusing one too short to be a key."""
    if isinstance(secret, str):
        secret = secret.encode()
    if secret is not None and len(secret) < 16:
        msg = "Receiver: secret must be at least 16 bytes; use a random key"
        raise ValueError(msg)
    return secret


def _check_positive(**limits: float) -> None:
    """Refuse a limit that is not a positive number (a bool is not a number here)."""
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            msg = f"Receiver: {name}={value!r} must be a positive number"
            raise ValueError(msg)


def _buffer_limit(max_frame: int, max_buffered: int | None) -> int:
    """Return the cap on unfinished bytes: at least one largest frame, 64 MiB by default."""
    if max_frame > 0xFFFFFFFF:
        msg = f"Receiver: max_frame={max_frame!r} is over the 4 GiB the frame header allows"
        raise ValueError(msg)
    largest = int(max_frame) + MAX_OVERHEAD
    if max_buffered is None:
        return max(_MAX_BUFFERED, largest)
    if max_buffered < largest:
        msg = (
            f"Receiver: max_buffered={max_buffered!r} is smaller than one frame of "
            f"max_frame={max_frame!r} (plus {MAX_OVERHEAD} bytes of header); "
            f"raise it to at least {largest}"
        )
        raise ValueError(msg)
    return int(max_buffered)


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


async def _closed(server: asyncio.Server) -> None:
    """Wait until ``server`` is closed, for a second at most."""
    # From Python 3.12.1 this waits for every transport the server made; never wait for one
    # longer than a second.
    abort_clients = getattr(server, "abort_clients", None)
    if abort_clients is not None:
        abort_clients()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 1.0)
