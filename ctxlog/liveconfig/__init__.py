"""
Live reconfiguration: the Logging Cookbook's configuration server, made safe.

:func:`config_server` starts a thread that takes a new logging configuration over TCP, as
:func:`logging.config.listen` does, but applies only configurations signed with a shared secret;
:func:`push` (or ``ctxlog config push FILE``) sends one. A running application changes its
levels, and with ``allow_full_config=True`` its handlers, without a restart.

Message
-------
The listener speaks the protocol of :func:`logging.config.listen`: one message per connection,
a 4-byte unsigned big-endian length, then that many bytes; the listener closes the connection
without replying once it has handled the message. A sender written for the standard library's
listener (the Cookbook's client, for one) works unchanged. ctxlog's message (the *payload*) is::

    tag   32 bytes   HMAC-SHA256(secret, body)
    body  UTF-8 JSON: {"v": 1, "ts": <seconds since the epoch>, "nonce": "<32 hex digits>",
                       "config": {<a dictConfig, "version": 1>}}

The tag covers the body's exact bytes; the body has exactly those four keys. ``ts`` is the
sender's clock when it signed, ``nonce`` 16 random bytes in lowercase hex.

Checks, in order; the first that fails rejects the message: an announced length of at most
:data:`MAX_PAYLOAD` (checked before the body is read); the whole message within
``read_timeout`` seconds of connecting; a tag that matches (compared in constant time); a JSON
object of the shape above; ``ts`` within ``max_age`` seconds of the application's clock, either
way; a nonce not seen within that window; then the configuration. By default only level changes
pass (``root``, ``loggers`` and ``handlers`` entries whose only key is ``level``, plus
``version`` and ``"incremental": true``), and what is applied is an incremental dictConfig that
ctxlog builds from the validated levels. With ``allow_full_config=True`` any dictConfig with
``"version": 1`` is applied as it is.

A message that passes is applied as the standard library applies what its ``verify`` returns,
``logging.config.dictConfig(json.loads(result))``, in the listener's thread. Every outcome is
logged on ``ctxlog.config`` with the peer's address: WARNING ``configuration rejected from
<address>: <reason>``, INFO ``configuration applied from <address>: <summary>``, or ERROR
``configuration failed from <address>: <reason>`` when dictConfig raises (logging is then as
dictConfig left it: a full configuration may be partly applied). Rejections are counted by
reason (``ConfigServer.rejected``); after one is logged, the others of the same reason are held
back for ``report_interval`` seconds and logged as one summary line, so that junk sent without
the secret cannot flood the application's log.

Why not logging.config.listen
-----------------------------
ctxlog never calls :func:`logging.config.listen`. The standard library's listener reads a whole
message before ``verify`` sees any of it, and believes the length the peer announces: there is
no upper limit (it asks for up to 4 GiB), no timeout (a peer that sends nothing keeps a thread
waiting for as long as it stays connected), and when a peer announces a length and hangs up,
the thread calls ``recv`` in a loop that never ends, using a whole CPU core for the life of the
process (reproduced on 3.13; reported as CPython gh-156378). None of this needs the secret, and
no ``verify`` can prevent it. That listener also binds to ``localhost`` only, and
:func:`logging.config.stopListening` stops only the one started last, so a process cannot run
two.

ctxlog's listener is one thread with non-blocking sockets. It reads the 4-byte length first and
closes the connection, unread, if the length is over :data:`MAX_PAYLOAD`; it gives each peer
``read_timeout`` seconds for its whole message and closes the connection as soon as the peer
hangs up; it holds at most :data:`MAX_CONNECTIONS` connections, closing the oldest to make room
for a new one, so idle connections cannot keep a push out. It binds the address it is given, and
a process can run several.

Security
--------
The Cookbook's listener without ``verify`` runs whatever it is sent: a dictConfig names
callables to import and call (``"()"``, ``"class"``, ``ext://``), and when JSON fails the
standard library falls back to :func:`logging.config.fileConfig`, which calls ``eval``. Anyone who
can connect to the port can run code in the application. Here the bytes applied are never the
sender's bytes: they are JSON that ctxlog has serialised itself, and they only ever go to
dictConfig, never to fileConfig. Without the secret nothing is applied. With the secret, the
default applies levels only; ``allow_full_config=True`` hands dictConfig, and with it code
execution in the application, to whoever holds the secret.

The listener binds ``127.0.0.1`` unless told otherwise. Any other address puts the port on
that network: whoever can reach it cannot change the configuration without the secret, but can
send messages that are logged and rejected, and can hold up to :data:`MAX_CONNECTIONS`
connections; messages also travel in clear (signed, not encrypted). Prefer a tunnel (SSH) to a
non-loopback address.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import logging.config
import math
import os
import re
import secrets
import selectors
import socket
import struct
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

__all__ = [
    "DEFAULT_PORT",
    "MAX_CONNECTIONS",
    "MAX_PAYLOAD",
    "ConfigServer",
    "config_server",
    "push",
    "push_main",
]

#: The port of the standard library's configuration listener, and ctxlog's default.
DEFAULT_PORT: Final = logging.config.DEFAULT_LOGGING_CONFIG_PORT
#: The largest payload (tag and body) accepted, in bytes.
MAX_PAYLOAD: Final = 1024 * 1024
#: The most connections a listener holds open at once; a new one closes the oldest.
MAX_CONNECTIONS: Final = 16
#: The shortest secret accepted, in bytes.
MIN_SECRET: Final = 16
TAG_SIZE: Final = 32
#: The most loggers and handlers one levels-only configuration may name.
MAX_NAMES: Final = 1000
#: The most nonces remembered at once; more messages within ``max_age`` are refused.
MAX_NONCES: Final = 10_000

_VERSION: Final = 1
_ENVELOPE_KEYS: Final = frozenset({"v", "ts", "nonce", "config"})
_LEVELS_ONLY_KEYS: Final = frozenset({"version", "incremental", "root", "loggers", "handlers"})
_NONCE: Final = re.compile(r"[0-9a-f]{32}")
_LENGTH: Final = struct.Struct(">L")
_CHUNK: Final = 64 * 1024
#: Seconds the listener waits before accepting again when the process is out of descriptors.
_ACCEPT_BACKOFF: Final = 0.5
#: The most hosts a summary of rejections names.
_SHOWN_HOSTS: Final = 5
#: The reasons a message is rejected for, as counted in ConfigServer.rejected.
_TOO_LARGE: Final = "too large"
_TIMED_OUT: Final = "timed out"
_INCOMPLETE: Final = "incomplete"
_TOO_MANY_CONNECTIONS: Final = "too many connections"
_TOO_SHORT: Final = "too short"
_BAD_SIGNATURE: Final = "bad signature"
_MALFORMED: Final = "malformed"
_STALE: Final = "stale"
_REPLAYED: Final = "replayed"
_TOO_MANY_MESSAGES: Final = "too many messages"
_NOT_ALLOWED: Final = "not allowed"

_log = logging.getLogger("ctxlog.config")


class _RejectedError(Exception):
    """A message that is not applied: the kind of reason (counted), and what exactly."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class _Message:
    """One connection and the part of its message received so far."""

    __slots__ = ("data", "deadline", "length", "peer", "sock")

    def __init__(self, sock: socket.socket, peer: str, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.deadline = deadline
        self.data = bytearray()
        #: The payload length announced, once the 4 bytes that carry it have arrived.
        self.length: int | None = None

    def progress(self) -> str:
        if self.length is None:
            return f"{len(self.data)} of the 4 length bytes"
        return f"{len(self.data)} of the {self.length} payload bytes announced"


class _Held:
    """Rejections of one kind not logged yet: how many, and from which hosts (the first few)."""

    __slots__ = ("count", "hosts", "more_hosts")

    def __init__(self) -> None:
        self.count = 0
        self.hosts: list[str] = []
        self.more_hosts = False

    def add(self, peer: str) -> None:
        self.count += 1
        host = peer.rpartition(":")[0] or peer
        if host not in self.hosts:
            if len(self.hosts) < _SHOWN_HOSTS:
                self.hosts.append(host)
            else:
                self.more_hosts = True

    def show_hosts(self) -> str:
        return ", ".join(self.hosts) + (" and other hosts" if self.more_hosts else "")


class _Reporter:
    """
    Log rejections: the first of each kind at once, then one summary per interval.

    In the listener's thread only. ``counts`` holds every rejection by kind.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.counts: collections.Counter[str] = collections.Counter()
        self._quiet_until: dict[str, float] = {}
        self._held: dict[str, _Held] = {}

    def __call__(self, kind: str, peer: str, detail: str) -> None:
        self.counts[kind] += 1
        now = time.monotonic()
        if now < self._quiet_until.get(kind, 0.0):
            self._held.setdefault(kind, _Held()).add(peer)
            return
        self._quiet_until[kind] = now + self.interval
        _log.warning(
            "configuration rejected from %s: %s; the running configuration is unchanged",
            peer,
            detail,
        )

    def next_due(self) -> float | None:
        """Return when the next summary is due (monotonic seconds), or ``None``."""
        return min((self._quiet_until[kind] for kind in self._held), default=None)

    def summarise(self, *, everything: bool = False) -> None:
        """Log a summary of each kind whose interval is over (``everything``: of each kind)."""
        now = time.monotonic()
        for kind, held in list(self._held.items()):
            if everything or now >= self._quiet_until[kind]:
                del self._held[kind]
                self._quiet_until[kind] = now + self.interval
                _log.warning(
                    "configuration rejected %d more %s in the last %g s for the same reason "
                    "(%s), from %s; the running configuration is unchanged",
                    held.count,
                    "time" if held.count == 1 else "times",
                    self.interval,
                    kind,
                    held.show_hosts(),
                )


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
        verifier: _Verifier,
        *,
        read_timeout: float,
        report_interval: float = 10.0,
    ) -> None:
        self._sock = sock
        self._verifier = verifier
        self._read_timeout = read_timeout
        self._report = _Reporter(report_interval)
        self._address = _show_address(sock.getsockname())
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
        messages: dict[socket.socket, _Message] = {}
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._sock, selectors.EVENT_READ)
                selector.register(self._wake_reader, selectors.EVENT_READ)
                while not self._stopping.is_set():
                    wake_at = [message.deadline for message in messages.values()]
                    summary = self._report.next_due()
                    if summary is not None:
                        wake_at.append(summary)
                    timeout = max(0.0, min(wake_at) - time.monotonic()) if wake_at else None
                    for key, _ in selector.select(timeout):
                        if key.fileobj is self._sock:
                            self._accept(selector, messages)
                        elif key.fileobj is not self._wake_reader:
                            message: _Message = key.data
                            # It may have been closed to make room earlier in this round.
                            if message.sock in messages and self._receive(message):
                                self._close(selector, messages, message)
                    now = time.monotonic()
                    for message in [m for m in messages.values() if m.deadline <= now]:
                        reason = f"not received within read_timeout {self._read_timeout:g} s"
                        self._incomplete(_TIMED_OUT, message, reason)
                        self._close(selector, messages, message)
                    self._report.summarise()
        finally:
            for message in messages.values():
                message.sock.close()
            self._close_sockets()
            self._report.summarise(everything=True)

    def _accept(
        self, selector: selectors.BaseSelector, messages: dict[socket.socket, _Message]
    ) -> None:
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
        if len(messages) >= MAX_CONNECTIONS:
            oldest = next(iter(messages.values()))
            reason = f"closed to make room: {MAX_CONNECTIONS} connections were open"
            self._incomplete(_TOO_MANY_CONNECTIONS, oldest, reason)
            self._close(selector, messages, oldest)
        message = _Message(sock, _show_address(address), time.monotonic() + self._read_timeout)
        messages[sock] = message
        selector.register(sock, selectors.EVENT_READ, message)

    def _receive(self, message: _Message) -> bool:
        """Read what has arrived; handle the message once complete. Return True when done."""
        while True:
            expected = _LENGTH.size if message.length is None else message.length
            wanted = expected - len(message.data)
            if wanted == 0:
                if message.length is not None:
                    self._handle(bytes(message.data), message.peer)
                    return True
                (length,) = _LENGTH.unpack(message.data)
                if length > MAX_PAYLOAD:
                    detail = f"announces {length} bytes, over the limit of {MAX_PAYLOAD} (not read)"
                    self._report(_TOO_LARGE, message.peer, detail)
                    return True
                message.length = length
                message.data = bytearray()
                continue
            try:
                chunk = message.sock.recv(min(wanted, _CHUNK))
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as error:
                reason = f"the connection failed ({error.strerror or error})"
                self._incomplete(_INCOMPLETE, message, reason)
                return True
            if not chunk:
                if message.length is None and not message.data:
                    _log.debug("connection from %s closed without a message", message.peer)
                else:
                    self._incomplete(_INCOMPLETE, message, "the peer closed the connection")
                return True
            message.data += chunk

    def _handle(self, payload: bytes, peer: str) -> None:
        try:
            result, summary = self._verifier(payload, peer)
        except _RejectedError as rejected:
            self._report(rejected.kind, peer, str(rejected))
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

    def _incomplete(self, kind: str, message: _Message, reason: str) -> None:
        self._report(kind, message.peer, f"incomplete message ({message.progress()}): {reason}")

    def _close(
        self,
        selector: selectors.BaseSelector,
        messages: dict[socket.socket, _Message],
        message: _Message,
    ) -> None:
        del messages[message.sock]
        selector.unregister(message.sock)
        message.sock.close()


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
    key = _load_secret(secret)
    family, address = _parse_host(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        msg = f"port: {port!r} is not a TCP port number (0 to 65535)"
        raise ValueError(msg)
    if not _positive(max_age):
        msg = f"max_age: {max_age!r} is not a positive number of seconds"
        raise ValueError(msg)
    if not _positive(read_timeout):
        msg = f"read_timeout: {read_timeout!r} is not a positive number of seconds"
        raise ValueError(msg)
    if not _positive(report_interval):
        msg = f"report_interval: {report_interval!r} is not a positive number of seconds"
        raise ValueError(msg)
    verifier = _Verifier(key, allow_full_config=allow_full_config, max_age=float(max_age))
    sock = _listen(family, address, port)
    where = _show_address(sock.getsockname())
    server = ConfigServer(
        sock, verifier, read_timeout=float(read_timeout), report_interval=float(report_interval)
    )
    server._start()  # noqa: SLF001 - this module's own class; its constructor starts nothing
    mode = "full dictConfig allowed" if allow_full_config else "level changes only"
    _log.info("listening for signed configurations on %s (%s)", where, mode)
    return server


def push(
    config: Mapping[str, Any],
    *,
    secret: bytes | str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    timeout: float = 5.0,
) -> None:
    """
    Sign ``config`` and send it to the :func:`config_server` at ``host:port``.

    Returns once the application has handled the message and closed the connection. The
    protocol has no reply: whether the configuration was applied or rejected, and why, is in
    the application's log (logger ``ctxlog.config``).

    Args:
        config: A dictConfig with ``"version": 1``.
        secret: The secret the application was started with (bytes, str or a file's path).
        host: The application's host (usually 127.0.0.1, or the local end of a tunnel).
        port: The application's port.
        timeout: Seconds allowed for everything: looking up ``host``, connecting, sending, and
            the application closing the connection. One deadline for all of it: a peer that
            keeps sending bytes, or never closes, cannot make it wait longer.

    Raises:
        ValueError: If the secret, the configuration or ``timeout`` is not acceptable.
        OSError: If the application cannot be reached (``TimeoutError``, saying which step
            ran out of time, if it is too slow).

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
       ``timeout`` is one deadline for the whole exchange, not a limit per socket call.
    """
    key = _load_secret(secret)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        msg = f"port: {port!r} is not a TCP port number (1 to 65535)"
        raise ValueError(msg)
    if not isinstance(config, Mapping) or config.get("version") != _VERSION:
        msg = 'the configuration must be a dictConfig object with "version": 1'
        raise ValueError(msg)
    if not _positive(timeout):
        msg = f"timeout: {timeout!r} is not a positive number of seconds"
        raise ValueError(msg)
    payload = _seal(config, key)
    if len(payload) > MAX_PAYLOAD:
        msg = f"the signed configuration is {len(payload)} bytes; the limit is {MAX_PAYLOAD}"
        raise ValueError(msg)
    deadline = _Deadline(timeout, _show_address((host, port)))
    with _connect(host, port, deadline) as sock:
        step = "did not take the message"
        sock.settimeout(deadline.remaining(step))
        try:
            sock.sendall(struct.pack(">L", len(payload)) + payload)
            sock.shutdown(socket.SHUT_WR)
        except TimeoutError:
            raise deadline.expired(step) from None
        # The application closes once it has handled the message; it sends nothing.
        received = 0
        while True:
            step = f"did not close the connection (it sent {received} bytes back)"
            sock.settimeout(deadline.remaining(step))
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                raise deadline.expired(step) from None
            if not chunk:
                return
            received += len(chunk)


class _Deadline:
    """One deadline for the whole of push(): each step gets what is left of it."""

    def __init__(self, timeout: float, where: str) -> None:
        self.timeout = timeout
        self.where = where
        self._end = time.monotonic() + timeout

    def remaining(self, step: str) -> float:
        """Return the seconds left; raise TimeoutError naming ``step`` if none are."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise self.expired(step)
        return left

    def expired(self, step: str) -> TimeoutError:
        return TimeoutError(f"{self.where} {step} within {self.timeout:g} s")


def _connect(host: str, port: int, deadline: _Deadline) -> socket.socket:
    """Connect to ``host:port`` within the deadline, looking the name up within it too."""
    addresses = _resolve(host, port, deadline)
    error: OSError = OSError(f"{host!r} has no address")
    step = "did not accept the connection"
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.remaining(step))
            sock.connect(address)
        except TimeoutError:
            sock.close()
            raise deadline.expired(step) from None
        except OSError as failed:
            sock.close()
            error = failed
        else:
            return sock
    raise error


_AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


def _resolve(host: str, port: int, deadline: _Deadline) -> Sequence[_AddrInfo]:
    """Return the addresses of ``host``; a name is looked up in a thread, within the deadline."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # an address: nothing to look up
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[Sequence[_AddrInfo] | OSError] = []

    def look_up() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as error:
            found.append(error)

    # getaddrinfo() has no timeout; a lookup that outlives the deadline ends on its own.
    thread = threading.Thread(target=look_up, name="ctxlog config push: lookup", daemon=True)
    thread.start()
    step = "could not be looked up"
    thread.join(deadline.remaining(step))
    if not found:
        raise deadline.expired(step)
    result = found[0]
    if isinstance(result, OSError):
        raise result
    return result


def push_main(args: argparse.Namespace) -> int:
    """
    Run ``ctxlog config push``; return the exit status.

    0: sent and handled by the application (its log says whether it was applied); 1: the
    application could not be reached; 2: the file, the secret or an option is not usable.
    """
    try:
        secret = _read_secret_file(args.secret_file)
        config = _read_config_file(args.file)
        push(config, secret=secret, host=args.host, port=args.port, timeout=args.timeout)
    except ValueError as error:
        sys.stderr.write(f"ctxlog config push: {error}\n")
        return 2
    except TimeoutError as error:
        sys.stderr.write(
            f"ctxlog config push: {error}; gave up (--timeout {args.timeout:g}). If the "
            "message was sent, the application's log says whether it was applied\n"
        )
        return 1
    except OSError as error:
        reason = error.strerror or str(error)
        sys.stderr.write(f"ctxlog config push: cannot send to {args.host}:{args.port}: {reason}\n")
        return 1
    sys.stdout.write(
        f"sent {args.file} to {args.host}:{args.port}; the application logs whether it "
        "applied it (logger ctxlog.config)\n"
    )
    return 0


class _Verifier:
    """The checks a payload must pass, and the configuration it yields; in the listener's thread."""

    def __init__(self, key: bytes, *, allow_full_config: bool, max_age: float) -> None:
        self._key = key
        self._full = allow_full_config
        self._max_age = max_age
        self._clock: Callable[[], float] = time.time
        self._lock = threading.Lock()
        self._nonces: dict[str, float] = {}

    def __call__(self, payload: bytes, peer: str) -> tuple[bytes, str]:
        """
        Return the configuration to apply, as JSON, and its summary.

        Raises:
            _RejectedError: The message is not to be applied; it says why.
        """
        config, summary = self._check(payload)
        _log.debug("configuration accepted from %s, applying %s", peer, summary)
        result = json.dumps(config, separators=(",", ":"), sort_keys=True).encode("ascii")
        return result, summary

    def _check(self, payload: bytes) -> tuple[dict[str, Any], str]:
        if len(payload) > MAX_PAYLOAD:
            msg = f"{len(payload)} bytes is over the limit of {MAX_PAYLOAD}"
            raise _RejectedError(_TOO_LARGE, msg)
        if len(payload) <= TAG_SIZE:
            msg = f"{len(payload)} bytes is too short to carry a signature"
            raise _RejectedError(_TOO_SHORT, msg)
        tag, body = payload[:TAG_SIZE], payload[TAG_SIZE:]
        expected = hmac.new(self._key, body, hashlib.sha256).digest()
        if not hmac.compare_digest(tag, expected):
            msg = "bad signature (unsigned, altered, or signed with another secret)"
            raise _RejectedError(_BAD_SIGNATURE, msg)
        envelope = _parse_envelope(body)
        self._check_fresh(envelope["ts"], envelope["nonce"])
        config = envelope["config"]
        if self._full:
            return config, f"a full dictConfig ({', '.join(sorted(config)) or 'empty'})"
        return _levels_only(config)

    def _check_fresh(self, ts: float, nonce: str) -> None:
        now = self._clock()
        if now - ts > self._max_age:
            msg = f"timestamp is {now - ts:.1f} s old, over max_age {self._max_age:g} s"
            raise _RejectedError(_STALE, msg)
        if ts - now > self._max_age:
            msg = f"timestamp is {ts - now:.1f} s in the future, over max_age {self._max_age:g} s"
            raise _RejectedError(_STALE, msg)
        with self._lock:
            # A nonce older than the window can go: its message fails the age check anyway.
            horizon = now - self._max_age
            for old in [n for n, seen in self._nonces.items() if seen < horizon]:
                del self._nonces[old]
            if nonce in self._nonces:
                msg = "replayed: this message (its nonce) was already received"
                raise _RejectedError(_REPLAYED, msg)
            if len(self._nonces) >= MAX_NONCES:
                msg = f"more than {MAX_NONCES} configurations within max_age"
                raise _RejectedError(_TOO_MANY_MESSAGES, msg)
            self._nonces[nonce] = ts


def _parse_envelope(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        msg = f"signed, but not JSON: {error}"
        raise _RejectedError(_MALFORMED, msg) from None
    if not isinstance(envelope, dict):
        msg = f"signed, but a JSON {type(envelope).__name__}, not an object"
        raise _RejectedError(_MALFORMED, msg)
    if set(envelope) != _ENVELOPE_KEYS:
        msg = f"the message's keys are {sorted(envelope)}, not {sorted(_ENVELOPE_KEYS)}"
        raise _RejectedError(_MALFORMED, msg)
    if envelope["v"] != _VERSION or isinstance(envelope["v"], bool):
        msg = f"message version {envelope['v']!r} is not supported (only 1)"
        raise _RejectedError(_MALFORMED, msg)
    ts = envelope["ts"]
    try:
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            raise OverflowError  # noqa: TRY301 - one message for every kind of bad number
        envelope["ts"] = float(ts)
    except OverflowError:
        msg = f"ts: {_show(ts)} is not a number of seconds"
        raise _RejectedError(_MALFORMED, msg) from None
    nonce = envelope["nonce"]
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        msg = f"nonce: {_show(nonce)} is not 32 lowercase hex digits"
        raise _RejectedError(_MALFORMED, msg)
    config = envelope["config"]
    if not isinstance(config, dict):
        msg = f"config: a JSON {type(config).__name__}, not an object"
        raise _RejectedError(_MALFORMED, msg)
    version = config.get("version")
    if version != _VERSION or isinstance(version, bool):
        msg = f'config: "version" is {_show(version)}; dictConfig needs 1'
        raise _RejectedError(_MALFORMED, msg)
    return envelope


def _levels_only(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Return an incremental dictConfig of the levels in ``config``, or reject it."""
    hint = "only level changes are accepted (the application did not allow full configurations)"
    for key in config:
        if key not in _LEVELS_ONLY_KEYS:
            msg = f"key {_show(key)}: {hint}"
            raise _RejectedError(_NOT_ALLOWED, msg)
    if config.get("incremental", True) is not True:
        msg = f'"incremental" must be true or absent: {hint}'
        raise _RejectedError(_NOT_ALLOWED, msg)
    built: dict[str, Any] = {"version": _VERSION, "incremental": True}
    changes: list[str] = []
    if "root" in config:
        built["root"] = {"level": _level_of("root", config["root"], hint)}
        changes.append(f"root={built['root']['level']}")
    for section in ("loggers", "handlers"):
        if section not in config:
            continue
        entries = config[section]
        if not isinstance(entries, dict):
            msg = f"{section}: a JSON {type(entries).__name__}, not an object"
            raise _RejectedError(_NOT_ALLOWED, msg)
        if len(entries) > MAX_NAMES:
            msg = f"{section}: {len(entries)} names, over the limit of {MAX_NAMES}"
            raise _RejectedError(_NOT_ALLOWED, msg)
        levels: dict[str, Any] = {}
        for name, entry in entries.items():
            where = f"{section}.{_show(name)}"
            if not name or len(name) > 200 or not name.isprintable():
                msg = f"{where}: not a usable {section[:-1]} name"
                raise _RejectedError(_NOT_ALLOWED, msg)
            levels[name] = {"level": _level_of(where, entry, hint)}
            if section == "handlers" and not _handler_exists(name):
                msg = f"{where}: this application has no handler of that name"
                raise _RejectedError(_NOT_ALLOWED, msg)
            changes.append(f"{section[:-1]} {name}={levels[name]['level']}")
        built[section] = levels
    return built, "level changes: " + (", ".join(changes) or "none")


def _level_of(where: str, entry: object, hint: str) -> str | int:
    if not isinstance(entry, dict):
        msg = f"{where}: a JSON {type(entry).__name__}, not an object"
        raise _RejectedError(_NOT_ALLOWED, msg)
    for key in entry:
        if key != "level":
            msg = f"{where}: key {_show(key)}: {hint}"
            raise _RejectedError(_NOT_ALLOWED, msg)
    if "level" not in entry:
        msg = f'{where}: no "level"'
        raise _RejectedError(_NOT_ALLOWED, msg)
    level = entry["level"]
    names = logging.getLevelNamesMapping()
    if isinstance(level, str):
        for candidate in (level, level.upper()):
            if candidate in names:
                return candidate
    elif isinstance(level, int) and not isinstance(level, bool) and 0 <= level <= 100:
        name = logging.getLevelName(level)
        # dictConfig skips a handler level that is falsy, so 0 travels as "NOTSET".
        return name if name in names else level
    msg = f"{where}: level {_show(level)} is not a level name or a number from 0 to 100"
    raise _RejectedError(_NOT_ALLOWED, msg)


def _handler_exists(name: str) -> bool:
    if sys.version_info >= (3, 12):
        return logging.getHandlerByName(name) is not None
    # 3.11 has no public lookup; incremental dictConfig itself looks in this dict.
    named: Mapping[str, logging.Handler] = vars(logging)["_handlers"]
    return name in named


def _seal(
    config: Mapping[str, Any], key: bytes, *, ts: float | None = None, nonce: str | None = None
) -> bytes:
    """Return the payload (tag and body) carrying ``config``, signed with ``key``."""
    envelope = {
        "v": _VERSION,
        "ts": time.time() if ts is None else ts,
        "nonce": secrets.token_hex(16) if nonce is None else nonce,
        "config": config,
    }
    try:
        body = json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as error:
        msg = f"the configuration cannot be sent as JSON: {error}"
        raise ValueError(msg) from None
    return hmac.new(key, body, hashlib.sha256).digest() + body


def _load_secret(secret: bytes | str | os.PathLike[str]) -> bytes:
    if isinstance(secret, os.PathLike):
        return _read_secret_file(os.fspath(secret))
    if isinstance(secret, str):
        key = secret.encode("utf-8")
    elif isinstance(secret, bytes):
        key = secret
    else:
        msg = f"secret: {type(secret).__name__} is not bytes, str or a path"
        raise TypeError(msg)
    if len(key) < MIN_SECRET:
        msg = (
            f"secret: {len(key)} bytes is too short; use at least {MIN_SECRET} random bytes "
            '(for example python -c "import secrets; print(secrets.token_hex(32))")'
        )
        raise ValueError(msg)
    return key


def _read_secret_file(path: str) -> bytes:
    try:
        key = Path(path).read_bytes()
    except OSError as error:
        msg = f"cannot read the secret file {path!r}: {error.strerror or error}"
        raise ValueError(msg) from None
    key = key.removesuffix(b"\n").removesuffix(b"\r")
    if len(key) < MIN_SECRET:
        msg = f"the secret in {path!r} is {len(key)} bytes; use at least {MIN_SECRET} random bytes"
        raise ValueError(msg)
    return key


def _read_config_file(path: str) -> dict[str, Any]:
    suffix = Path(path).suffix.lower()
    if suffix not in {".json", ".toml"}:
        msg = f"{path!r}: give a .json or a .toml file"
        raise ValueError(msg)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else error
        msg = f"cannot read {path!r}: {reason or error}"
        raise ValueError(msg) from None
    try:
        config = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except ValueError as error:
        msg = f"{path!r} is not valid {suffix[1:].upper()}: {error}"
        raise ValueError(msg) from None
    if not isinstance(config, dict):
        msg = f"{path!r} holds a {type(config).__name__}, not a dictConfig object"
        raise ValueError(msg)  # noqa: TRY004 - a file's content: a usage error, exit status 2
    return config


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
        where = _show_address((address, port))
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


def _show_address(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _no_constant(name: str) -> None:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
