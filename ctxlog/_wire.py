"""
The wire format of records sent between processes: length-prefixed JSON frames, no pickle.

Groundwork for ``JSONSocketHandler`` and ``ctxlog receive`` (not used by them yet). Defined once,
here, for both sides; another language can send records by following this description.

Frame
-----
::

    magic    2 bytes   b"CX"
    version  1 byte    1
    flags    1 byte    bit 0: signed (a tag follows the header)
    length   4 bytes   unsigned big-endian: the number of body bytes
    tag      32 bytes  only if signed: HMAC-SHA256(key, header + body)
    body     length bytes of UTF-8 JSON: one object

Body
----
Required: ``name`` (str), ``levelno`` (int 0-100), ``msg`` (str: the message already merged with
its arguments; receivers never apply ``%`` to network data), ``created`` (number, seconds
since the epoch, before the year 10000). ``levelname`` is derived from ``levelno`` by the
receiver; a sent name is kept only for a custom level number, and never if it is a standard
name. Optional strings: ``levelname``, ``pathname``, ``filename``, ``module``,
``funcName``, ``threadName``, ``processName``, ``taskName``, ``exc_text`` (a formatted
traceback), ``stack_info``, and the context fields ``ip``, ``user``, ``request_id``, ``method``,
``path``. Optional integers: ``lineno``, ``process``, ``thread``. ``extra``: an object of at most
64 further fields, each an identifier that is not a LogRecord attribute, with a string, number,
boolean or null value. Anything else makes the frame invalid.

Security
--------
Decoding never runs code: JSON only, a hard size cap read from the header before any body byte
is read, a strict schema, no ``NaN``/``Infinity``, bounded nesting. With a key, a frame whose tag
does not match (or that carries none) is rejected; tags are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import struct
from typing import Any, Final, TypeGuard

from ctxlog.context import FIELDS, RESERVED

__all__ = [
    "HEADER_SIZE",
    "MAX_BODY",
    "TAG_SIZE",
    "WireError",
    "decode",
    "encode",
    "read_header",
]

MAGIC: Final = b"CX"
VERSION: Final = 1
SIGNED: Final = 0x01
HEADER_SIZE: Final = 8
TAG_SIZE: Final = 32
#: The default cap on a frame's body.
MAX_BODY: Final = 1024 * 1024
#: The most extra fields one record carries.
MAX_EXTRA: Final = 64

_HEADER: Final = struct.Struct(">2sBBI")
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
#: Names a sender may not give a level of another number (a DEBUG record sent as "CRITICAL").
_STANDARD_LEVELS: Final = frozenset(
    {"CRITICAL", "FATAL", "ERROR", "WARN", "WARNING", "INFO", "DEBUG", "NOTSET"}
)
_PLAIN: Final = (str, int, float, bool, type(None))
_KNOWN: Final = frozenset({"name", "levelno", "msg", "created", "extra", *_STRINGS, *_INTEGERS})
_STRING_KEYS: Final = frozenset(_STRINGS)
_INTEGER_KEYS: Final = frozenset(_INTEGERS)
#: Record attributes that never travel in ``extra``.
_NOT_EXTRA: Final = RESERVED | _KNOWN
_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":"), check_circular=False
)
#: The attributes of a record made by ``logging.makeLogRecord({})``: a decoded record's base.
_TEMPLATE: Final = dict(logging.makeLogRecord({}).__dict__)


class WireError(ValueError):
    """A frame that is not a valid ctxlog record; the message says why."""


def encode(record: logging.LogRecord, key: bytes | None = None) -> bytes:
    """
    Return ``record`` as one frame, signed with ``key`` if one is given.

    The message is merged with its arguments, a traceback becomes text, and extra attributes
    that are not plain data (or are floats that JSON cannot carry) are sent as their ``str()``.
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
            if not isinstance(value, _PLAIN) or (
                type(value) is float and not math.isfinite(value)
            ):
                value = str(value)
            plain[name] = value
            if len(plain) == MAX_EXTRA:
                break
        if plain:
            body["extra"] = plain
    payload = _ENCODER.encode(body).encode()
    if len(payload) > 0xFFFFFFFF:  # pragma: no cover - a 4 GiB record
        msg = "record too large for one frame"
        raise WireError(msg)
    flags = SIGNED if key is not None else 0
    header = _HEADER.pack(MAGIC, VERSION, flags, len(payload))
    if key is None:
        return header + payload
    return header + hmac.new(key, header + payload, hashlib.sha256).digest() + payload


def read_header(header: bytes, max_body: int = MAX_BODY) -> tuple[bool, int]:
    """
    Check a frame header; return ``(signed, body_length)``.

    Raises:
        WireError: Not a ctxlog frame, an unknown version or flag, or a body over ``max_body``.
    """
    if len(header) != HEADER_SIZE:
        msg = f"header is {len(header)} bytes, not {HEADER_SIZE}"
        raise WireError(msg)
    magic, version, flags, length = _HEADER.unpack(header)
    if magic != MAGIC:
        msg = "not a ctxlog frame (bad magic)"
        raise WireError(msg)
    if version != VERSION:
        msg = f"unknown frame version {version}"
        raise WireError(msg)
    if flags & ~SIGNED:
        msg = f"unknown frame flags {flags:#x}"
        raise WireError(msg)
    if length > max_body:
        msg = f"frame body of {length} bytes is over the limit of {max_body}"
        raise WireError(msg)
    return bool(flags & SIGNED), length


def decode(
    header: bytes,
    body: bytes,
    tag: bytes | None = None,
    key: bytes | None = None,
    max_body: int = MAX_BODY,
) -> logging.LogRecord:
    """
    Return the record in a frame, after checking its header, tag and schema.

    Args:
        header: The 8 header bytes.
        body: The body bytes.
        tag: The 32 tag bytes of a signed frame.
        key: If given, only frames signed with it are accepted.
        max_body: The cap on the body size.

    Raises:
        WireError: Anything wrong with the frame (never another exception).
    """
    signed, length = read_header(header, max_body)
    if len(body) != length:
        msg = f"body is {len(body)} bytes, the header says {length}"
        raise WireError(msg)
    if key is not None:
        if not signed or tag is None:
            msg = "unsigned frame: a key is required"
            raise WireError(msg)
        expected = hmac.new(key, header + body, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, tag):
            msg = "bad signature"
            raise WireError(msg)
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


def _no_constant(name: str) -> Any:
    msg = f"{name} is not allowed"
    raise ValueError(msg)


_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant)


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
    # The level's name follows its number; a sender's own name is kept only for a level this
    # process does not know, and never when it is a standard name.
    known = logging.getLevelName(levelno)
    if not known.startswith("Level ") or fields.get("levelname", known) in _STANDARD_LEVELS:
        fields["levelname"] = known
    if extra is None:
        return fields
    if type(extra) is not dict or len(extra) > MAX_EXTRA:
        msg = f"extra must be an object of at most {MAX_EXTRA} fields"
        raise WireError(msg)
    for key, value in extra.items():
        if not key.isidentifier() or key in RESERVED or key in fields:
            msg = f"extra field {key[:40]!r} is not allowed"
            raise WireError(msg)
        if not isinstance(value, _PLAIN) or (type(value) is float and not math.isfinite(value)):
            msg = f"extra field {key!r} is not a string, number, boolean or null"
            raise WireError(msg)
        fields[key] = value
    return fields


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
