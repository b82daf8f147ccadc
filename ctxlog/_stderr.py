"""The one way ctxlog reports on itself without logging: a line on standard error."""

from __future__ import annotations

import sys

__all__ = ["write_line"]


def write_line(text: str) -> None:
    """Write ``text`` and a newline to stderr; do nothing if there is no usable stderr."""
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # closed, gone, or replaced by None
        pass
