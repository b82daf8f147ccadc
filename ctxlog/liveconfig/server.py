"""
The configuration listener: one thread that accepts connections and applies what passes.

:func:`config_server` checks its options, binds the address and starts a :class:`ConfigServer`.
Its thread waits on non-blocking sockets with :mod:`selectors`: it accepts one connection per
round (closing the oldest when :data:`MAX_CONNECTIONS` are open), reads each
:class:`~ctxlog.liveconfig.connection.Connection` as bytes arrive, closes one whose
``read_timeout`` is over, hands each complete payload to the
:class:`~ctxlog.liveconfig.verifier.Verifier` and applies what it returns with
:func:`logging.config.dictConfig`. Rejections go to the
:class:`~ctxlog.liveconfig.reports.Reporter`; outcomes are logged on ``ctxlog.config``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import logging.config
import os
import selectors
import socket
import threading
import time
from types import TracebackType
from typing import Final, Self

from ctxlog.liveconfig.connection import Connection
from ctxlog.liveconfig.protocol import (
    DEFAULT_PORT,
    TIMED_OUT,
    TOO_MANY_CONNECTIONS,
    RejectedError,
    load_secret,
    positive,
    show_address,
)
from ctxlog.liveconfig.reports import Reporter
from ctxlog.liveconfig.verifier import Verifier

__all__ = ["MAX_CONNECTIONS", "ConfigServer", "config_server"]

#: The most connections a listener holds open at once; a new one closes the oldest.
MAX_CONNECTIONS: Final = 16
#: Seconds the listener waits before accepting again when the process is out of descriptors.
_ACCEPT_BACKOFF: Final = 0.5

_log = logging.getLogger("ctxlog.config")

_Connections = dict[socket.socket, Connection]


class ConfigServer:
    """
    A running configuration listener, as returned by :func:`config_server`.

    Stop it with :meth:`stop`, or use it as a context manager. :attr:`rejected` counts the
    messages it rejected, by reason.

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
       Rejections are logged at most once per reason and ``report_interval``, and counted in
       :attr:`rejected`.
    """

    def __init__(
        self,
        sock: socket.socket,
        verifier: Verifier,
        *,
        read_timeout: float,
        report_interval: float = 10.0,
    ) -> None:
        self._sock = sock
        self._verifier = verifier
        self._read_timeout = read_timeout
        self._report = Reporter(report_interval)
        self._address = show_address(sock.getsockname())
        self._port: int = sock.getsockname()[1]
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._stopping = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._serve, name=f"ctxlog config server {self._address}", daemon=True
        )

    @property
    def port(self) -> int:
        """The port the listener is bound to (the real one when 0 was asked for)."""
        return self._port

    @property
    def rejected(self) -> dict[str, int]:
        """
        The messages rejected so far, by reason: ``{"bad signature": 300, ...}``.

        The reasons are ``"too large"``, ``"timed out"``, ``"incomplete"``, ``"too many
        connections"``, ``"too short"``, ``"bad signature"``, ``"malformed"``, ``"stale"``,
        ``"replayed"``, ``"too many messages"`` and ``"not allowed"`` (see :doc:`/live-config`).

        .. versionadded:: 0.3.0
        """
        return dict(self._report.counts)

    def stop(self, timeout: float = 5.0) -> None:
        """
        Stop listening and wait up to ``timeout`` seconds for the listener's thread to end.

        The thread closes the listening socket and every open connection as it ends. Calling
        ``stop()`` again does nothing. The thread only takes long to end if it is applying a
        configuration (a handler that is slow to build, say); after ``timeout`` a warning is
        logged on ``ctxlog.config`` and the thread ends, freeing the port, once it has finished.
        dictConfig holds the logging module's lock while it works, so that warning, like any
        other log call in the process, may wait for the configuration to be applied.

        Args:
            timeout: Seconds to wait for the thread.
        """
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")
        if self._thread.ident is None:  # never started: nothing else owns the sockets
            self._close_sockets()
        else:
            self._thread.join(timeout)
        self._wake_writer.close()
        if self._thread.is_alive():
            _log.warning(
                "the configuration listener on %s did not stop within %.1f s: it is still "
                "applying a configuration, and closes its port when that is done",
                self._address,
                timeout,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "listening"
        return f"<ConfigServer {self._address} {state}>"

    def _start(self) -> None:
        self._thread.start()

    def _close_sockets(self) -> None:
        self._sock.close()
        self._wake_reader.close()

    # --- the listener's thread: everything below runs there and only there -----------------

    def _serve(self) -> None:
        connections: _Connections = {}
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._sock, selectors.EVENT_READ)
                selector.register(self._wake_reader, selectors.EVENT_READ)
                while not self._stopping.is_set():
                    self._serve_round(selector, connections)
        finally:
            for connection in connections.values():
                connection.sock.close()
            self._close_sockets()
            self._report.summarise(everything=True)

    def _serve_round(self, selector: selectors.BaseSelector, connections: _Connections) -> None:
        """Wait for what comes first (bytes, a deadline, a summary due); handle what came."""
        wake_at = [connection.deadline for connection in connections.values()]
        summary = self._report.next_due()
        if summary is not None:
            wake_at.append(summary)
        timeout = max(0.0, min(wake_at) - time.monotonic()) if wake_at else None
        for key, _ in selector.select(timeout):
            if key.fileobj is self._sock:
                self._accept(selector, connections)
            elif key.fileobj is not self._wake_reader:
                connection: Connection = key.data
                # It may have been closed to make room earlier in this round.
                if connection.sock in connections and self._receive(connection):
                    self._close(selector, connections, connection)
        now = time.monotonic()
        for connection in [c for c in connections.values() if c.deadline <= now]:
            reason = f"not received within read_timeout {self._read_timeout:g} s"
            self._reject(connection.incomplete(TIMED_OUT, reason), connection.peer)
            self._close(selector, connections, connection)
        self._report.summarise()

    def _accept(self, selector: selectors.BaseSelector, connections: _Connections) -> None:
        # One connection per round, so that reading the open ones keeps up with a flood.
        try:
            sock, address = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as error:  # out of file descriptors or buffers; the next may work
            _log.warning(
                "the configuration listener on %s cannot accept a connection: %s",
                self._address,
                error.strerror or error,
            )
            self._stopping.wait(_ACCEPT_BACKOFF)
            return
        sock.settimeout(0.0)  # non-blocking
        if len(connections) >= MAX_CONNECTIONS:
            oldest = next(iter(connections.values()))
            reason = f"closed to make room: {MAX_CONNECTIONS} connections were open"
            self._reject(oldest.incomplete(TOO_MANY_CONNECTIONS, reason), oldest.peer)
            self._close(selector, connections, oldest)
        connection = Connection(sock, show_address(address), time.monotonic() + self._read_timeout)
        connections[sock] = connection
        selector.register(sock, selectors.EVENT_READ, connection)

    def _receive(self, connection: Connection) -> bool:
        """Read what has arrived; handle the message once complete. Return True when done."""
        try:
            done = connection.read()
        except RejectedError as rejected:
            self._reject(rejected, connection.peer)
            return True
        if connection.payload is not None:
            self._handle(connection.payload, connection.peer)
        return done

    def _handle(self, payload: bytes, peer: str) -> None:
        try:
            result, summary = self._verifier(payload, peer)
        except RejectedError as rejected:
            self._reject(rejected, peer)
            return
        try:
            logging.config.dictConfig(json.loads(result))
        except Exception as error:  # dictConfig calls whatever a full configuration names
            _log.error(
                "configuration failed from %s: %s; logging is as dictConfig left it (a full "
                "configuration may be partly applied)",
                peer,
                _reason(error),
                exc_info=True,
            )
            return
        _log.info("configuration applied from %s: %s", peer, summary)

    def _reject(self, rejected: RejectedError, peer: str) -> None:
        self._report(rejected.kind, peer, str(rejected))

    def _close(
        self,
        selector: selectors.BaseSelector,
        connections: _Connections,
        connection: Connection,
    ) -> None:
        del connections[connection.sock]
        selector.unregister(connection.sock)
        connection.sock.close()


def config_server(
    port: int = DEFAULT_PORT,
    *,
    secret: bytes | str | os.PathLike[str],
    host: str = "127.0.0.1",
    allow_full_config: bool = False,
    max_age: float = 60.0,
    read_timeout: float = 5.0,
    report_interval: float = 10.0,
) -> ConfigServer:
    """
    Start listening for signed logging configurations; return the running listener.

    Every message must carry an HMAC-SHA256 tag made with ``secret``, a timestamp within
    ``max_age`` seconds of this process's clock and a nonce not used before (the format is in
    :doc:`/live-config`). A message that fails any check changes nothing; it is counted by
    reason in :attr:`ConfigServer.rejected` and logged on ``ctxlog.config`` at WARNING with the
    reason and the peer's address: the first of each reason at once, the others of that reason
    in one summary per ``report_interval``, so that a peer sending junk cannot flood the log. An
    accepted message is applied with :func:`logging.config.dictConfig` in the listener's thread,
    then logged at INFO, or at ERROR with the reason if dictConfig raised.

    Args:
        port: The TCP port; 0 picks a free one (see ``.port``).
        secret: The shared secret, 16 bytes or more: bytes, a str (used as UTF-8), or a path
            to a file holding it, read like ``ctxlog config push --secret-file`` reads it (one
            trailing newline removed).
        host: The IP address to listen on; ``"localhost"`` means ``"127.0.0.1"``. An address
            other than a loopback one exposes the port to that network: see
            :doc:`/live-config`.
        allow_full_config: Apply any dictConfig, not just level changes. A dictConfig names
            classes and callables to import and call: this lets whoever holds the secret run
            code in this process.
        max_age: How far, in seconds, a message's timestamp may be from this process's clock,
            in the past or the future; also how long nonces are remembered.
        read_timeout: Seconds a peer has, from connecting, to send its whole message; the
            connection is then closed and the message rejected.
        report_interval: After a rejection is logged, further rejections for the same reason
            are counted for this many seconds and then logged as one summary.

    Raises:
        ValueError: If the secret is too short or unreadable, ``host`` is not an IP address,
            or ``port``, ``max_age``, ``read_timeout`` or ``report_interval`` is not
            acceptable.
        OSError: If the address cannot be listened on (the port is taken, say).
        TypeError: If ``secret`` is not bytes, a str or a path.

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
       ``report_interval``: rejections are rate-limited per reason and counted.
    """
    key = load_secret(secret)
    family, address = _parse_host(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        msg = f"port: {port!r} is not a TCP port number (0 to 65535)"
        raise ValueError(msg)
    if not positive(max_age):
        msg = f"max_age: {max_age!r} is not a positive number of seconds"
        raise ValueError(msg)
    if not positive(read_timeout):
        msg = f"read_timeout: {read_timeout!r} is not a positive number of seconds"
        raise ValueError(msg)
    if not positive(report_interval):
        msg = f"report_interval: {report_interval!r} is not a positive number of seconds"
        raise ValueError(msg)
    verifier = Verifier(key, allow_full_config=allow_full_config, max_age=float(max_age))
    sock = _listen(family, address, port)
    where = show_address(sock.getsockname())
    server = ConfigServer(
        sock, verifier, read_timeout=float(read_timeout), report_interval=float(report_interval)
    )
    server._start()  # noqa: SLF001 - this module's own class; its constructor starts nothing
    mode = "full dictConfig allowed" if allow_full_config else "level changes only"
    _log.info("listening for signed configurations on %s (%s)", where, mode)
    return server


def _parse_host(host: str) -> tuple[socket.AddressFamily, str]:
    if host == "localhost":
        return socket.AF_INET, "127.0.0.1"
    try:
        # ip_address() would also take an int or packed bytes.
        parsed = ipaddress.ip_address(host) if isinstance(host, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        msg = f"host: {host!r} is not an IP address to listen on, such as '127.0.0.1'"
        raise ValueError(msg)
    return (socket.AF_INET6 if parsed.version == 6 else socket.AF_INET), host


def _listen(family: socket.AddressFamily, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "posix":
            # As the standard library's listener does: a restarted application can bind again
            # while connections of the previous one linger in TIME_WAIT. (On Windows the option
            # would let two processes share the port.)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen()
        sock.settimeout(0.0)  # non-blocking
    except OSError as error:
        sock.close()
        where = show_address((address, port))
        msg = f"cannot listen on {where}: {error.strerror or error}"
        raise OSError(error.errno, msg) from None
    return sock


def _reason(error: BaseException) -> str:
    """Return ``error`` and its causes on one line: dictConfig wraps the error that matters."""
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None and len(parts) < 5:
        text = str(current) or type(current).__name__
        if not parts or text not in parts[-1]:
            parts.append(text)
        current = current.__cause__
    return ": ".join(parts)
