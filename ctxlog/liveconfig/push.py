"""
The push client: sign a configuration and send it to a running listener, within one deadline.

:func:`push` is what ``ctxlog config push`` calls. It seals the configuration with the secret
(:func:`ctxlog.liveconfig.protocol.seal`), connects, sends the length and the payload, and
waits for the application to close the connection, which it does once it has handled the
message. ``timeout`` is one deadline for all of it, name lookup included: each step gets what
is left, and the :class:`TimeoutError` raised names the step that ran out of time.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ctxlog.liveconfig.protocol import (
    DEFAULT_PORT,
    LENGTH,
    MAX_PAYLOAD,
    VERSION,
    load_secret,
    positive,
    seal,
    show_address,
)

__all__ = ["push"]


def push(
    config: Mapping[str, Any],
    *,
    secret: bytes | str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    timeout: float = 5.0,
) -> None:
    """
    Sign ``config`` and send it to the :func:`ctxlog.config_server` at ``host:port``.

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
    key = load_secret(secret)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        msg = f"port: {port!r} is not a TCP port number (1 to 65535)"
        raise ValueError(msg)
    if not isinstance(config, Mapping) or config.get("version") != VERSION:
        msg = 'the configuration must be a dictConfig object with "version": 1'
        raise ValueError(msg)
    if not positive(timeout):
        msg = f"timeout: {timeout!r} is not a positive number of seconds"
        raise ValueError(msg)
    payload = seal(config, key)
    if len(payload) > MAX_PAYLOAD:
        msg = f"the signed configuration is {len(payload)} bytes; the limit is {MAX_PAYLOAD}"
        raise ValueError(msg)
    deadline = _Deadline(timeout, show_address((host, port)))
    with _connect(host, port, deadline) as sock:
        _send(sock, LENGTH.pack(len(payload)) + payload, deadline)
        _wait_for_close(sock, deadline)


def _send(sock: socket.socket, message: bytes, deadline: _Deadline) -> None:
    """Send the whole message, then end the sending half of the connection."""
    step = "did not take the message"
    sock.settimeout(deadline.remaining(step))
    try:
        sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
    except TimeoutError:
        raise deadline.expired(step) from None


def _wait_for_close(sock: socket.socket, deadline: _Deadline) -> None:
    """Wait for the application to close the connection, once it has handled the message."""
    # It sends nothing; whatever it sends is read and counted, within the same deadline.
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
