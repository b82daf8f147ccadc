"""
The wire format of records sent between processes: length-prefixed JSON frames, no pickle.

Used by ``JSONSocketHandler``, ``ctxlog receive`` and the ZeroMQ classes. Defined once, here,
for both sides; another language can send records by following this description (the full
specification, with what signing guarantees, is ``docs/wire-format.md``).

Frame
-----
::

    magic     2 bytes   b"CX"
    version   1 byte    1, or 2 for a signed frame with replay protection
    flags     1 byte    bit 0: signed
    length    4 bytes   unsigned big-endian: the number of body bytes
    -- signed, version 2 (what ctxlog sends with a key):
    sender   16 bytes   random, chosen anew by each sending process
    sequence  8 bytes   unsigned big-endian: 0, 1, 2 ... for each frame the sender signs
    time      8 bytes   unsigned big-endian: milliseconds since the epoch, when it was signed
    tag      32 bytes   HMAC-SHA256(key, the 40 bytes above + body)
    -- signed, version 1 (ctxlog 0.2): only the tag, HMAC-SHA256(key, header + body)
    body     length bytes of UTF-8 JSON: one object

Unsigned frames are version 1 (a version 2 unsigned frame reads the same). With a key, a
receiver accepts signed version 2 frames only, and each (sender, sequence) once: see
:class:`Replay`.

Body
----
Required: ``name`` (str), ``levelno`` (int 0-100), ``msg`` (str: the message already merged with
its arguments; receivers never apply ``%`` to network data), ``created`` (number, seconds
since the epoch, before the year 10000). ``levelname`` is derived from ``levelno`` by the
receiver; a sent name is kept only for a level number the receiver has no name for, and only if
it is a plain ASCII name that does not read as a standard one. Optional strings: ``levelname``,
``pathname``, ``filename``, ``module``, ``funcName``, ``threadName``, ``processName``,
``taskName``, ``exc_text`` (a formatted traceback), ``stack_info``, and the context fields
``ip``, ``user``, ``request_id``, ``method``, ``path``. Optional integers: ``lineno``,
``process``, ``thread``. ``extra``: an object of at most 64 further fields, each an identifier
that is not a LogRecord attribute nor ``peer`` (the receiver's own: where the frame came from),
with a string, number, boolean or null value. Anything else makes the frame invalid. A missing
``process``, ``thread``, ``processName`` or ``threadName`` is ``"-"`` in the decoded record.

Security
--------
Decoding never runs code: JSON only, a hard size cap read from the header before any body byte
is read, a strict schema, no ``NaN``/``Infinity``, bounded nesting. With a key, a frame whose tag
does not match (or that carries none) is rejected; tags are compared in constant time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import math
import os
import re
import struct
import time
from typing import Any, Final, TypeGuard

from ctxlog.context import FIELDS, RESERVED

__all__ = [
    "HEADER_SIZE",
    "MAX_BODY",
    "MAX_OVERHEAD",
    "SIGNATURE_SIZE",
    "TAG_SIZE",
    "Replay",
    "ReplayError",
    "Signer",
    "WireError",
    "decode",
    "encode",
    "encode_body",
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
#: The most extra fields one record carries.
MAX_EXTRA: Final = 64
#: How many sequence numbers behind a sender's newest a :class:`Replay` still tells apart.
REORDER: Final = 1024
_ALL_SEEN: Final = (1 << REORDER) - 1

_HEADER: Final = struct.Struct(">2sBBI")
#: Header, sender, sequence and time: the bytes a version 2 tag covers before the body.
_SIGNED_HEAD: Final = struct.Struct(">2sBBI16sQQ")
_STAMP: Final = struct.Struct(">16sQQ")
_STAMP_SIZE: Final = _STAMP.size
_STRINGS: Final = (
    "levelname",
    "pathname",
    "filename",
    "module",
    "funcName",
    "threadName",
    "processName",
    "taskName",
    "exc_text",
    "stack_info",
    *FIELDS,
)
_INTEGERS: Final = ("lineno", "process", "thread")
#: 10000-01-01T00:00:00Z: formatting a later time fails, so such a record is invalid.
_LATEST: Final = 253402300800.0
_PLAIN: Final = (str, int, float, bool, type(None))
_KNOWN: Final = frozenset({"name", "levelno", "msg", "created", "extra", *_STRINGS, *_INTEGERS})
_STRING_KEYS: Final = frozenset(_STRINGS)
_INTEGER_KEYS: Final = frozenset(_INTEGERS)
#: Where a receiver says a frame came from; never taken from, nor sent in, a frame.
_PEER: Final = "peer"
#: Record attributes that never travel in ``extra``.
_NOT_EXTRA: Final = RESERVED | _KNOWN | {_PEER}
_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":"), check_circular=False
)
#: For the rare record whose text is not valid UTF-8 (a lone surrogate): every character that
#: is not ASCII goes as a JSON ``\\uXXXX`` escape, which carries a lone surrogate too.
_ASCII_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, default=str, separators=(",", ":"), check_circular=False
)
#: Who sent a record, when the frame does not say: never the receiver's own process or thread.
_UNKNOWN_ORIGIN: Final = dict.fromkeys(("process", "thread", "processName", "threadName"), "-")
#: The attributes of a record made by ``logging.makeLogRecord({})``, without this process's
#: identity: a decoded record's base.
_TEMPLATE: Final = {**logging.makeLogRecord({}).__dict__, **_UNKNOWN_ORIGIN}

#: A level name a sender may give a level number the receiver has no name for.
_CUSTOM_LEVEL: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
#: Characters that read alike in a level name (``ERR0R``, ``CRlTICAL``, ``WARN_ING``).
_ALIKE: Final = str.maketrans("0134578L", "OIEASTBI", "_")
#: Standard level names and "LEVEL" (the start of the name of an unnamed level), as they read.
_LOOKS_STANDARD: Final = frozenset(
    name.translate(_ALIKE)
    for name in ("CRITICAL", "FATAL", "ERROR", "WARN", "WARNING", "INFO", "DEBUG", "NOTSET")
)
_LOOKS_UNNAMED: Final = "LEVEL".translate(_ALIKE)


class WireError(ValueError):
    """A frame that is not a valid ctxlog record; the message says why."""

    #: The kind of rejection, as a receiver counts it.
    reason = "bad frame"


class ReplayError(WireError):
    """
    A signed frame that is valid but was seen before, or signed outside the replay window.

    .. versionadded:: 0.3.0
    """

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


def encode_body(record: logging.LogRecord) -> bytes:
    """
    Return ``record`` as the JSON body of a frame.

    The message is merged with its arguments, a traceback becomes text, and extra attributes
    that are not plain data (or are floats that JSON cannot carry) are sent as their ``str()``.
    Text that UTF-8 cannot encode (a lone surrogate) is sent as JSON escapes, so it arrives as
    it was.

    .. versionadded:: 0.3.0
    """
    attrs = record.__dict__
    body: dict[str, Any] = {
        "name": str(record.name),
        "levelno": int(record.levelno),
        "msg": record.getMessage(),
        "created": float(record.created),
    }
    for name in _STRINGS:
        value = attrs.get(name)
        if value is not None:
            body[name] = value if type(value) is str else str(value)
    for name in _INTEGERS:
        value = attrs.get(name)
        if type(value) is int:
            body[name] = value
    if record.exc_info and "exc_text" not in body:
        body["exc_text"] = logging.Formatter().formatException(record.exc_info)
    extra = [name for name in attrs if name not in _NOT_EXTRA]
    if extra:
        plain: dict[str, Any] = {}
        for name in extra:
            if name in body or not name.isidentifier():
                continue
            value = attrs[name]
            if not isinstance(value, _PLAIN) or (type(value) is float and not math.isfinite(value)):
                value = str(value)
            plain[name] = value
            if len(plain) == MAX_EXTRA:
                break
        if plain:
            body["extra"] = plain
    text = _ENCODER.encode(body)
    try:
        payload = text.encode()
    except UnicodeEncodeError:
        payload = _ASCII_ENCODER.encode(body).encode()
    if len(payload) > 0xFFFFFFFF:  # pragma: no cover - a 4 GiB record
        msg = "record too large for one frame"
        raise WireError(msg)
    return payload


def unsigned(body: bytes) -> bytes:
    """
    Return an unsigned (version 1) frame around ``body``.

    .. versionadded:: 0.3.0
    """
    return _HEADER.pack(MAGIC, VERSION, 0, len(body)) + body


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


def encode(record: logging.LogRecord, signer: Signer | None = None) -> bytes:
    """Return ``record`` as one frame, signed by ``signer`` if one is given."""
    body = encode_body(record)
    return unsigned(body) if signer is None else signer.sign(body)


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


class Replay:
    """
    Remember signed frames: accept each (sender, sequence) once, and only recent ones.

    A frame signed more than ``window`` seconds before (or after) this process's clock is
    rejected as stale. Within the window, a frame is accepted once: per sender, the newest
    sequence number and which of the :data:`REORDER` before it were seen are kept, so frames
    may arrive out of order by that much. A sender is forgotten once the newest time it signed
    is older than the window: any frame of it is stale by then, so forgetting opens no door,
    and the memory held is one small entry per sender heard from in the last two windows.

    Args:
        window: Seconds; how far a frame's signing time may be from this process's clock.

    .. versionadded:: 0.3.0
    """

    def __init__(self, window: float = 300.0) -> None:
        self.window = float(window)
        self._window_ms = round(self.window * 1000)
        #: Per sender id: [newest sequence, bit mask of the REORDER before it, newest time].
        self._senders: dict[bytes, list[int]] = {}
        self._next_sweep = 0

    def __len__(self) -> int:
        return len(self._senders)

    def check(self, sender: bytes, sequence: int, signed_ms: int) -> None:
        """
        Record a verified frame's stamp.

        Raises:
            ReplayError: The frame was seen before (``"replayed frame"``) or was signed outside
                the window (``"stale frame"``).
        """
        now = time.time_ns() // 1_000_000
        window = self._window_ms
        if not now - window <= signed_ms <= now + window:
            age = (now - signed_ms) / 1000
            when = f"{age:.0f} s ago" if age > 0 else f"{-age:.0f} s ahead of this clock"
            msg = f"signed {when}, outside the replay window of {self.window:g} s"
            raise ReplayError(msg, reason="stale frame")
        if now >= self._next_sweep:
            self._sweep(now)
        state = self._senders.get(sender)
        if state is None:
            self._senders[sender] = [sequence, 1, signed_ms]
            return
        newest, seen, latest = state
        if sequence > newest:
            ahead = sequence - newest
            state[0] = sequence
            state[1] = ((seen << ahead) | 1) & _ALL_SEEN if ahead < REORDER else 1
        else:
            behind = newest - sequence
            if behind >= REORDER:
                msg = f"sequence {sequence} is {behind} behind its sender's newest"
                raise ReplayError(msg, reason="replayed frame")
            bit = 1 << behind
            if seen & bit:
                msg = f"sequence {sequence} of sender {sender.hex()[:12]} was seen before"
                raise ReplayError(msg, reason="replayed frame")
            state[1] = seen | bit
        if signed_ms > latest:
            state[2] = signed_ms

    def _sweep(self, now: int) -> None:
        oldest = now - self._window_ms
        for sender in [s for s, state in self._senders.items() if state[2] < oldest]:
            del self._senders[sender]
        # Often enough that a sender outlives the window by at most a fraction of it.
        self._next_sweep = now + max(min(self._window_ms // 4, 60_000), 100)


def decode(
    header: bytes,
    body: bytes,
    signature: bytes | None = None,
    key: bytes | None = None,
    max_body: int = MAX_BODY,
    *,
    replay: Replay | None = None,
) -> logging.LogRecord:
    """
    Return the record in a frame, after checking its header, signature and schema.

    Args:
        header: The 8 header bytes.
        body: The body bytes.
        signature: The bytes between header and body of a signed frame.
        key: If given, only signed version 2 frames with a valid tag are accepted.
        max_body: The cap on the body size.
        replay: With ``key``: the memory of frames seen; a frame seen before or signed outside
            its window is rejected with :class:`ReplayError`.

    Raises:
        WireError: Anything wrong with the frame (never another exception).

    .. versionchanged:: 0.3.0
       Signed version 2 frames, and ``replay``.
    """
    size, length = read_header(header, max_body)
    if len(body) != length:
        msg = f"body is {len(body)} bytes, the header says {length}"
        raise WireError(msg)
    if key is not None:
        _verify(header, body, signature, size=size, key=key, replay=replay)
    try:
        data = _DECODER.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        msg = f"body is not JSON: {type(error).__name__}"
        raise WireError(msg) from None
    record = logging.LogRecord.__new__(logging.LogRecord)
    # Every attribute of makeLogRecord({}), without LogRecord.__init__: it reads this
    # process's clock, thread and process, all overwritten by the frame (most of a decode).
    record.__dict__.update(_TEMPLATE)
    record.__dict__.update(_checked(data))
    return record


def _verify(
    header: bytes,
    body: bytes,
    signature: bytes | None,
    *,
    size: int,
    key: bytes,
    replay: Replay | None,
) -> None:
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


def _no_constant(name: str) -> Any:
    msg = f"{name} is not allowed"
    raise ValueError(msg)


_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant)


def _custom_level(known: str, sent: str) -> str:
    # A sender's own name for a level this process has no name for: only a plain one that does
    # not read as a standard name (or as "Level N") is kept.
    if _CUSTOM_LEVEL.fullmatch(sent) is None:
        return known
    looks = sent.upper().translate(_ALIKE)
    if looks in _LOOKS_STANDARD or looks.startswith(_LOOKS_UNNAMED):
        return known
    return sent


def _checked(data: Any) -> dict[str, Any]:
    # JSON gives exact types, so ``type(x) is str`` is both the fast and the strict test (it
    # also keeps booleans out of the integers).
    if type(data) is not dict:
        msg = "body is not a JSON object"
        raise WireError(msg)
    keys = data.keys()
    if not keys <= _KNOWN:
        msg = f"unknown fields {sorted(keys - _KNOWN)[:5]}"
        raise WireError(msg)
    name, levelno, message, created = (data.get(k) for k in ("name", "levelno", "msg", "created"))
    if type(name) is not str or type(message) is not str:
        msg = "name and msg must be strings"
        raise WireError(msg)
    if type(levelno) is not int or not 0 <= levelno <= 100:
        msg = "levelno must be an integer from 0 to 100"
        raise WireError(msg)
    if type(created) is int:
        created = float(created)
    elif type(created) is not float:
        msg = "created must be a number"
        raise WireError(msg)
    if not math.isfinite(created) or not 0 <= created < _LATEST:
        msg = "created must be seconds since the epoch, before the year 10000"
        raise WireError(msg)
    for key in keys & _STRING_KEYS:
        if type(data[key]) is not str:
            msg = f"{key} must be a string"
            raise WireError(msg)
    for key in keys & _INTEGER_KEYS:
        if type(data[key]) is not int:
            msg = f"{key} must be an integer"
            raise WireError(msg)
    fields = dict(data)
    extra = fields.pop("extra", None)
    fields["args"] = None
    fields["created"] = created
    fields["msecs"] = (created - int(created)) * 1000.0
    # The level's name follows its number (levelname was checked to be a string above).
    known = logging.getLevelName(levelno)
    sent = fields.get("levelname")
    if sent is not None and known.startswith("Level "):
        known = _custom_level(known, sent)
    fields["levelname"] = known
    if extra is None:
        return fields
    if type(extra) is not dict or len(extra) > MAX_EXTRA:
        msg = f"extra must be an object of at most {MAX_EXTRA} fields"
        raise WireError(msg)
    for key, value in extra.items():
        if not key.isidentifier() or key in RESERVED or key in fields or key == _PEER:
            msg = f"extra field {key[:40]!r} is not allowed"
            raise WireError(msg)
        if not isinstance(value, _PLAIN) or (type(value) is float and not math.isfinite(value)):
            msg = f"extra field {key!r} is not a string, number, boolean or null"
            raise WireError(msg)
        fields[key] = value
    return fields


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
