"""
Send records over ZeroMQ, in the frames of ``ctxlog receive``: an optional extra (pyzmq).

Install with ``pip install 'ctxlog[zmq]'``. Importing :mod:`ctxlog` never imports pyzmq; importing
this module does, and says what to install if it is missing.

:class:`ZMQQueueHandler` and :class:`ZMQQueueListener` are the Logging Cookbook's "subclass the
queue pair for ZeroMQ" recipe, done so that it holds up in a web app:

* **One wire format.** Each record travels as exactly one frame of :mod:`ctxlog.wire` (the
  format of ``ctxlog receive``): length-prefixed JSON with a strict schema, optionally signed
  with HMAC-SHA256. The Cookbook sends ``json.dumps(record.__dict__)``, which fails on the first
  extra that is not JSON and which a receiver has no schema to check against. Nothing is pickled.
* **The request's context survives.** The handler is a :class:`ctxlog.QueueHandler`: ``ip``,
  ``user``, ``request_id``, ``method``, ``path`` and bound fields are stamped on the record in
  the thread that logs, the message is merged with its arguments, a traceback becomes text.
* **The socket belongs to the handler.** A ZeroMQ socket must not be used by two threads at once
  nor after a ``fork()``. The handler opens its socket on the first record a process sends and
  checks :func:`os.getpid` before each send, so a worker forked by gunicorn ``--preload`` or
  :mod:`multiprocessing` sends through a socket of its own; sends are serialised by the
  handler's lock.
* **The application never waits.** Every send is non-blocking. A record that ZeroMQ cannot take
  at once (no peer, or its queue of ``hwm`` messages is full) is dropped and counted in
  :attr:`ZMQQueueHandler.dropped`; the first drop of an outage is reported on stderr.
* **Bad input never stops the listener.** A message that is not a valid frame (garbage, wrong
  signature, unsigned while a secret is set, a header announcing too big a body, a ``peer``
  field) or, with a secret, a frame seen before or signed outside ``replay_window`` is counted
  in :attr:`ZMQQueueListener.rejected` (by reason in :attr:`ZMQQueueListener.reasons`) and
  skipped; the first rejection, and then at most one a minute, is reported on stderr with the
  peer's address.

**Messages.** From a ``PUSH`` socket each message has one part, the frame. From a ``PUB``
socket it has two: a topic, then the frame. The topic is ``"<LEVELNAME>.<logger name>."`` in
UTF-8 (for example ``"ERROR.shop.payments."``), so a subscriber chooses by prefix: ``"ERROR."``
for errors, ``"ERROR.shop."`` for the errors of ``shop`` and its children, ``""`` for
everything. The topic is routing only: the listener reads the level and logger name from the
frame, where a signature covers them.

**Security.** HMAC signing (``secret=``) proves that a record comes from someone holding the
secret and was not altered, and lets the listener accept each frame once; it does not encrypt.
A frame is signed when it is handed to ZeroMQ: one that waits in ZeroMQ's queue for longer than
the listener's ``replay_window`` is refused as stale. A ``PULL`` or ``SUB`` socket bound to a
non-loopback address accepts connections from anyone who can reach it: without a secret, anyone
there can write records into your logs. The listener caps each message at the frame size limit
(``ZMQ_MAXMSGSIZE``): ZeroMQ disconnects a peer that sends more instead of buffering it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Iterable
from typing import Any, Final

try:
    import zmq
except ImportError as error:
    msg = "ctxlog.zmq needs pyzmq: pip install 'ctxlog[zmq]'"
    raise ImportError(msg) from error

from ctxlog import wire as _wire
from ctxlog._stderr import write_line
from ctxlog.queue import QueueHandler, QueueListener

__all__ = ["ZMQQueueHandler", "ZMQQueueListener"]

_ENDPOINT: Final = re.compile(r"[a-z][a-z0-9+.-]*://\S+")
_SENDER_TYPES: Final = {int(zmq.PUSH): "PUSH", int(zmq.PUB): "PUB"}
_RECEIVER_TYPES: Final = {int(zmq.PULL): "PULL", int(zmq.SUB): "SUB"}
#: Drop and rejection reports on stderr: at most one line per this many seconds.
_REPORT_INTERVAL: Final = 60.0
#: A handler whose socket could not be opened tries again after this many seconds.
_REOPEN_DELAY: Final = 1.0

#: Sockets and contexts inherited from a parent process. They belong to the parent: the child
#: must neither use nor close them, and must not let them be garbage collected (pyzmq would
#: warn about an unclosed socket). They are kept here for the life of the process.
_inherited: list[object] = []


def _check_address(owner: str, address: object) -> str:
    if not isinstance(address, str):
        msg = (
            f"{owner}: address={address!r} is not a ZeroMQ endpoint string such as "
            "'tcp://127.0.0.1:5556' (in dictConfig, create the handler with '()', not 'class')"
        )
        raise TypeError(msg)
    if not _ENDPOINT.fullmatch(address):
        msg = (
            f"{owner}: address={address!r} is not a ZeroMQ endpoint such as 'tcp://127.0.0.1:5556'"
        )
        raise ValueError(msg)
    return address


def _check_secret(owner: str, secret: bytes | str | None) -> bytes | None:
    if isinstance(secret, str):
        secret = secret.encode()
    if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
        msg = f"{owner}: secret must be at least 16 bytes (use a random key)"
        raise ValueError(msg)
    return secret


def _check_positive_int(owner: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{owner}: {name}={value!r} is not a positive integer"
        raise ValueError(msg)
    return value


def _check_socket_type(owner: str, socket_type: object, allowed: dict[int, str]) -> int:
    if (
        isinstance(socket_type, bool)
        or not isinstance(socket_type, int)
        or socket_type not in allowed
    ):
        names = " or ".join(f"zmq.{name}" for name in allowed.values())
        msg = f"{owner}: socket_type={socket_type!r} is not {names}"
        raise ValueError(msg)
    return int(socket_type)


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
        self.address = _check_address(owner, address)
        self.socket_type = _check_socket_type(owner, socket_type, _SENDER_TYPES)
        self.bind = bool(bind)
        self.hwm = _check_positive_int(owner, "hwm", hwm)
        if isinstance(linger, bool) or not isinstance(linger, int | float) or linger < 0:
            msg = f"{owner}: linger={linger!r} is not a number of seconds >= 0"
            raise ValueError(msg)
        self.linger = float(linger)
        secret = _check_secret(owner, secret)
        self._signer = _wire.Signer(secret) if secret is not None else None
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

    def __repr__(self) -> str:
        kind = _SENDER_TYPES[self.socket_type]
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
            self._forget_parent()
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
        body = _wire.encode_body(record)
        if len(body) > _wire.MAX_BODY:
            with self.lock:  # type: ignore[union-attr]
                self._drop(f"a record of {len(body)} bytes is over the frame size limit")
            return
        with self.lock:  # type: ignore[union-attr]
            sock = self._ready_socket()
            if sock is None:
                return
            # Signed under the lock: sequence numbers leave in the order they were given.
            signer = self._signer
            frame = _wire.unsigned(body) if signer is None else signer.sign(body)
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
            self._forget_parent()
            sock, context = self._socket, self._context
            self._socket = self._context = None
            if sock is not None:
                sock.close(linger=round(self.linger * 1000))
            if context is not None:
                context.term()  # returns once the socket's linger is over
        super().close()

    # -- under self.lock ------------------------------------------------------------------------

    def _forget_parent(self) -> None:
        """In a forked child, set the parent's socket aside and start counting afresh."""
        pid = os.getpid()
        if pid == self._pid:
            return
        if self._socket is not None:
            _inherited.append((self._context, self._socket))
        self._socket = self._context = None
        self.endpoint = None
        self._pid = pid
        self.sent = self.dropped = self.suppressed = 0
        self._reopen_at = 0.0
        self._outage = False
        self._next_report = 0.0

    def _ready_socket(self) -> zmq.Socket[bytes] | None:
        if self._pid != os.getpid():
            self._forget_parent()
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
        try:
            sock = context.socket(self.socket_type)
            sock.setsockopt(zmq.SNDHWM, self.hwm)
            sock.setsockopt(zmq.LINGER, round(self.linger * 1000))
            if self.bind:
                sock.bind(self.address)
            else:
                sock.connect(self.address)
            endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
        except BaseException:
            context.destroy(linger=0)
            raise
        self._context, self._socket = context, sock
        self.endpoint = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)
        return sock

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        if self._outage:
            return
        self._outage = True
        now = time.monotonic()
        if now < self._next_report:
            return
        self._next_report = now + _REPORT_INTERVAL
        write_line(
            f"ctxlog.zmq: {self!r} dropped a record: {reason}; further drops are counted "
            "in .dropped"
        )


