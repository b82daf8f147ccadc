"""
The text of a request: decoding what the server hands over, and how much of it is kept.

ASGI gives header values as bytes; WSGI gives every environ value as a ``str`` decoded as
latin-1 (PEP 3333). Both are turned into the text the client meant here, and the caps below
bound every value the fields and the access line keep from a request.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MAX_HEADER",
    "MAX_METHOD",
    "MAX_PATH",
    "MAX_PROTOCOL",
    "MAX_USER",
    "latin1_text",
    "text",
]

#: Length caps for values taken from a request.
MAX_PATH: Final = 1024
MAX_USER: Final = 256
MAX_HEADER: Final = 512
MAX_METHOD: Final = 32
MAX_PROTOCOL: Final = 16


def text(raw: bytes) -> str:
    """Decode header bytes: UTF-8 when they are UTF-8, else latin-1 (never fails)."""
    if raw.isascii():
        return raw.decode("ascii")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def latin1_text(value: str) -> str:
    """Turn a PEP 3333 environ string (bytes decoded as latin-1) into the text it encodes."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value
