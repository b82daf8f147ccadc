"""
The frame around a body: its 8-byte header, the size cap, and the unsigned frame.

Every frame starts with the same header (magic, version, flags, body length); a reader calls
:func:`read_header` on those 8 bytes first, so it knows how many bytes to wait for, and refuses
an oversized frame before it keeps a single byte of its body. What a signed frame carries
between header and body is :mod:`ctxlog.wire.signing`'s.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "MAX_BODY",
    "MAX_OVERHEAD",
    "REPLAY_VERSION",
    "SIGNATURE_SIZE",
    "SIGNED",
    "TAG_SIZE",
    "VERSION",
    "WireError",
    "read_header",
    "unsigned",
]

MAGIC: Final = b"CX"
VERSION: Final = 1
#: The version of a signed frame that carries a sender, a sequence number and a time.
REPLAY_VERSION: Final = 2
SIGNED: Final = 0x01
HEADER_SIZE: Final = 8
TAG_SIZE: Final = 32
#: What a signed version 2 frame carries between its header and its body: sender (16 bytes),
#: sequence (8), time (8) and tag (32).
SIGNATURE_SIZE: Final = 64
#: The most bytes a frame has besides its body.
MAX_OVERHEAD: Final = HEADER_SIZE + SIGNATURE_SIZE
#: The default cap on a frame's body.
MAX_BODY: Final = 1024 * 1024

_HEADER: Final = struct.Struct(">2sBBI")


class WireError(ValueError):
    """A frame that is not a valid ctxlog record; the message says why."""

    #: The kind of rejection, as a receiver counts it.
    reason = "bad frame"


def unsigned(body: bytes) -> bytes:
    """
    Return an unsigned (version 1) frame around ``body``.

    .. versionadded:: 0.3.0
    """
    return _HEADER.pack(MAGIC, VERSION, 0, len(body)) + body


def read_header(header: bytes, max_body: int = MAX_BODY) -> tuple[int, int]:
    """
    Check a frame header; return ``(signature_size, body_length)``.

    ``signature_size`` is the number of bytes between the header and the body: 0 for an
    unsigned frame, :data:`TAG_SIZE` for a signed version 1 frame, :data:`SIGNATURE_SIZE` for a
    signed version 2 frame.

    Raises:
        WireError: Not a ctxlog frame, an unknown version or flag, or a body over ``max_body``.

    .. versionchanged:: 0.3.0
       Returns the size of the signature instead of whether the frame is signed.
    """
    if len(header) != HEADER_SIZE:
        msg = f"header is {len(header)} bytes, not {HEADER_SIZE}"
        raise WireError(msg)
    magic, version, flags, length = _HEADER.unpack(header)
    if magic != MAGIC:
        msg = "not a ctxlog frame (bad magic)"
        raise WireError(msg)
    if version not in (VERSION, REPLAY_VERSION):
        msg = f"unknown frame version {version}"
        raise WireError(msg)
    if flags & ~SIGNED:
        msg = f"unknown frame flags {flags:#x}"
        raise WireError(msg)
    if length > max_body:
        msg = f"frame body of {length} bytes is over the limit of {max_body}"
        raise WireError(msg)
    if not flags:
        return 0, length
    return (SIGNATURE_SIZE if version == REPLAY_VERSION else TAG_SIZE), length
