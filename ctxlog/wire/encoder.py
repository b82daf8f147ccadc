"""
The sending side: a LogRecord becomes a JSON body, then a frame.

:func:`encode_body` writes what :mod:`ctxlog.wire.schema` allows and nothing else: the message
already merged with its arguments, a traceback as text, extra attributes as plain values.
:func:`encode` puts the body in a frame, signed by a :class:`~ctxlog.wire.signing.Signer` if
one is given. Used by ``JSONSocketHandler`` and the ZeroMQ handler.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Final

from ctxlog.wire.frame import WireError, unsigned
from ctxlog.wire.schema import INTEGERS, MAX_EXTRA, NOT_EXTRA, PLAIN, STRINGS
from ctxlog.wire.signing import Signer

__all__ = ["encode", "encode_body"]

_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":"), check_circular=False
)
#: For the rare record whose text is not valid UTF-8 (a lone surrogate): every character that
#: is not ASCII goes as a JSON ``\\uXXXX`` escape, which carries a lone surrogate too.
_ASCII_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, default=str, separators=(",", ":"), check_circular=False
)


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
    _add_optional(body, attrs)
    if record.exc_info and "exc_text" not in body:
        body["exc_text"] = logging.Formatter().formatException(record.exc_info)
    extra = [name for name in attrs if name not in NOT_EXTRA]
    if extra:
        plain = _plain_extra(body, attrs, extra)
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


def encode(record: logging.LogRecord, signer: Signer | None = None) -> bytes:
    """Return ``record`` as one frame, signed by ``signer`` if one is given."""
    body = encode_body(record)
    return unsigned(body) if signer is None else signer.sign(body)


def _add_optional(body: dict[str, Any], attrs: dict[str, Any]) -> None:
    """Copy the optional strings (as ``str()``) and integers of a record that has them."""
    for name in STRINGS:
        value = attrs.get(name)
        if value is not None:
            body[name] = value if type(value) is str else str(value)
    for name in INTEGERS:
        value = attrs.get(name)
        if type(value) is int:
            body[name] = value


def _plain_extra(body: dict[str, Any], attrs: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Return the first :data:`MAX_EXTRA` extra attributes ``names`` as plain values."""
    plain: dict[str, Any] = {}
    for name in names:
        if name in body or not name.isidentifier():
            continue
        value = attrs[name]
        if not isinstance(value, PLAIN) or (type(value) is float and not math.isfinite(value)):
            value = str(value)
        plain[name] = value
        if len(plain) == MAX_EXTRA:
            break
    return plain
