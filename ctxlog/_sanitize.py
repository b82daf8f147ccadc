r"""
Make request-derived text safe to put in a log line (CWE-117, log injection).

A request can carry any character in its path (percent-decoded by the server), its headers and
whatever an authentication layer derives from them. Written to a log unchanged, a CR or LF starts
a forged line, an ESC sequence drives the reader's terminal, and a Unicode bidi override reorders
what a human sees. Every value ctxlog takes from a request goes through :func:`sanitize`:

* C0 controls (U+0000-U+001F, tab included), DEL and the C1 controls (U+0080-U+009F) become
  ``\t``, ``\n``, ``\r`` or ``\xNN``;
* the bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), the line and paragraph
  separators U+2028/U+2029 and lone surrogates become ``\uNNNN``;
* a backslash becomes ``\\``, so an escape in the log always means the character was there;
* the value is cut at a length cap, with ``...`` appended when it was cut.

Text that needs none of this (nearly all of it) is returned as it is, after one regex search.
"""

from __future__ import annotations

import os
import re
from typing import Final

__all__ = ["new_request_id", "sanitize", "valid_request_id"]

#: Longest request id accepted from a client.
MAX_REQUEST_ID: Final = 200

_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\\\\\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SHORT: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def sanitize(value: str, limit: int) -> str:
    """
    Return ``value`` with control, bidi and separator characters escaped and cut at ``limit``.

    The result never contains a line break, an ESC or a bidi control, and is at most
    ``6 * limit + 3`` characters long (every kept character may become a six-character escape).
    A negative ``limit`` counts as 0.
    """
    if len(value) > limit:
        value = value[: max(limit, 0)] + "..."
    # Printable ASCII without a backslash needs nothing (two C calls, cheaper than the regex).
    if value.isascii() and value.isprintable() and "\\" not in value:
        return value
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(_escape, value)


#: A request id a client may choose: 1-200 printable ASCII characters, no space and no comma
#: (a server joins a header sent twice with commas: an id with one may be two ids).
_REQUEST_ID: Final = re.compile(r"[!-+\--~]{1,%d}" % MAX_REQUEST_ID)  # noqa: UP031
REQUEST_ID_BYTES: Final = re.compile(rb"[!-+\--~]{1,%d}" % MAX_REQUEST_ID)


def valid_request_id(value: str) -> bool:
    """Tell whether ``value`` is 1-200 printable ASCII characters without a space or comma."""
    return _REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """Return a fresh request id: 128 random bits as 32 lowercase hex digits."""
    return os.urandom(16).hex()
