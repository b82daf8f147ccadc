"""
The fields a frame's body may carry, shared by the encoder and the decoder.

One list, so that what a sender writes and what a receiver accepts cannot drift apart: the
required four, the optional strings and integers, and the rule for ``extra`` fields (plain
values only, never a LogRecord attribute, never ``peer``).
"""

from __future__ import annotations

from typing import Final

from ctxlog.context import FIELDS, RESERVED

__all__ = [
    "INTEGERS",
    "KNOWN",
    "LATEST",
    "MAX_EXTRA",
    "NOT_EXTRA",
    "PEER",
    "PLAIN",
    "STRINGS",
]

#: The most extra fields one record carries.
MAX_EXTRA: Final = 64
#: The optional fields that hold a string.
STRINGS: Final = (
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
#: The optional fields that hold an integer.
INTEGERS: Final = ("lineno", "process", "thread")
#: Every field a body may name at its top level.
KNOWN: Final = frozenset({"name", "levelno", "msg", "created", "extra", *STRINGS, *INTEGERS})
#: 10000-01-01T00:00:00Z: formatting a later time fails, so such a record is invalid.
LATEST: Final = 253402300800.0
#: Where a receiver says a frame came from; never taken from, nor sent in, a frame.
PEER: Final = "peer"
#: Record attributes that never travel in ``extra``.
NOT_EXTRA: Final = RESERVED | KNOWN | {PEER}

#: The types an ``extra`` value may have (a float only if finite): anything else is sent as its
#: ``str()``, and refused by a receiver.
PLAIN: Final = (str, int, float, bool, type(None))
