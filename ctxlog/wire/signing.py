"""
Signed frames (version 2): the sender's stamp and HMAC-SHA256 tag, made and checked.

A sender with a key puts 64 bytes between header and body: who signed (a random sender id),
a sequence number, the time of signing, and a tag over all of it and the body. :class:`Signer`
makes them; :func:`verify` checks them on the receiving side, in constant time, then hands the
stamp to a :class:`~ctxlog.wire.replay.Replay` so that no frame is taken twice.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
import time
from typing import Final

from ctxlog.wire.frame import MAGIC, REPLAY_VERSION, SIGNATURE_SIZE, SIGNED, WireError
from ctxlog.wire.replay import Replay

__all__ = ["Signer", "verify"]

#: Header, sender, sequence and time: the bytes a version 2 tag covers before the body.
_SIGNED_HEAD: Final = struct.Struct(">2sBBI16sQQ")
_STAMP: Final = struct.Struct(">16sQQ")
_STAMP_SIZE: Final = _STAMP.size


class Signer:
    """
    Sign frames for one sender: a random sender id, a sequence number and the time of signing.

    Sign a frame when it is sent, not when its record is logged: a frame kept while the
    receiver was away then carries the time it left, and a receiver takes it however long it
    waited. A process forked from the one that made the signer signs under a new sender id
    (checked on every call), so two processes never share a sequence. Not thread-safe: call
    :meth:`sign` under the lock of the handler that sends.

    Args:
        key: The key shared with the receiver.

    .. versionadded:: 0.3.0
    """

    def __init__(self, key: bytes) -> None:
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._pid = 0
        self.sender = b""
        self.sequence = 0

    def sign(self, body: bytes) -> bytes:
        """Return a signed version 2 frame around ``body``, with the next sequence number."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self.sender = os.urandom(16)
            self.sequence = 0
        sequence = self.sequence
        self.sequence = sequence + 1
        head = _SIGNED_HEAD.pack(
            MAGIC,
            REPLAY_VERSION,
            SIGNED,
            len(body),
            self.sender,
            sequence,
            time.time_ns() // 1_000_000,
        )
        mac = self._mac.copy()
        mac.update(head)
        mac.update(body)
        return head + mac.digest() + body


def verify(
    header: bytes,
    body: bytes,
    signature: bytes | None,
    *,
    size: int,
    key: bytes,
    replay: Replay | None,
) -> None:
    """
    Check a frame's signature against ``key``, then its stamp against ``replay`` if given.

    ``size`` is the signature size :func:`~ctxlog.wire.frame.read_header` read from the header.

    Raises:
        WireError: Unsigned, signed without a stamp (version 1), or a tag that does not match.
        ReplayError: A valid frame seen before, or signed outside the replay window.
    """
    if not size or signature is None:
        msg = "unsigned frame: a key is required"
        raise WireError(msg)
    if size != SIGNATURE_SIZE:
        msg = (
            "signed frame of version 1 has no sender, sequence or time to stop a replay; "
            "the sender needs ctxlog 0.3 or later"
        )
        raise WireError(msg)
    if len(signature) != SIGNATURE_SIZE:
        msg = f"signature is {len(signature)} bytes, not {SIGNATURE_SIZE}"
        raise WireError(msg)
    stamp = signature[:_STAMP_SIZE]
    mac = _keyed(key).copy()
    mac.update(header)
    mac.update(stamp)
    mac.update(body)
    if not hmac.compare_digest(mac.digest(), signature[_STAMP_SIZE:]):
        msg = "bad signature"
        raise WireError(msg)
    if replay is not None:
        replay.check(*_STAMP.unpack(stamp))


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    # HMAC with the key already mixed in: a copy per frame skips hashing the key twice.
    return hmac.new(key, digestmod=hashlib.sha256)
