"""
The sending end: :class:`ZMQQueueHandler`, a :class:`ctxlog.QueueHandler` whose queue is ZeroMQ.

The record is prepared as by every ctxlog queue handler (context stamped in the thread that
logs, message merged, traceback as text), encoded as one :mod:`ctxlog.wire` frame, signed if a
secret is set, and handed to ZeroMQ without waiting. The handler opens its socket on the first
record a process sends; in a forked child, the process lifecycle registry
(:mod:`ctxlog._lifecycle`) has it set the parent's socket aside, so the child opens its own.
What ZeroMQ cannot take at once is dropped, counted, and reported on stderr once per outage.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Final

import zmq

from ctxlog import wire
from ctxlog._lifecycle import register
from ctxlog._stderr import write_line
from ctxlog.queue import QueueHandler
from ctxlog.zmq.sockets import (
    REPORT_INTERVAL,
    SENDER_TYPES,
    check_address,
    check_positive_int,
    check_secret,
    check_socket_type,
    open_socket,
    set_aside,
)

__all__ = ["ZMQQueueHandler"]

#: A handler whose socket could not be opened tries again after this many seconds.
_REOPEN_DELAY: Final = 1.0


class ZMQQueueHandler(QueueHandler):
    """
    Send each record as one :mod:`ctxlog.wire` frame on a ZeroMQ ``PUSH`` or ``PUB`` socket.

    A :class:`ctxlog.QueueHandler` whose "queue" is ZeroMQ: :meth:`prepare` is ctxlog's (context
    stamped, message merged, traceback as text, extras made plain), :meth:`enqueue` encodes the
    record and sends it without blocking. ZeroMQ connects, reconnects and queues in its own I/O
    thread; the log call only hands it a message.

    Choose the socket type by what a lost record costs:

    ``zmq.PUSH`` (the default)
        For a collector that must get everything: records wait in ZeroMQ's queue (up to
        ``hwm``) while the collector is down or restarting, and go out when it is back. Every
        record the handler cannot hand to ZeroMQ is counted in :attr:`dropped` (what is in
        flight when a collector dies is lost uncounted, as with any socket). Several
        collectors connected to one sender share the records round-robin; they do not each
        get a copy.
    ``zmq.PUB``
        For observers that may come and go (a live tail, a dashboard). Each subscriber gets a
        copy of what matches its topic prefix (see the module documentation). ZeroMQ drops
        records nobody subscribes to, records sent before a new subscriber's subscription
        arrived (the "slow joiner") and records for a subscriber that falls ``hwm`` behind, all
        without telling the sender: :attr:`dropped` cannot count those.

    Do not put this handler behind :func:`ctxlog.nonblocking` or a :class:`ctxlog.QueueListener`:
    it does not block, and, like every ctxlog queue handler, it does not forward records logged
    on a ctxlog listener thread (they are counted in ``suppressed`` and reported once).

    Use it from ``dictConfig`` with ``"()": "ctxlog.zmq.ZMQQueueHandler"``. With ``"class"``,
    Python 3.12+ treats every ``QueueHandler`` subclass as one taking a ``queue``.

    Args:
        address: The endpoint to connect (or bind) to, such as ``"tcp://127.0.0.1:5556"``.
        socket_type: ``zmq.PUSH`` or ``zmq.PUB``.
        bind: Bind to ``address`` instead of connecting. Only one process can bind an address:
            a forked child of a binding process cannot send (its records are dropped and
            counted, and the failure reported), unless the port is a wildcard (``:*``).
        secret: A key shared with the listener; each frame then carries an HMAC-SHA256 tag.
            At least 16 bytes; a ``str`` is encoded as UTF-8.
        hwm: The most messages ZeroMQ queues for sending (``ZMQ_SNDHWM``); a ``PUSH`` socket
            drops and counts records beyond it.
        linger: At :meth:`close`, the longest wait in seconds for queued messages to go out.

    Raises:
        TypeError: ``address`` is not a string.
        ValueError: A malformed ``address``; a bad ``socket_type``, ``hwm`` or ``linger``; a
            secret shorter than 16 bytes.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        address: str,
        *,
        socket_type: int = zmq.PUSH,
        bind: bool = False,
        secret: bytes | str | None = None,
        hwm: int = 10_000,
        linger: float = 1.0,
    ) -> None:
        owner = type(self).__name__
        self.address = check_address(owner, address)
        self.socket_type = check_socket_type(owner, socket_type, SENDER_TYPES)
        self.bind = bool(bind)
        self.hwm = check_positive_int(owner, "hwm", hwm)
        if isinstance(linger, bool) or not isinstance(linger, int | float) or linger < 0:
            msg = f"{owner}: linger={linger!r} is not a number of seconds >= 0"
            raise ValueError(msg)
        self.linger = float(linger)
        secret = check_secret(owner, secret)
        self._signer = wire.Signer(secret) if secret is not None else None
        super().__init__(None)
        #: Records handed to ZeroMQ by this process.
        self.sent = 0
        #: Records this process could not hand to ZeroMQ (no peer, queue full, socket not
        #: usable, frame over the size limit, handler closed).
        self.dropped = 0
        #: The endpoint of this process's socket once it is open (the real port of ``:*``).
        self.endpoint: str | None = None
        self._publish = self.socket_type == zmq.PUB
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._socket: zmq.Socket[bytes] | None = None
        self._pid = os.getpid()
        self._closed = False
        self._reopen_at = 0.0
        self._outage = False
        self._next_report = 0.0
        self._told_suppressed = False
        register(self)

    def __repr__(self) -> str:
        kind = SENDER_TYPES[self.socket_type]
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {kind} {self.address} ({level})>"

    def open(self) -> str:
        """
        Open this process's socket now, rather than on the first record; return its endpoint.

        Useful to learn the port of a wildcard bind (``tcp://127.0.0.1:*``) or to see a bind
        error where the handler is set up.

        Raises:
            zmq.ZMQError: The address cannot be bound or connected to.
            ValueError: The handler is closed.
        """
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock() made it
            if self._closed:
                msg = f"{self!r} is closed"
                raise ValueError(msg)
            if self._socket is None:
                self._open()
            return str(self.endpoint)

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``record`` (see :meth:`ctxlog.QueueHandler.emit`)."""
        suppressed = self.suppressed
        super().emit(record)
        if self.suppressed != suppressed and not self._told_suppressed:
            self._told_suppressed = True
            write_line(
                f"ctxlog.zmq: {self!r} does not send records logged on a ctxlog listener "
                "thread (counted in .suppressed); it does not block, so put it directly on "
                "a logger, not behind nonblocking() or a QueueListener"
            )

    def enqueue(self, record: logging.LogRecord) -> None:
        """Encode ``record`` as one frame and hand it to ZeroMQ without waiting."""
        body = wire.encode_body(record)
        if len(body) > wire.MAX_BODY:
            with self.lock:  # type: ignore[union-attr]
                self._drop(f"a record of {len(body)} bytes is over the frame size limit")
            return
        with self.lock:  # type: ignore[union-attr]
            sock = self._ready_socket()
            if sock is None:
                return
            # Signed under the lock: sequence numbers leave in the order they were given.
            signer = self._signer
            frame = wire.unsigned(body) if signer is None else signer.sign(body)
            try:
                if self._publish:
                    # Routing only; a name UTF-8 cannot encode is escaped, not lost.
                    topic = f"{record.levelname}.{record.name}.".encode(errors="backslashreplace")
                    sock.send_multipart((topic, frame), zmq.NOBLOCK)
                else:
                    sock.send(frame, zmq.NOBLOCK)
            except zmq.Again:
                self._drop(
                    f"ZeroMQ cannot take it now: no peer is connected, or {self.hwm} messages "
                    "(hwm) are waiting"
                )
                return
            self.sent += 1
            self._outage = False

    def stats(self) -> dict[str, int]:
        """Return this process's counters: ``sent``, ``dropped``, ``suppressed``."""
        return {"sent": self.sent, "dropped": self.dropped, "suppressed": self.suppressed}

    def close(self) -> None:
        """Close the socket, waiting at most ``linger`` seconds for queued records to go out."""
        with self.lock:  # type: ignore[union-attr]
            self._closed = True
            sock, context = self._socket, self._context
            self._socket = self._context = None
            if sock is not None:
                sock.close(linger=round(self.linger * 1000))
            if context is not None:
                context.term()  # returns once the socket's linger is over
        super().close()

    def after_fork_in_child(self) -> None:
        """
        In a forked child, set the parent's socket aside and start counting afresh.

        Called by ctxlog's fork hook (installed with :func:`os.register_at_fork`) right after
        the fork, when the standard library has renewed the handler's lock. The child opens a
        socket of its own with its first record.
        """
        with self.lock:  # type: ignore[union-attr]
            if self._socket is not None:
                set_aside(self._context, self._socket)
            self._socket = self._context = None
            self.endpoint = None
            self._pid = os.getpid()
            self.sent = self.dropped = self.suppressed = 0
            self._reopen_at = 0.0
            self._outage = False
            self._next_report = 0.0

    # -- under self.lock ------------------------------------------------------------------------

    def _ready_socket(self) -> zmq.Socket[bytes] | None:
        sock = self._socket
        if sock is not None:
            return sock
        if self._closed:
            self.dropped += 1
            return None
        if time.monotonic() < self._reopen_at:
            self.dropped += 1
            return None
        try:
            return self._open()
        except zmq.ZMQError as error:
            self._reopen_at = time.monotonic() + _REOPEN_DELAY
            verb = "bind to" if self.bind else "connect to"
            self._drop(f"cannot {verb} {self.address} in process {self._pid}: {error}")
            return None

    def _open(self) -> zmq.Socket[bytes]:
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        options = ((zmq.SNDHWM, self.hwm), (zmq.LINGER, round(self.linger * 1000)))
        try:
            sock, endpoint = open_socket(
                context, self.socket_type, self.address, bind=self.bind, options=options
            )
        except BaseException:
            context.destroy(linger=0)
            raise
        self._context, self._socket, self.endpoint = context, sock, endpoint
        return sock

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        if self._outage:
            return
        self._outage = True
        now = time.monotonic()
        if now < self._next_report:
            return
        self._next_report = now + REPORT_INTERVAL
        write_line(
            f"ctxlog.zmq: {self!r} dropped a record: {reason}; further drops are counted "
            "in .dropped"
        )
