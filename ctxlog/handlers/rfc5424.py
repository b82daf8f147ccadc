"""
The pieces of an RFC 5424 message around its structured data: priority, time, header fields.

:class:`~ctxlog.handlers.SyslogHandler` writes each record as
``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [SP BOM MSG]``. This module
holds the rules of the header: the facilities and the severity of a logging level (the PRI),
the RFC 3339 time, the limits and the character set of the header fields, the checks the
handler's options go through against them, and how a MSG is cut to its byte budget on a
character boundary. The structured data is :mod:`ctxlog.handlers.structured_data`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Final

from ctxlog.context import MISSING

__all__ = [
    "BOM",
    "CUT",
    "DOCUMENTATION_PEN",
    "FACILITIES",
    "MAX_APP_NAME",
    "MAX_HOSTNAME",
    "MAX_MSGID",
    "MAX_PARAM_NAME",
    "MAX_PROCID",
    "MAX_UDP",
    "MIN_SIZE",
    "MSG_ROOM",
    "TRANSPORTS",
    "cut",
    "facility_code",
    "header_field",
    "header_token",
    "param_names",
    "sd_id",
    "severity",
    "timestamp",
]

#: RFC 5424 facility codes, under the names the standard library's SysLogHandler uses.
FACILITIES: Final[Mapping[str, int]] = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "security": 13,
    "console": 14,
    "solaris-cron": 15,
    **{f"local{n}": 16 + n for n in range(8)},
}
TRANSPORTS: Final = ("udp", "tcp", "tls")
#: The PEN that RFC 5612 reserves for documentation and examples.
DOCUMENTATION_PEN: Final = 32473
#: Length limits of the header fields (RFC 5424, section 6).
MAX_HOSTNAME: Final = 255
MAX_APP_NAME: Final = 48
MAX_MSGID: Final = 32
MAX_PARAM_NAME: Final = 32
#: RFC 5424 allows 128; ctxlog's PROCID is a process id, and 20 digits hold any 64-bit one.
MAX_PROCID: Final = 20
#: Every receiver must accept 480 bytes (RFC 5426); a UDP datagram carries at most 65507.
MIN_SIZE: Final = 480
MAX_UDP: Final = 65507

#: What RFC 5424 puts before a UTF-8 MSG (a byte order mark), and what ends a cut MSG.
BOM: Final = b"\xef\xbb\xbf"
CUT: Final = b"..."
#: What a MSG needs at the least: the space before it, the BOM and the mark of a cut.
MSG_ROOM: Final = 1 + len(BOM) + len(CUT)

_PRINTUSASCII: Final = re.compile("[!-~]+")
_NOT_PRINTUSASCII: Final = re.compile("[^!-~]")
_PARAM_NAME: Final = re.compile("[!#-<>-\\\\^-~]{1,%d}" % MAX_PARAM_NAME)  # noqa: UP031
_ENTERPRISE_ID: Final = re.compile(r"[1-9][0-9]*(\.(0|[1-9][0-9]*))*")


def severity(levelno: int) -> int:
    """
    Return the RFC 5424 severity for a logging level.

    CRITICAL is 2 (critical), ERROR 3, WARNING 4, INFO 6 and DEBUG (and below) 7. A custom level
    between INFO and WARNING, such as a NOTICE at 25, is 5 (notice); one above CRITICAL is 1
    (alert). Severity 0 (emergency) is never used: rsyslog's stock configuration writes such
    messages to every logged-in terminal, and an application is not the whole system.
    """
    if levelno > logging.CRITICAL:
        return 1
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno > logging.INFO:
        return 5
    if levelno >= logging.INFO:
        return 6
    return 7


def timestamp(created: float) -> str:
    """Return ``created`` as an RFC 3339 time with microseconds and the local UTC offset."""
    moment = dt.datetime.fromtimestamp(created, dt.UTC).astimezone()
    offset = moment.utcoffset()
    if offset is not None and offset.seconds % 60:
        # A historical offset in seconds (local mean time) has no RFC 3339 form.
        moment = moment.astimezone(dt.UTC)
    return moment.isoformat(timespec="microseconds")


def header_token(text: str, limit: int) -> str:
    """Return ``text`` as a header field: printable US-ASCII, at most ``limit`` characters."""
    token = _NOT_PRINTUSASCII.sub("_", text)[:limit]
    return token or MISSING


def cut(data: bytes, size: int) -> bytes:
    """Return the first ``size`` bytes of UTF-8 ``data``, not ending inside a character."""
    end = size
    while end > 0 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end]


# -- the handler's options ---------------------------------------------------------------------


def header_field(option: str, value: str | None, limit: int) -> str | None:
    """Return ``value`` if it is a header field of at most ``limit`` characters (or ``None``)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or _PRINTUSASCII.fullmatch(value) is None:
        msg = (
            f"SyslogHandler: {option}={value!r} is not 1-{limit} printable US-ASCII characters "
            "without spaces (RFC 5424)"
        )
        raise ValueError(msg)
    return value


def facility_code(facility: str | int) -> int:
    """Return the code of a facility name (any case) or number (0-23)."""
    if isinstance(facility, str) and facility.lower() in FACILITIES:
        return FACILITIES[facility.lower()]
    if not isinstance(facility, bool) and isinstance(facility, int) and 0 <= facility <= 23:
        return facility
    msg = f"SyslogHandler: facility={facility!r} is not a facility name or number (0-23)"
    raise ValueError(msg)


def sd_id(enterprise_id: int | str) -> str:
    """Return the SD-ID ``ctx@<enterprise_id>`` of a private enterprise number."""
    if isinstance(enterprise_id, bool) or not (
        (isinstance(enterprise_id, int) and enterprise_id > 0)
        or (isinstance(enterprise_id, str) and _ENTERPRISE_ID.fullmatch(enterprise_id))
    ):
        msg = (
            f"SyslogHandler: enterprise_id={enterprise_id!r} is not a private enterprise "
            "number (a positive int, or digits with dotted sub-identifiers)"
        )
        raise ValueError(msg)
    name = f"ctx@{enterprise_id}"
    if len(name) > MAX_PARAM_NAME:
        msg = f"SyslogHandler: enterprise_id={enterprise_id!r} makes an SD-ID over 32 chars"
        raise ValueError(msg)
    return name


def param_names(fields: Sequence[str]) -> tuple[str, ...]:
    """Return ``fields`` if they are distinct PARAM-NAMEs."""
    if isinstance(fields, str) or not isinstance(fields, Sequence):
        msg = f"SyslogHandler: fields={fields!r} is not a list of field names"
        raise ValueError(msg)  # noqa: TRY004 # one error type for every bad option value
    for name in fields:
        if not isinstance(name, str) or _PARAM_NAME.fullmatch(name) is None:
            msg = (
                f"SyslogHandler: field name {name!r} is not a PARAM-NAME (1-32 printable "
                "ASCII characters, no '=', ']', '\"' or space)"
            )
            raise ValueError(msg)
    if len(set(fields)) != len(fields):
        msg = f"SyslogHandler: fields={fields!r} names a field twice"
        raise ValueError(msg)
    return tuple(fields)