def _peer_of(frame: zmq.Frame) -> str | None:
    """Return the address ZeroMQ says ``frame`` came from, or ``None`` (inproc, ipc)."""
    with contextlib.suppress(zmq.ZMQError, ValueError, TypeError, UnicodeError):
        peer = frame.get("Peer-Address")
        if isinstance(peer, bytes):
            peer = peer.decode()
        return str(peer) or None
    return None


class ZMQQueueListener(QueueListener):
    """
    Receive frames on a ZeroMQ ``PULL`` or ``SUB`` socket and hand the records to ``handlers``.

    A :class:`ctxlog.QueueListener` whose "queue" is ZeroMQ: :meth:`dequeue` waits for a message
    and decodes it with :func:`ctxlog.wire.decode`, the strict decoder of ``ctxlog receive``.
    Records reach the handlers with the sender's context fields (``ip``, ``user``,
    ``request_id``, ...), the merged message, the traceback as text in ``exc_text`` (the
    handler's formatter renders it once), and ``peer``: the address ZeroMQ saw the message come
    from (``"-"`` where it does not say, as for ``ipc://``); a frame never sets ``peer``.
    :meth:`start` opens the socket (so a bind error is raised there) and starts one thread;
    :meth:`stop` hands over what has already arrived, then ends the thread at once, woken
    through an in-process socket rather than a timeout. Both can be called in any order, any
    number of times.

    Args:
        address: The endpoint to bind (or connect) to, such as ``"tcp://127.0.0.1:5556"``;
            ``"tcp://127.0.0.1:*"`` binds a free port (see :attr:`endpoint`).
        handlers: The handlers to give each record to.
        socket_type: ``zmq.PULL`` (for ``PUSH`` senders) or ``zmq.SUB`` (for ``PUB`` senders).
        bind: Bind to ``address`` (the default: many senders connect to one listener), or
            connect to it.
        secret: If given, only frames signed with it are accepted, each once (see
            ``replay_window``). At least 16 bytes; a ``str`` is encoded as UTF-8.
        replay_window: With ``secret``: seconds a frame's signing time may be from this
            process's clock. A frame outside it, or seen before, is rejected and counted.
            Records that wait longer in a sender's ZeroMQ queue (a listener down for longer)
            are rejected too: make it longer than the outages you want to ride out.
        subscribe: For ``zmq.SUB``, the topic prefixes to receive (default: everything).
        hwm: The most messages ZeroMQ queues for this listener (``ZMQ_RCVHWM``).
        max_body: The largest frame body accepted, in bytes; ZeroMQ disconnects a peer that
            sends a larger message.
        respect_handler_level: Give a record to a handler only if its level admits it.

    Raises:
        TypeError: ``address`` is not a string.
        TypeError: ``subscribe`` is a single string, not a list of prefixes.
        ValueError: A malformed ``address``; a bad ``socket_type``, ``hwm``, ``max_body`` or
            ``replay_window``; a secret shorter than 16 bytes; ``subscribe`` given for a
            ``PULL`` socket.

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
       ``replay_window``: with a secret, a frame is accepted once; records carry ``peer``;
       rejections are counted by reason in :attr:`reasons`.
    """

    def __init__(
        self,
        address: str,
        *handlers: logging.Handler,
        socket_type: int = zmq.PULL,
        bind: bool = True,
        secret: bytes | str | None = None,
        subscribe: Iterable[str] | None = None,
        hwm: int = 10_000,
        max_body: int = _wire.MAX_BODY,
        respect_handler_level: bool = False,
        replay_window: float = 300.0,
    ) -> None:
        owner = type(self).__name__
        self.address = _check_address(owner, address)
        self.socket_type = _check_socket_type(owner, socket_type, _RECEIVER_TYPES)
        if subscribe is not None and self.socket_type != zmq.SUB:
            msg = f"{owner}: subscribe= is for zmq.SUB sockets only"
            raise ValueError(msg)
        if isinstance(subscribe, str):
            msg = f"{owner}: subscribe={subscribe!r} must be a list of topic prefixes"
            raise TypeError(msg)
        self.subscribe = ("",) if subscribe is None else tuple(subscribe)
        self.bind = bool(bind)
        self.hwm = _check_positive_int(owner, "hwm", hwm)
        self.max_body = _check_positive_int(owner, "max_body", max_body)
        self._secret = _check_secret(owner, secret)
        if (
            isinstance(replay_window, bool)
            or not isinstance(replay_window, int | float)
            or not 0 < replay_window < math.inf
        ):
            msg = f"{owner}: replay_window={replay_window!r} is not a positive number of seconds"
            raise ValueError(msg)
        self.replay_window = float(replay_window)
        self._replay = _wire.Replay(self.replay_window) if self._secret is not None else None
        super().__init__(None, *handlers, respect_handler_level=respect_handler_level)
        #: Records received and decoded.
        self.received = 0
        #: Messages that were not valid frames (or, with a secret, were replayed or stale),
        #: skipped.
        self.rejected = 0
        #: :attr:`rejected` by reason: ``"bad frame"``, ``"replayed frame"``, ``"stale frame"``.
        self.reasons: collections.Counter[str] = collections.Counter()
        #: The endpoint of the socket while it is open (the real port of ``:*``).
        self.endpoint: str | None = None
        self._parts = 2 if self.socket_type == zmq.SUB else 1
        self._pid = os.getpid()
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._data: zmq.Socket[bytes] | None = None
        self._wake_in: zmq.Socket[bytes] | None = None
        self._wake_out: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        self._draining = 0
        self._unreported = 0
        self._next_report = 0.0

    def __repr__(self) -> str:
        kind = _RECEIVER_TYPES[self.socket_type]
        return f"<{type(self).__name__} {kind} {self.endpoint or self.address}>"

    def start(self) -> None:
        """
        Open the socket and start the listener thread, unless it is already running.

        Raises:
            zmq.ZMQError: The address cannot be bound or connected to (nothing is started).
        """
        self._forget_parent()
        with self._lifecycle:
            thread = self._thread
            if thread is not None and thread.is_alive():
                return
            self._close_sockets()
            self._open()
            self._stopping = False
            self._draining = 0
            self._thread = thread = threading.Thread(
                target=self._monitor, name=f"ctxlog-listener-{id(self):x}", daemon=True
            )
            thread.start()

    def stop(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """
        Hand over the messages that have arrived, stop the thread and close the socket.

        Args:
            timeout: Give up waiting after this many seconds (``None``: until done).

        Returns:
            ``True`` if the thread has stopped, ``False`` if the timeout ran out first.
        """
        self._forget_parent()
        stopped = super().stop(timeout)
        if stopped:
            with self._lifecycle:
                if self._thread is None:
                    self._close_sockets()
        return stopped

    def enqueue_sentinel(self) -> None:
        """Wake the listener thread and tell it to finish (it drains what has arrived first)."""
        if self._wake_out is not None:
            self._wake_out.send(b"", zmq.NOBLOCK)

    def stats(self) -> dict[str, Any]:
        """
        Return the counters: ``received``, ``rejected``, and ``reasons`` (rejected by reason).

        .. versionadded:: 0.3.0
        """
        return {
            "received": self.received,
            "rejected": self.rejected,
            "reasons": dict(self.reasons),
        }

    def dequeue(self, block: bool) -> logging.LogRecord | None:  # type: ignore[override]
        """
        Return the next valid record, or ``None`` (the stop sentinel) once stopping is done.

        Messages that are not valid frames are counted in :attr:`rejected` and skipped.

        Raises:
            queue.Empty: ``block`` is false and no message is waiting.
        """
        while True:
            message = self._receive(block)
            if message is None:
                return None
            record = self._decode(message)
            if record is not None:
                self.received += 1
                return record

    # -- in the listener thread -----------------------------------------------------------------

    def _receive(self, block: bool) -> list[zmq.Frame] | None:
        data = self._data
        if data is None:  # pragma: no cover - start() opens it before the thread runs
            return None
        while True:
            if self._draining:
                # Stopping: hand over what has arrived, but not a stream that never ends.
                self._draining -= 1
                try:
                    return data.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    return None
            events = dict(self._poller.poll(None if block else 0))
            if self._wake_in in events:
                self._wake_in.recv()  # type: ignore[union-attr]  # registered with the poller
                self._draining = self.hwm + 1
                continue
            if data in events:
                return data.recv_multipart(zmq.NOBLOCK, copy=False)
            if not block:
                raise queue.Empty

    def _decode(self, message: list[zmq.Frame]) -> logging.LogRecord | None:
        try:
            if len(message) != self._parts:
                expected = "a topic and a frame" if self._parts == 2 else "one frame"
                msg = f"a message of {len(message)} parts, not {expected}"
                raise _wire.WireError(msg)  # noqa: TRY301 - one path for every bad message
            record = self._parse(message[-1].bytes)
        except _wire.WireError as error:
            self.rejected += 1
            self.reasons[error.reason] += 1
            self._report(error, message[-1] if message else None)
            return None
        record.peer = _peer_of(message[-1]) or "-"
        return record

    def _parse(self, frame: bytes) -> logging.LogRecord:
        header = frame[: _wire.HEADER_SIZE]
        size, _ = _wire.read_header(header, self.max_body)
        start = _wire.HEADER_SIZE + size
        if len(frame) < start:
            msg = f"frame of {len(frame)} bytes is shorter than its header and signature"
            raise _wire.WireError(msg)
        signature = frame[_wire.HEADER_SIZE : start] if size else None
        return _wire.decode(
            header, frame[start:], signature, self._secret, self.max_body, replay=self._replay
        )

    def _report(self, error: _wire.WireError, frame: zmq.Frame | None) -> None:
        now = time.monotonic()
        if now < self._next_report:
            self._unreported += 1
            return
        self._next_report = now + _REPORT_INTERVAL
        peer = (_peer_of(frame) if frame is not None else None) or "an unknown peer"
        earlier = f" ({self._unreported} more since the last report)" if self._unreported else ""
        self._unreported = 0
        write_line(
            f"ctxlog.zmq: {self!r} rejected a message from {peer}: {error.reason}: "
            f"{error}{earlier}; "
            "rejections are counted in .rejected"
        )

    # -- under self._lifecycle ------------------------------------------------------------------

    def _open(self) -> None:
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            data = context.socket(self.socket_type)
            data.setsockopt(zmq.RCVHWM, self.hwm)
            data.setsockopt(zmq.LINGER, 0)
            data.setsockopt(zmq.MAXMSGSIZE, _wire.MAX_OVERHEAD + self.max_body)
            if self.socket_type == zmq.SUB:
                for prefix in self.subscribe:
                    data.setsockopt(zmq.SUBSCRIBE, prefix.encode())
            if self.bind:
                data.bind(self.address)
            else:
                data.connect(self.address)
            endpoint = data.getsockopt(zmq.LAST_ENDPOINT)
            wake_in = context.socket(zmq.PAIR)
            wake_in.bind("inproc://stop")
            wake_out = context.socket(zmq.PAIR)
            wake_out.connect("inproc://stop")
        except BaseException:
            context.destroy(linger=0)
            raise
        self._context, self._data, self._wake_in, self._wake_out = context, data, wake_in, wake_out
        self.endpoint = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)
        self._poller = zmq.Poller()
        self._poller.register(data, zmq.POLLIN)
        self._poller.register(wake_in, zmq.POLLIN)

    def _close_sockets(self) -> None:
        for sock in (self._data, self._wake_in, self._wake_out):
            if sock is not None:
                sock.close(linger=0)
        if self._context is not None:
            self._context.term()
        self._context = self._data = self._wake_in = self._wake_out = None
        self._poller = zmq.Poller()
        self.endpoint = None

    def _forget_parent(self) -> None:
        """In a forked child, set the parent's sockets and thread aside."""
        pid = os.getpid()
        if pid == self._pid:
            return
        if self._context is not None:
            _inherited.append((self._context, self._data, self._wake_in, self._wake_out))
        self._context = self._data = self._wake_in = self._wake_out = None
        self._poller = zmq.Poller()
        self.endpoint = None
        self._pid = pid
        self.received = self.rejected = self._unreported = 0
        self.reasons.clear()
        if self._replay is not None:
            self._replay = _wire.Replay(self.replay_window)
        self._next_report = 0.0
        self._after_fork()
