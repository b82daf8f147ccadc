"""
An exception's type and message, read from its traceback text, for :class:`ctxlog.JSONFormatter`.

The message is read from the text rather than from the exception, so that what
:class:`ctxlog.RedactFilter` masked in the traceback stays masked in ``error.message`` too, and a
record that carries the text only (one from another process, or one whose exception the filter
replaced by its masked text) still gets its error's type and message.
"""

from __future__ import annotations

import re
from typing import Any, Final

from ctxlog.record.jsonvalue import plain

__all__ = ["error_in_text", "error_message", "error_type"]

_HEADER: Final = "Traceback (most recent call last):"
_TYPE_NAME: Final = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def error_type(error: BaseException) -> str:
    """Return the name of the exception's type, with its module unless it is a built-in."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def error_message(error: BaseException, exc_text: str) -> Any:
    """Return the exception's message as the traceback text ``exc_text`` ends with it."""
    marker = error_type(error) + ": "
    at = exc_text.rfind("\n" + marker)
    if at >= 0:
        return exc_text[at + 1 + len(marker) :]
    return exc_text[len(marker) :] if exc_text.startswith(marker) else plain(error, [])


def error_in_text(exc_text: str) -> tuple[str, str] | None:
    """
    Return the type and message that end a traceback text, or ``None`` if it has no such line.

    For a record that carries the text only: one from another process, or one whose exception
    :class:`ctxlog.RedactFilter` replaced by its masked text. The exception's line is the first
    unindented line after the last frame (``"  File ..."`` and its indented source lines).
    """
    lines = exc_text.splitlines()
    frames = [n for n, line in enumerate(lines) if line.startswith("  File ")]
    start = frames[-1] + 1 if frames else 0
    while start < len(lines) and (lines[start][:1] in (" ", "") or lines[start] == _HEADER):
        start += 1
    if start == len(lines):
        return None
    name, _, first = lines[start].partition(": ")
    if not _TYPE_NAME.fullmatch(name):
        return None
    return name, "\n".join([first, *lines[start + 1 :]])
