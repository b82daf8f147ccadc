"""
The protocol of live configuration, shared by the listener and :func:`ctxlog.liveconfig.push`.

A message is a 4-byte length, then the *payload*: an HMAC-SHA256 tag, then a JSON body holding
the configuration with a timestamp and a nonce (the format is in :mod:`ctxlog.liveconfig`). This
module holds the limits both ends agree on, the secret that signs a message, :func:`seal` (what
``push`` sends) and :func:`open_envelope` (the listener's check of a signed body's shape), the
reasons a message is rejected for, and how values are shown in those reasons.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging.config
import math
import os
import re
import secrets
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

__all__ = [
    "BAD_SIGNATURE",
    "DEFAULT_PORT",
    "INCOMPLETE",
    "LENGTH",
    "MALFORMED",
    "MAX_PAYLOAD",
    "MIN_SECRET",
    "NOT_ALLOWED",
    "REPLAYED",
    "STALE",
    "TAG_SIZE",
    "TIMED_OUT",
    "TOO_LARGE",
    "TOO_MANY_CONNECTIONS",
    "TOO_MANY_MESSAGES",
    "TOO_SHORT",
    "VERSION",
    "RejectedError",
    "load_secret",
    "open_envelope",
    "positive",
    "read_secret_file",
    "seal",
    "show",
    "show_address",
]

#: The port of the standard library's configuration listener, and ctxlog's default.
DEFAULT_PORT: Final = logging.config.DEFAULT_LOGGING_CONFIG_PORT
#: The largest payload (tag and body) accepted, in bytes.
MAX_PAYLOAD: Final = 1024 * 1024
#: The shortest secret accepted, in bytes.
MIN_SECRET: Final = 16
#: The size of the HMAC-SHA256 tag that starts a payload.
TAG_SIZE: Final = 32
#: The version of the message, and the only dictConfig version.
VERSION: Final = 1
#: The length that comes before a payload: 4 bytes, unsigned, big-endian.
LENGTH: Final = struct.Struct(">L")

#: The reasons a message is rejected for, as counted in ConfigServer.rejected.
TOO_LARGE: Final = "too large"
TIMED_OUT: Final = "timed out"
INCOMPLETE: Final = "incomplete"
TOO_MANY_CONNECTIONS: Final = "too many connections"
TOO_SHORT: Final = "too short"
BAD_SIGNATURE: Final = "bad signature"
MALFORMED: Final = "malformed"
STALE: Final = "stale"
REPLAYED: Final = "replayed"
TOO_MANY_MESSAGES: Final = "too many messages"
NOT_ALLOWED: Final = "not allowed"

_ENVELOPE_KEYS: Final = frozenset({"v", "ts", "nonce", "config"})
_NONCE: Final = re.compile(r"[0-9a-f]{32}")


class RejectedError(Exception):
    """A message that is not applied: the kind of reason (counted), and what exactly."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


# -- the secret -------------------------------------------------------------------------------


def load_secret(secret: bytes | str | os.PathLike[str]) -> bytes:
    """
    Return the key ``secret`` gives: bytes as they are, a str as UTF-8, a path's file content.

    Raises:
        ValueError: The key is shorter than :data:`MIN_SECRET`, or its file cannot be read.
        TypeError: ``secret`` is not bytes, a str or a path.
    """
    if isinstance(secret, os.PathLike):
        return read_secret_file(os.fspath(secret))
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


def read_secret_file(path: str) -> bytes:
    """
    Return the key held in the file at ``path``, without one trailing newline.

    Raises:
        ValueError: The file cannot be read, or holds fewer than :data:`MIN_SECRET` bytes.
    """
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


# -- the message ------------------------------------------------------------------------------


def seal(
    config: Mapping[str, Any], key: bytes, *, ts: float | None = None, nonce: str | None = None
) -> bytes:
    """
    Return the payload (tag and body) carrying ``config``, signed with ``key``.

    Raises:
        ValueError: ``config`` cannot be written as JSON.
    """
    envelope = {
        "v": VERSION,
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


def open_envelope(body: bytes) -> dict[str, Any]:
    """
    Return the envelope a signed ``body`` holds, its ``ts`` made a float.

    Raises:
        RejectedError: The body is not an envelope of the documented shape (``"malformed"``).
    """
    try:
        envelope = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        msg = f"signed, but not JSON: {error}"
        raise RejectedError(MALFORMED, msg) from None
    if not isinstance(envelope, dict):
        msg = f"signed, but a JSON {type(envelope).__name__}, not an object"
        raise RejectedError(MALFORMED, msg)
    if set(envelope) != _ENVELOPE_KEYS:
        msg = f"the message's keys are {sorted(envelope)}, not {sorted(_ENVELOPE_KEYS)}"
        raise RejectedError(MALFORMED, msg)
    if envelope["v"] != VERSION or isinstance(envelope["v"], bool):
        msg = f"message version {envelope['v']!r} is not supported (only 1)"
        raise RejectedError(MALFORMED, msg)
    envelope["ts"] = _seconds(envelope["ts"])
    nonce = envelope["nonce"]
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        msg = f"nonce: {show(nonce)} is not 32 lowercase hex digits"
        raise RejectedError(MALFORMED, msg)
    config = envelope["config"]
    if not isinstance(config, dict):
        msg = f"config: a JSON {type(config).__name__}, not an object"
        raise RejectedError(MALFORMED, msg)
    version = config.get("version")
    if version != VERSION or isinstance(version, bool):
        msg = f'config: "version" is {show(version)}; dictConfig needs 1'
        raise RejectedError(MALFORMED, msg)
    return envelope


def _seconds(ts: object) -> float:
    try:
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            raise OverflowError  # noqa: TRY301 - one message for every kind of bad number
        return float(ts)
    except OverflowError:
        msg = f"ts: {show(ts)} is not a number of seconds"
        raise RejectedError(MALFORMED, msg) from None


def _no_constant(name: str) -> None:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


# -- showing values ---------------------------------------------------------------------------


def show(value: object) -> str:
    """Return ``repr(value)``, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def show_address(address: tuple[Any, ...]) -> str:
    """Return ``host:port``, with an IPv6 host in brackets."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def positive(value: object) -> bool:
    """Return whether ``value`` is a finite number above 0 (not a bool)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
