"""
The receiving end: :class:`ZMQQueueListener`, a :class:`ctxlog.QueueListener` reading ZeroMQ.

:meth:`~ZMQQueueListener.start` opens a ``PULL`` or ``SUB`` socket and an in-process wake-up
pair, and starts the listener's thread. That thread polls both: a message is decoded with
:func:`ctxlog.wire.decode`, the strict decoder of ``ctxlog receive`` (with a secret: signature,
replay and age checked), and handed to the handlers with the ``peer`` ZeroMQ saw; a bad one is
counted by reason and reported on stderr at most once a minute. :meth:`~ZMQQueueListener.stop`
wakes the thread, which hands over what has already arrived and ends. In a forked child, the
process lifecycle registry (:mod:`ctxlog._lifecycle`) has the listener set the parent's sockets
and thread aside.
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any

import zmq

from ctxlog import wire
from ctxlog._lifecycle import register
from ctxlog._stderr import write_line
from ctxlog.queue import QueueListener
from ctxlog.zmq.sockets import (
    RECEIVER_TYPES,
    REPORT_INTERVAL,
    check_address,
    check_positive_int,
    check_secret,
    check_socket_type,
    open_socket,
    peer_of,
    set_aside,
)

__all__ = ["ZMQQueueListener"]


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
        max_body: int = wire.MAX_BODY,
        respect_handler_level: bool = False,
        replay_window: float = 300.0,
    ) -> None:
        owner = type(self).__name__
        self.address = check_address(owner, address)
        self.socket_type = check_socket_type(owner, socket_type, RECEIVER_TYPES)
        if subscribe is not None and self.socket_type != zmq.SUB:
            msg = f"{owner}: subscribe= is for zmq.SUB sockets only"
            raise ValueError(msg)
        if isinstance(subscribe, str):
            msg = f"{owner}: subscribe={subscribe!r} must be a list of topic prefixes"
            raise TypeError(msg)
        self.subscribe = ("",) if subscribe is None else tuple(subscribe)
        self.bind = bool(bind)
        self.hwm = check_positive_int(owner, "hwm", hwm)
        self.max_body = check_positive_int(owner, "max_body", max_body)
        self._secret = check_secret(owner, secret)
        if (
            isinstance(replay_window, bool)
            or not isinstance(replay_window, int | float)
            or not 0 < replay_window < math.inf
        ):
            msg = f"{owner}: replay_window={replay_window!r} is not a positive number of seconds"
            raise ValueError(msg)
        self.replay_window = float(replay_window)
        self._replay = wire.Replay(self.replay_window) if self._secret is not None else None
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
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._data: zmq.Socket[bytes] | None = None
        self._wake_in: zmq.Socket[bytes] | None = None
        self._wake_out: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        #: While stopping: how many more messages may be handed over (``None``: not stopping).
        self._draining: int | None = None
        self._unreported = 0
        self._next_report = 0.0
        register(self)

    def __repr__(self) -> str:
        kind = RECEIVER_TYPES[self.socket_type]
        return f"<{type(self).__name__} {kind} {self.endpoint or self.address}>"

    def start(self) -> None:
        """
        Open the socket and start the listener thread, unless it is already running.

        Raises:
            zmq.ZMQError: The address cannot be bound or connected to (nothing is started).
        """
        with self._lifecycle:
            thread = self._thread
            if thread is not None and thread.is_alive():
                return
            self._close_sockets()
            self._open()
            self._stopping = False
            self._draining = None
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
            if self._draining is not None:
                # Stopping: hand over what has arrived, but not a stream that never ends.
                if not self._draining:
                    return None
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
                raise wire.WireError(msg)  # noqa: TRY301 - one path for every bad message
            record = self._parse(message[-1].bytes)
        except wire.WireError as error:
            self.rejected += 1
            self.reasons[error.reason] += 1
            self._report(error, message[-1] if message else None)
            return None
        record.peer = peer_of(message[-1]) or "-"
        return record

    def _parse(self, frame: bytes) -> logging.LogRecord:
        header = frame[: wire.HEADER_SIZE]
        size, _ = wire.read_header(header, self.max_body)
        start = wire.HEADER_SIZE + size
        if len(frame) < start:
            msg = f"frame of {len(frame)} bytes is shorter than its header and signature"
            raise wire.WireError(msg)
        signature = frame[wire.HEADER_SIZE : start] if size else None
        return wire.decode(
            header, frame[start:], signature, self._secret, self.max_body, replay=self._replay
        )

    def _report(self, error: wire.WireError, frame: zmq.Frame | None) -> None:
        now = time.monotonic()
        if now < self._next_report:
            self._unreported += 1
            return
        self._next_report = now + REPORT_INTERVAL
        peer = (peer_of(frame) if frame is not None else None) or "an unknown peer"
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
        options: list[tuple[int, int | bytes]] = [
            (zmq.RCVHWM, self.hwm),
            (zmq.LINGER, 0),
            (zmq.MAXMSGSIZE, wire.MAX_OVERHEAD + self.max_body),
        ]
        if self.socket_type == zmq.SUB:
            options += [(zmq.SUBSCRIBE, prefix.encode()) for prefix in self.subscribe]
        try:
            data, endpoint = open_socket(
                context, self.socket_type, self.address, bind=self.bind, options=options
            )
            wake_in = context.socket(zmq.PAIR)
            wake_in.bind("inproc://stop")
            wake_out = context.socket(zmq.PAIR)
            wake_out.connect("inproc://stop")
        except BaseException:
            context.destroy(linger=0)
            raise
        self._context, self._data, self._wake_in, self._wake_out = context, data, wake_in, wake_out
        self.endpoint = endpoint
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

    # -- in a forked child ---------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """
        In a forked child, set the parent's sockets and thread aside and count afresh.

        Called by ctxlog's fork hook (installed with :func:`os.register_at_fork`) right after
        the fork. The listener is then stopped in the child; :meth:`start` opens sockets of its own.
        """
        if self._context is not None:
            set_aside(self._context, self._data, self._wake_in, self._wake_out)
        self._context = self._data = self._wake_in = self._wake_out = None
        self._poller = zmq.Poller()
        self.endpoint = None
        self.received = self.rejected = self._unreported = 0
        self.reasons.clear()
        if self._replay is not None:
            self._replay = wire.Replay(self.replay_window)
        self._next_report = 0.0
        self._after_fork()
