"""
The receiving side: a frame's bytes become a LogRecord, or a :class:`WireError` says why not.

:func:`decode` checks the header, then the signature (:mod:`ctxlog.wire.signing`) when the
receiver has a key, then parses the body as strict JSON and checks it field by field against
:mod:`ctxlog.wire.schema`. Nothing from the network runs: no pickle, no ``NaN``, no ``msg %
args``; a level's name follows its number, not what the sender claims.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any, Final

from ctxlog.context import RESERVED
from ctxlog.wire.frame import MAX_BODY, WireError, read_header
from ctxlog.wire.replay import Replay
from ctxlog.wire.schema import INTEGERS, KNOWN, LATEST, MAX_EXTRA, PEER, PLAIN, STRINGS
from ctxlog.wire.signing import verify

__all__ = ["decode"]

_STRING_KEYS: Final = frozenset(STRINGS)
_INTEGER_KEYS: Final = frozenset(INTEGERS)
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


def _no_constant(name: str) -> Any:
    msg = f"{name} is not allowed"
    raise ValueError(msg)


_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant)


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
        verify(header, body, signature, size=size, key=key, replay=replay)
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


def _checked(data: Any) -> dict[str, Any]:
    """Return a parsed body's fields as record attributes, once every one is checked."""
    # JSON gives exact types, so ``type(x) is str`` is both the fast and the strict test (it
    # also keeps booleans out of the integers).
    if type(data) is not dict:
        msg = "body is not a JSON object"
        raise WireError(msg)
    keys = data.keys()
    if not keys <= KNOWN:
        msg = f"unknown fields {sorted(keys - KNOWN)[:5]}"
        raise WireError(msg)
    created = _required(data)
    _check_optional(data, keys)
    fields = dict(data)
    extra = fields.pop("extra", None)
    fields["args"] = None
    fields["created"] = created
    fields["msecs"] = (created - int(created)) * 1000.0
    # The level's name follows its number (levelname was checked to be a string above).
    known = logging.getLevelName(fields["levelno"])
    sent = fields.get("levelname")
    if sent is not None and known.startswith("Level "):
        known = _custom_level(known, sent)
    fields["levelname"] = known
    if extra is not None:
        _add_extra(fields, extra)
    return fields


def _required(data: dict[str, Any]) -> float:
    """Check ``name``, ``levelno``, ``msg`` and ``created``; return ``created`` as a float."""
    name = data.get("name")
    levelno = data.get("levelno")
    message = data.get("msg")
    created = data.get("created")
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
    if not math.isfinite(created) or not 0 <= created < LATEST:
        msg = "created must be seconds since the epoch, before the year 10000"
        raise WireError(msg)
    return created


def _check_optional(data: dict[str, Any], keys: Any) -> None:
    """Check the types of the optional strings and integers the body has."""
    for key in keys & _STRING_KEYS:
        if type(data[key]) is not str:
            msg = f"{key} must be a string"
            raise WireError(msg)
    for key in keys & _INTEGER_KEYS:
        if type(data[key]) is not int:
            msg = f"{key} must be an integer"
            raise WireError(msg)


def _add_extra(fields: dict[str, Any], extra: Any) -> None:
    """Check the ``extra`` object and add its fields to ``fields``."""
    if type(extra) is not dict or len(extra) > MAX_EXTRA:
        msg = f"extra must be an object of at most {MAX_EXTRA} fields"
        raise WireError(msg)
    for key, value in extra.items():
        if not key.isidentifier() or key in RESERVED or key in fields or key == PEER:
            msg = f"extra field {key[:40]!r} is not allowed"
            raise WireError(msg)
        if not isinstance(value, PLAIN) or (type(value) is float and not math.isfinite(value)):
            msg = f"extra field {key!r} is not a string, number, boolean or null"
            raise WireError(msg)
        fields[key] = value


def _custom_level(known: str, sent: str) -> str:
    # A sender's own name for a level this process has no name for: only a plain one that does
    # not read as a standard name (or as "Level N") is kept.
    if _CUSTOM_LEVEL.fullmatch(sent) is None:
        return known
    looks = sent.upper().translate(_ALIKE)
    if looks in _LOOKS_STANDARD or looks.startswith(_LOOKS_UNNAMED):
        return known
    return sent
