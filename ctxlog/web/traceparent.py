"""
Read the W3C Trace Context ``traceparent`` header (https://www.w3.org/TR/trace-context/).

A value looks like ``00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01``: the version, the
trace-id shared by every service a request crosses, the parent-id (the caller's span) and the
trace flags, all lowercase hex. :func:`parse_traceparent` accepts exactly what the specification
lets a receiver accept and nothing else, so an id from a header is always 32 or 16 lowercase hex
digits and can go into a log line as it is.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["parse_traceparent"]

#: version "-" trace-id "-" parent-id "-" trace-flags, at the start of the value.
_PREFIX: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_LENGTH: Final = 55  # of a version 00 value, and of the part every later version starts with
_ZERO_TRACE: Final = "0" * 32
_ZERO_PARENT: Final = "0" * 16


def parse_traceparent(value: str) -> tuple[str, str] | None:
    """
    Return ``(trace_id, parent_id)`` from a ``traceparent`` value, or ``None`` if it is invalid.

    Invalid: version ``ff``; anything but lowercase hex in the four fields; a version ``00`` value
    that is not exactly 55 characters; a later version whose 56th character is not ``-``; an
    all-zero trace-id or parent-id; a comma anywhere (a header sent twice, which a server joins
    with commas, names two traces). Spaces and tabs around the value are allowed.
    """
    value = value.strip(" \t")
    if "," in value:
        return None
    match = _PREFIX.match(value)
    if match is None:
        return None
    version, trace_id, parent_id = match.groups()
    if version == "ff":
        return None
    if len(value) != _LENGTH and (version == "00" or value[_LENGTH] != "-"):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    return trace_id, parent_id
