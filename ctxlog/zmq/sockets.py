"""
ZeroMQ sockets as ctxlog opens them: the options both ends check, and what a fork leaves behind.

:class:`~ctxlog.zmq.ZMQQueueHandler` and :class:`~ctxlog.zmq.ZMQQueueListener` check their
options here (an endpoint string, a socket type of their end, a secret of at least 16 bytes),
open their data socket with :func:`open_socket`, and in a forked child set the parent's sockets
aside with :func:`set_aside`: a ZeroMQ socket must not be used after ``fork()``, not even closed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from typing import Final

import zmq

__all__ = [
    "RECEIVER_TYPES",
    "REPORT_INTERVAL",
    "SENDER_TYPES",
    "check_address",
    "check_positive_int",
    "check_secret",
    "check_socket_type",
    "open_socket",
    "peer_of",
    "set_aside",
]

#: The socket types of the sending end, and their names.
SENDER_TYPES: Final = {int(zmq.PUSH): "PUSH", int(zmq.PUB): "PUB"}
#: The socket types of the receiving end, and their names.
RECEIVER_TYPES: Final = {int(zmq.PULL): "PULL", int(zmq.SUB): "SUB"}
#: Drop and rejection reports on stderr: at most one line per this many seconds.
REPORT_INTERVAL: Final = 60.0

_ENDPOINT: Final = re.compile(r"[a-z][a-z0-9+.-]*://\S+")

#: Sockets and contexts inherited from a parent process. They belong to the parent: the child
#: must neither use nor close them, and must not let them be garbage collected (pyzmq would
#: warn about an unclosed socket). They are kept here for the life of the process.
_inherited: list[object] = []


def check_address(owner: str, address: object) -> str:
    """
    Return ``address`` if it is a ZeroMQ endpoint string.

    Raises:
        TypeError: ``address`` is not a string.
        ValueError: ``address`` is not shaped like ``transport://where``.
    """
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


def check_secret(owner: str, secret: bytes | str | None) -> bytes | None:
    """
    Return ``secret`` as bytes (a ``str`` encoded as UTF-8), or ``None``.

    Raises:
        ValueError: The secret is shorter than 16 bytes.
    """
    if isinstance(secret, str):
        secret = secret.encode()
    if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
        msg = f"{owner}: secret must be at least 16 bytes (use a random key)"
        raise ValueError(msg)
    return secret


def check_positive_int(owner: str, name: str, value: object) -> int:
    """
    Return ``value`` if it is an integer of 1 or more.

    Raises:
        ValueError: It is not (a bool is not).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{owner}: {name}={value!r} is not a positive integer"
        raise ValueError(msg)
    return value


def check_socket_type(owner: str, socket_type: object, allowed: dict[int, str]) -> int:
    """
    Return ``socket_type`` if it is one of ``allowed``.

    Raises:
        ValueError: It is not.
    """
    if (
        isinstance(socket_type, bool)
        or not isinstance(socket_type, int)
        or socket_type not in allowed
    ):
        names = " or ".join(f"zmq.{name}" for name in allowed.values())
        msg = f"{owner}: socket_type={socket_type!r} is not {names}"
        raise ValueError(msg)
    return int(socket_type)


def open_socket(
    context: zmq.Context[zmq.Socket[bytes]],
    socket_type: int,
    address: str,
    *,
    bind: bool,
    options: Iterable[tuple[int, int | bytes]],
) -> tuple[zmq.Socket[bytes], str]:
    """
    Open a socket of ``context``, set ``options`` on it, bind or connect it to ``address``.

    Returns:
        The socket, and its endpoint (with the real port of a ``:*`` wildcard).

    Raises:
        zmq.ZMQError: The address cannot be bound or connected to. The socket is left to the
            caller's context, which the caller destroys.
    """
    sock = context.socket(socket_type)
    for option, value in options:
        sock.setsockopt(option, value)
    if bind:
        sock.bind(address)
    else:
        sock.connect(address)
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
    return sock, endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)


def set_aside(*inherited: object) -> None:
    """Keep the sockets and context a forked child inherited, unused, for the process's life."""
    _inherited.append(inherited)


def peer_of(frame: zmq.Frame) -> str | None:
    """Return the address ZeroMQ says ``frame`` came from, or ``None`` (inproc, ipc)."""
    with contextlib.suppress(zmq.ZMQError, ValueError, TypeError, UnicodeError):
        peer = frame.get("Peer-Address")
        if isinstance(peer, bytes):
            peer = peer.decode()
        return str(peer) or None
    return None
