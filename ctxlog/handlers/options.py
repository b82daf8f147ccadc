"""
Checks of the options the handlers share: numbers of seconds, counts, TCP ports.

Each returns the value as the handler keeps it, or raises :class:`ValueError` naming the
handler, the option and the value, so that a misconfigured handler fails when it is made.
"""

from __future__ import annotations

import math

__all__ = ["count", "seconds", "tcp_port"]


def seconds(owner: str, name: str, value: object) -> float:
    """Return ``value`` as a float if it is a positive, finite number of seconds."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        msg = f"{owner}: {name}={value!r} is not a positive number of seconds"
        raise ValueError(msg)
    return float(value)


def count(owner: str, name: str, value: object, *, least: int = 1, what: str = "") -> int:
    """Return ``value`` if it is an int of at least ``least`` (``what`` it is, for the error)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        msg = f"{owner}: {name}={value!r} is not {what or 'a positive integer'}"
        raise ValueError(msg)
    return value


def tcp_port(value: object) -> bool:
    """Tell whether ``value`` is a TCP port number (1-65535)."""
    return not isinstance(value, bool) and isinstance(value, int) and 0 < value < 65536
