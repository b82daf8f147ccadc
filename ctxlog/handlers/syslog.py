r"""
:class:`SyslogHandler`: RFC 5424 syslog messages with the request's context as structured data.

Every record becomes one RFC 5424 message whose STRUCTURED-DATA carries ctxlog's fields::

    <11>1 2026-01-05T14:22:02.118204+01:00 web1 shop 4242 - [ctx@32473 ip="203.0.113.7"
    user="alice" request_id="4be1c0d2a9f34e6b8c27d5e0f1a3b6c9" method="POST" path="/checkout"]
    \ufeffcheckout failed

(one line on the wire; the message is the handler's Formatter output, UTF-8 after a BOM). A
syslog server keeps the fields apart from the text: rsyslog's ``mmpstrucdata`` turns them into
JSON properties, so the central side can search for a request id without parsing messages.

Where it differs from the standard library's :class:`logging.handlers.SysLogHandler`:

- **RFC 5424, not the BSD format.** A full header (version, RFC 3339 time with microseconds and
  offset, host name, app name, process id), structured data, and a UTF-8 message.
- **TCP that a server can split.** The standard library ends each TCP message with a NUL byte
  (or nothing), which rsyslog does not take as a message end: messages run together, and a
  multi-line traceback is cut into several. Here every message is sent with RFC 6587
  octet-counting framing (``LEN SP MSG``), over plain TCP or over TLS (RFC 5425), so a message
  may contain any byte, line breaks included.
- **One connection per process.** The socket is opened on the first record a process sends and
  checked against :func:`os.getpid` before every send: a worker forked from a master that had
  already connected opens its own connection and never writes into the inherited one.
- **A restarted server costs nothing.** Before each send on a TCP or TLS connection the handler
  checks whether the server has closed it (a server restart does), and reconnects first instead
  of writing into a dead connection. Records that cannot be sent because the server is down wait
  in a small buffer and go out, in order, with the next record or :meth:`~SyslogHandler.flush`
  after the server is back.

Sending can block for up to ``timeout`` seconds while the server is slow or unreachable: put the
handler behind :func:`ctxlog.nonblocking`. Name resolution happens when a connection is made.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import math
import os
import re
import select
import socket
import ssl
import sys
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ctxlog._stderr import write_line
from ctxlog.context import FIELDS, MISSING, fields_for_record
from ctxlog.record.escape import escape_match

__all__ = ["SyslogHandler"]

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

_BOM: Final = b"\xef\xbb\xbf"
_CUT: Final = b"..."
#: What a MSG needs at the least: the space before it, the BOM and the mark of a cut.
_MSG_ROOM: Final = 1 + len(_BOM) + len(_CUT)
#: The mark at the end of a cut PARAM-VALUE, and the fewest bytes a value is cut to: a parameter
#: that cannot have that many (or all it needs, if less) is left out.
_MARK: Final = "..."
_MIN_VALUE: Final = 16
_PRINTUSASCII: Final = re.compile("[!-~]+")
_NOT_PRINTUSASCII: Final = re.compile("[^!-~]")
_PARAM_NAME: Final = re.compile("[!#-<>-\\\\^-~]{1,%d}" % MAX_PARAM_NAME)  # noqa: UP031
_ENTERPRISE_ID: Final = re.compile(r"[1-9][0-9]*(\.(0|[1-9][0-9]*))*")
#: What a PARAM-VALUE must not carry raw: C0 and C1 controls, DEL, bidi controls, line and
#: paragraph separators, lone surrogates (which UTF-8 cannot encode).
_PARAM_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
#: One of ctxlog's escapes, as a value captured from a request holds them (``sanitize``).
_ESCAPE_SEQUENCE: Final = re.compile(r"\\(?:[\\ntr]|x[0-9a-f]{2}|u[0-9a-f]{4})")
#: Back-off between connection attempts after a failure: doubles from the first to the last.
_RETRY_START: Final = 0.25
_RETRY_MAX: Final = 30.0
#: Whole frames are joined into one send up to this many bytes.
_BATCH: Final = 64 * 1024

_live: weakref.WeakSet[SyslogHandler] = weakref.WeakSet()
_hooks: list[bool] = []


def _after_fork_in_child() -> None:
    for handler in list(_live):
        handler._after_fork()  # noqa: SLF001


def _install_fork_hook() -> None:
    # On first use, not at import: importing ctxlog changes nothing in the process.
    if not _hooks and hasattr(os, "register_at_fork"):
        _hooks.append(True)
        os.register_at_fork(after_in_child=_after_fork_in_child)


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


def param_value(value: str) -> str:
    r"""
    Return ``value`` escaped for a PARAM-VALUE: ``"``, ``\`` and ``]`` get a backslash.

    Control characters, bidi controls, line separators and lone surrogates are written as
    ctxlog's escapes (``\n``, ``\x1b``, ``\u202e``) first, so a value never breaks a line of a
    log file on the receiving side. A receiver that unescapes the value (rsyslog's
    ``mmpstrucdata``) gets the text back exactly, with those escapes in place of the characters.
    """
    if not (value.isascii() and value.isprintable()) and _PARAM_UNSAFE.search(value) is not None:
        value = _PARAM_UNSAFE.sub(escape_match, value)
    # str.replace, not a regex with a template: a value of escapes has a backslash in every
    # few characters, and the template is expanded in Python for each (3.11).
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if '"' in value:
        value = value.replace('"', '\\"')
    if "]" in value:
        value = value.replace("]", "\\]")
    return value


def _utf8_size(text: str) -> int:
    """Return the length of ``text`` in UTF-8 (lone surrogates escaped first: none is left)."""
    return len(text) if text.isascii() else len(text.encode())


def _sequence_start(text: str, end: int) -> int:
    r"""
    Return where to cut ``text`` at ``end`` or before, so that no escape sequence is cut in two.

    A value captured from a request holds ctxlog's escapes (``\u202e``, ``\x1b``, ``\\``): cut
    in the middle, ``\u20`` would read as something the request did not send. A backslash
    starts a sequence when an even number of backslashes precede it.
    """
    start = text.rfind("\\", max(end - 5, 0), end)  # a sequence is at most 6 characters long
    if start < 0:
        return end
    before = start
    while before > 0 and text[before - 1] == "\\":
        before -= 1
    if (start - before) % 2:
        return end  # the second half of a "\\" that ends before ``end``
    sequence = _ESCAPE_SEQUENCE.match(text, start)
    return start if sequence is not None and sequence.end() > end else end


def _shorten(text: str, size: int) -> str:
    """
    Return ``text`` as a PARAM-VALUE of at most ``size`` bytes: cut, escaped, ending in ``...``.

    The cut is made in ``text``, before escaping, on a character and escape-sequence boundary:
    an escape is never cut in two, and no backslash is left to escape the closing quote.
    """
    room = size - len(_MARK)
    full, text = text, text[:room]  # escaped, every character takes one byte or more
    # Escaping works character by character: escape the text in pieces, keep the pieces that
    # fit, and search the first one that does not for the longest prefix that still fits. The
    # work is about that of escaping the text twice, whatever it holds.
    step = -(-len(text) // 16)
    pieces = []
    start = 0
    while start < len(text):
        piece = param_value(text[start : start + step])
        piece_size = _utf8_size(piece)
        if piece_size > room:
            break
        pieces.append(piece)
        room -= piece_size
        start += step
    start = min(start, len(text))
    low, high = 0, min(step, len(text) - start) - 1  # the whole piece does not fit
    while low < high:
        middle = (low + high + 1) // 2
        if _utf8_size(param_value(text[start : start + middle])) <= room:
            low = middle
        else:
            high = middle - 1
    end = _sequence_start(full, start + low)
    if end < start:  # the sequence began in a kept piece
        return param_value(text[:end]) + _MARK
    return "".join(pieces) + param_value(text[start:end]) + _MARK


def _header_token(text: str, limit: int) -> str:
    """Return ``text`` as a header field: printable US-ASCII, at most ``limit`` characters."""
    token = _NOT_PRINTUSASCII.sub("_", text)[:limit]
    return token or MISSING


def _check_token(option: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or _PRINTUSASCII.fullmatch(value) is None:
        msg = (
            f"SyslogHandler: {option}={value!r} is not 1-{limit} printable US-ASCII characters "
            "without spaces (RFC 5424)"
        )
        raise ValueError(msg)
    return value


def _cut(data: bytes, size: int) -> bytes:
    """Return the first ``size`` bytes of UTF-8 ``data``, not ending inside a character."""
    end = size
    while end > 0 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end]


def _peer_closed(sock: socket.socket, timeout: float) -> bool:
    """Tell whether the server closed ``sock`` (or sent something, which no syslog server does)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    if not isinstance(sock, ssl.SSLSocket):
        return True  # end of stream, a reset, or bytes a syslog server never sends
    # A TLS 1.3 server sends session tickets after the handshake: readable, yet alive.
    sock.settimeout(0)  # non-blocking
    try:
        sock.recv(1)
    except ssl.SSLWantReadError:
        return False
    except (OSError, ValueError):
        return True
    finally:
        sock.settimeout(timeout)
    return True  # close_notify or unexpected data


class SyslogHandler(logging.Handler):
    r"""
    Send records to a syslog server as RFC 5424 messages, the context as structured data.

    Each record becomes ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [ctx@PEN ...] MSG``:
    the priority from ``facility`` and the record's level, the record's time (RFC 3339, local
    offset, microseconds), the record's process id, and the fields named by ``fields`` that hold
    a value (``"-"`` means unknown: such a field is left out, and a record without any is sent
    with ``-`` for its structured data). The MSG is the handler's Formatter output (by default
    the message and any traceback), UTF-8 after a byte order mark, sent with its line breaks.

    The fields are read from the record (ctxlog's queue, ``ContextFilter`` and ``get_logger()``
    put them there); a field the record lacks is read from the current context, which is right
    when the handler runs in the thread that logs.

    ``transport="udp"`` sends one datagram per record; ``"tcp"`` and ``"tls"`` send RFC 6587
    octet-counted frames over one connection per process. Every message fits ``max_size`` bytes,
    whatever its fields hold; the default is what rsyslog accepts unless its ``maxMessageSize``
    is raised (8096 bytes). rsyslog cuts longer messages without a mark, and over TCP it
    delivers the rest of the frame as a second message, which a request could write as a whole
    forged record. The STRUCTURED-DATA takes at most half of ``max_size`` (:attr:`sd_size`):
    when the parameters do not fit, the short values are kept whole and the long ones share the
    rest, each cut (before escaping, never inside an escape) and ending in ``...``; a parameter
    that cannot keep 16 bytes is left out, the last of ``fields`` first. The MSG gets what the
    header and the structured data leave, and is cut to fit with ``...``.

    Network failures never reach the application. The first one of an outage is reported on
    stderr, the others counted in :meth:`stats`; connection attempts then back off from 0.25 up
    to 30 seconds. Over TCP and TLS the records of an outage wait in a buffer of ``buffer``
    records (the oldest are dropped first) and go out with the next record or :meth:`flush` once
    the server is back. A record that cannot be formatted goes to :meth:`handleError`.

    Args:
        address: The server's ``(host, port)``.
        transport: ``"udp"``, ``"tcp"`` or ``"tls"``.
        facility: A facility name (``"user"``, ``"local0"`` ...) or its number (0-23).
        app_name: The APP-NAME (1-48 printable ASCII characters); by default the name of the
            program (``sys.argv[0]``), made to fit.
        hostname: The HOSTNAME (1-255 printable ASCII characters); by default
            :func:`socket.gethostname`.
        enterprise_id: The private enterprise number in the SD-ID ``ctx@<enterprise_id>``: an
            int, or a string with sub-identifiers such as ``"32473.1"``. The default is RFC
            5612's number for documentation; use your organisation's own in production.
        tls: The :class:`ssl.SSLContext` for ``transport="tls"``; by default
            :func:`ssl.create_default_context` (system CAs, host name checked).
        timeout: Seconds that connecting, the TLS handshake or one send may take.
        msgid: The MSGID of every message (1-32 printable ASCII characters), or ``None`` for
            ``-``.
        fields: The record attributes to send as parameters, in this order; by default
            :data:`ctxlog.FIELDS`. Add the names of fields you bind (``fields=[*ctxlog.FIELDS,
            "tenant"]``); names are 1-32 printable ASCII characters without ``=``, ``]``,
            ``"`` or spaces.
        max_size: The largest message in bytes, framing not included: 480 or more, and for UDP
            at most 65507. Set rsyslog's ``maxMessageSize`` to the same value or more.
        buffer: How many records TCP and TLS keep while the server cannot be reached (0 keeps
            none).

    Raises:
        ValueError: An address, transport, facility, header field, enterprise id, field name,
            size, buffer or timeout that cannot be used, or ``tls`` given without
            ``transport="tls"``.
        TypeError: ``tls`` is neither ``None`` nor an :class:`ssl.SSLContext`.

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
       The structured data and each parameter have a byte budget: no message exceeds
       ``max_size`` (before, only the MSG was cut, and a long path or user name could make
       rsyslog split a message into a forged second one). A PROCID that is not a number is
       made a header token.
    """

    def __init__(
        self,
        address: tuple[str, int] = ("localhost", 514),
        *,
        transport: str = "udp",
        facility: str | int = "user",
        app_name: str | None = None,
        hostname: str | None = None,
        enterprise_id: int | str = DOCUMENTATION_PEN,
        tls: ssl.SSLContext | None = None,
        timeout: float = 5.0,
        msgid: str | None = None,
        fields: Sequence[str] = FIELDS,
        max_size: int = 8096,
        buffer: int = 1000,
    ) -> None:
        super().__init__()
        if (
            not isinstance(address, tuple | list)
            or len(address) != 2
            or not isinstance(address[0], str)
            or not address[0]
            or isinstance(address[1], bool)
            or not isinstance(address[1], int)
            or not 0 < address[1] < 65536
        ):
            msg = f"SyslogHandler: address={address!r} is not a (host, port) pair"
            raise ValueError(msg)
        self.host, self.port = address[0], address[1]
        if transport not in TRANSPORTS:
            msg = f"SyslogHandler: transport={transport!r}; use 'udp', 'tcp' or 'tls'"
            raise ValueError(msg)
        self.transport = transport
        self.facility = self._facility(facility)
        self.app_name = _check_token("app_name", app_name, MAX_APP_NAME) or _header_token(
            Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "", MAX_APP_NAME
        )
        self.hostname = _check_token("hostname", hostname, MAX_HOSTNAME) or _header_token(
            socket.gethostname(), MAX_HOSTNAME
        )
        self.msgid = _check_token("msgid", msgid, MAX_MSGID) or MISSING
        if isinstance(enterprise_id, bool) or not (
            (isinstance(enterprise_id, int) and enterprise_id > 0)
            or (isinstance(enterprise_id, str) and _ENTERPRISE_ID.fullmatch(enterprise_id))
        ):
            msg = (
                f"SyslogHandler: enterprise_id={enterprise_id!r} is not a private enterprise "
                "number (a positive int, or digits with dotted sub-identifiers)"
            )
            raise ValueError(msg)
        self.sd_id = f"ctx@{enterprise_id}"
        if len(self.sd_id) > MAX_PARAM_NAME:
            msg = f"SyslogHandler: enterprise_id={enterprise_id!r} makes an SD-ID over 32 chars"
            raise ValueError(msg)
        if tls is not None and not isinstance(tls, ssl.SSLContext):
            msg = f"SyslogHandler: tls={tls!r}; use None or an ssl.SSLContext"
            raise TypeError(msg)
        if tls is not None and transport != "tls":
            msg = f"SyslogHandler: tls= is given but transport={transport!r}; use 'tls'"
            raise ValueError(msg)
        if transport == "tls" and tls is None:
            tls = ssl.create_default_context()
        self.tls = tls
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            msg = f"SyslogHandler: timeout={timeout!r} is not a positive number of seconds"
            raise ValueError(msg)
        self.timeout = float(timeout)
        self.fields = self._fields(fields)
        limit = MAX_UDP if transport == "udp" else sys.maxsize
        if (
            isinstance(max_size, bool)
            or not isinstance(max_size, int)
            or not MIN_SIZE <= max_size <= limit
        ):
            most = f"-{MAX_UDP}" if transport == "udp" else " or more"
            msg = f"SyslogHandler: max_size={max_size!r} is not a size in bytes ({MIN_SIZE}{most})"
            raise ValueError(msg)
        self.max_size = max_size
        #: The most bytes the STRUCTURED-DATA may take: half of the message.
        self.sd_size = max_size // 2
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 0:
            msg = f"SyslogHandler: buffer={buffer!r} is not a number of records (0 or more)"
            raise ValueError(msg)
        self.buffer = buffer
        #: Records handed to the kernel, records dropped (buffer full, or UDP not sendable),
        #: connections made (sockets opened, for UDP), connection or send failures.
        self.sent = 0
        self.dropped = 0
        self.connections = 0
        self.failures = 0
        self._sock: socket.socket | None = None
        self._pid = os.getpid()
        self._pending: collections.deque[bytes] = collections.deque()
        self._delay = _RETRY_START
        self._next_attempt = 0.0
        self._outage = 0  # failures since the last success; 0 while all is well
        _install_fork_hook()
        _live.add(self)

    @staticmethod
    def _facility(facility: str | int) -> int:
        if isinstance(facility, str) and facility.lower() in FACILITIES:
            return FACILITIES[facility.lower()]
        if not isinstance(facility, bool) and isinstance(facility, int) and 0 <= facility <= 23:
            return facility
        msg = f"SyslogHandler: facility={facility!r} is not a facility name or number (0-23)"
        raise ValueError(msg)

    @staticmethod
    def _fields(fields: Sequence[str]) -> tuple[str, ...]:
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

    # -- the message ----------------------------------------------------------------------------

    def structured_data(self, record: logging.LogRecord, size: int | None = None) -> str:
        """
        Return the STRUCTURED-DATA for ``record``: one ``ctx`` element, or ``-``.

        It takes at most ``size`` bytes in UTF-8 (by default :attr:`sd_size`, half of
        ``max_size``), or is ``-``. When the parameters do not all fit, the values that need
        little are kept whole and the long ones share the rest equally, each cut to its share
        and ending in ``...``; a parameter that cannot have 16 bytes (or all it needs, if less)
        is left out, from the end of ``fields`` first.

        .. versionchanged:: 0.3.0
           The structured data has a size limit (``size``); it had none.
        """
        if size is None:
            size = self.sd_size
        attrs = record.__dict__
        context: dict[str, Any] | None = None
        values = []
        params = []
        for name in self.fields:
            if name in attrs:
                value = attrs[name]
            else:
                if context is None:
                    base, local = fields_for_record()
                    context = {**base, **local}
                value = context.get(name, MISSING)
            if value is None or value == MISSING:
                continue
            text = str(value)
            if len(text) > size:
                # Escaped, every character takes a byte or more: this value is cut below
                # anyway, and a huge one costs no more than a short one.
                text = text[: size + 1]
            value = param_value(text)
            values.append((name, text, value))
            params.append(f'{name}="{value}"')
        if not params:
            return MISSING
        data = f"[{self.sd_id} {' '.join(params)}]"
        if len(data) <= size and (data.isascii() or len(data.encode()) <= size):
            return data
        return self._fit(values, size)

    def _fit(self, values: list[tuple[str, str, str]], size: int) -> str:
        """Return the STRUCTURED-DATA of ``values`` (name, text, escaped) in ``size`` bytes."""
        room = size - len(self.sd_id) - 2  # "[" SD-ID "]"
        names: list[str] = []
        texts: list[str] = []
        escaped: list[str] = []
        needs: list[int] = []
        shares: list[int] = []
        for name, text, value in values:
            need = _utf8_size(value)
            share = min(need, _MIN_VALUE)
            cost = 1 + len(name) + 3 + share  # SP name="value"
            if cost > room:
                continue  # a later, shorter one may still fit
            room -= cost
            names.append(name)
            texts.append(text)
            escaped.append(value)
            needs.append(need)
            shares.append(share)
        if not names:
            return MISSING
        # What is left goes first to the values that need least, then in equal parts.
        order = sorted(range(len(names)), key=lambda i: needs[i] - shares[i])
        for rank, i in enumerate(order):
            more = min(needs[i] - shares[i], room // (len(order) - rank))
            shares[i] += more
            room -= more
        params = [
            f'{name}="{value if need <= share else _shorten(text, share)}"'
            for name, text, value, need, share in zip(
                names, texts, escaped, needs, shares, strict=True
            )
        ]
        return f"[{self.sd_id} {' '.join(params)}]"

    def encode(self, record: logging.LogRecord) -> bytes:
        """
        Return the RFC 5424 message for ``record``, without framing, at most ``max_size`` bytes.

        The STRUCTURED-DATA takes at most :attr:`sd_size` bytes (see :meth:`structured_data`)
        and the MSG what the header and the structured data leave, cut to fit with ``...``.

        Raises:
            Exception: Whatever formatting the record raises (``emit`` hands it to
                :meth:`handleError`).

        .. versionchanged:: 0.3.0
           Every message fits ``max_size``, whatever its structured data holds.
        """
        pri = self.facility * 8 + severity(record.levelno)
        procid = str(record.process if record.process is not None else os.getpid())
        if not (procid.isdigit() and procid.isascii() and len(procid) <= MAX_PROCID):
            procid = _header_token(procid, MAX_PROCID)
        head = (
            f"<{pri}>1 {timestamp(record.created)} {self.hostname} {self.app_name} {procid} "
            f"{self.msgid} "
        )
        # The header is ASCII and, at its longest (RFC limits), leaves room for "-" and a MSG.
        size = min(self.sd_size, self.max_size - len(head) - _MSG_ROOM)
        data = (head + self.structured_data(record, size)).encode()
        text = self.format(record)
        if not text:
            return data
        message = text.encode("utf-8", "backslashreplace")
        room = self.max_size - len(data) - 1 - len(_BOM)
        if len(message) > room:
            message = _cut(message, max(room - len(_CUT), 0)) + _CUT
        return b"%s %s%s" % (data, _BOM, message)

    # -- sending --------------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``record`` now, or keep it (TCP, TLS) until the server can be reached."""
        if record.levelno < self.level:
            # A listener with respect_handler_level=False calls handle() whatever the level.
            return
        try:
            data = self.encode(record)
        except Exception:  # the stdlib contract: errors go to handleError
            self.handleError(record)
            return
        # Handler.handle() holds self.lock around emit().
        if os.getpid() != self._pid:  # pragma: no cover - the fork hook runs first
            self._after_fork()
        if self.transport == "udp":
            self._send_datagram(data)
        else:
            self._pending.append(b"%d %s" % (len(data), data))
            self._send_pending()
            self._trim()

    def stats(self) -> dict[str, int]:
        """Return the counters: sent, dropped, buffered, connections, failures."""
        with self.lock:  # type: ignore[union-attr] # Handler.createLock() made it
            return {
                "sent": self.sent,
                "dropped": self.dropped,
                "buffered": len(self._pending),
                "connections": self.connections,
                "failures": self.failures,
            }

    def flush(self) -> None:
        """Send the records kept during an outage, if a connection attempt is due."""
        with self.lock:  # type: ignore[union-attr]
            if self._pending and os.getpid() == self._pid:
                self._send_pending()

    def close(self) -> None:
        """Send what is kept (one attempt, whatever the back-off), then close the socket."""
        with self.lock:  # type: ignore[union-attr]
            if self._pending and os.getpid() == self._pid:
                self._next_attempt = 0.0
                self._send_pending()
            if self._pending:
                self.dropped += len(self._pending)
                write_line(
                    f"ctxlog: SyslogHandler closed with {len(self._pending)} records not sent "
                    f"to {self.host}:{self.port}"
                )
                self._pending.clear()
            sock = self._sock
            if isinstance(sock, ssl.SSLSocket) and os.getpid() == self._pid:
                # A TLS goodbye (close_notify), or rsyslog logs the end of the connection as an
                # error. Waiting for the server's answer is bounded by the socket's timeout.
                with contextlib.suppress(OSError, ValueError):
                    self._sock = sock.unwrap()
            self._disconnect()
        _live.discard(self)
        super().close()

    # -- under self.lock ------------------------------------------------------------------------

    def _send_datagram(self, data: bytes) -> None:
        for _ in range(2):
            sock = self._sock or self._connect(socket.SOCK_DGRAM)
            if sock is None:
                break
            try:
                sock.send(data)
            except OSError as error:
                # ECONNREFUSED reports an earlier datagram that nobody received; try this one
                # once more on a new socket.
                self._failed(error, backoff=False)
                continue
            self.sent += 1
            self._succeeded()
            return
        self.dropped += 1

    def _send_pending(self) -> None:
        pending = self._pending
        fresh = False
        while pending:
            sock = self._sock
            if sock is not None and not fresh and _peer_closed(sock, self.timeout):
                self._disconnect()  # the server closed it, a restart perhaps: not a failure
                sock = None
            if sock is None:
                sock = self._connect(socket.SOCK_STREAM)
                if sock is None:
                    return
                fresh = True
            batch = [pending[0]]
            size = len(batch[0])
            for frame in list(pending)[1:64]:
                if size + len(frame) > _BATCH:
                    break
                batch.append(frame)
                size += len(frame)
            try:
                sock.sendall(b"".join(batch))
            except OSError as error:
                # A connection that worked before gets one new attempt at once; a new one that
                # fails means the server is in trouble: back off.
                self._failed(error, backoff=fresh)
                if fresh:
                    return
                fresh = True  # no second immediate attempt
                continue
            for _ in batch:
                pending.popleft()
            self.sent += len(batch)
            self._succeeded()

    def _trim(self) -> None:
        over = len(self._pending) - self.buffer
        if over > 0:
            if not self.dropped:
                write_line(
                    f"ctxlog: SyslogHandler buffer for {self.host}:{self.port} is full "
                    f"({self.buffer} records); dropping the oldest, counted in .dropped"
                )
            for _ in range(over):
                self._pending.popleft()
            self.dropped += over

    def _connect(self, kind: socket.SocketKind) -> socket.socket | None:
        if time.monotonic() < self._next_attempt:
            return None
        try:
            if kind == socket.SOCK_DGRAM:
                family, _, proto, _, sockaddr = socket.getaddrinfo(
                    self.host, self.port, 0, socket.SOCK_DGRAM
                )[0]
                sock = socket.socket(family, socket.SOCK_DGRAM, proto)
                try:
                    sock.connect(sockaddr)  # a connected socket hears of ICMP port unreachable
                except OSError:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    if self.tls is not None:
                        sock = self.tls.wrap_socket(sock, server_hostname=self.host)
                except (OSError, ValueError):
                    sock.close()
                    raise
        except (OSError, ValueError) as error:
            self._failed(error, backoff=True)
            return None
        self._sock = sock
        self.connections += 1
        return sock

    def _failed(self, error: OSError | ValueError, *, backoff: bool) -> None:
        self.failures += 1
        self._disconnect()
        if backoff:
            self._next_attempt = time.monotonic() + self._delay
            self._delay = min(self._delay * 2, _RETRY_MAX)
        if not self._outage:
            kept = f"keeping up to {self.buffer} records, " if self.transport != "udp" else ""
            write_line(
                f"ctxlog: SyslogHandler cannot send to {self.host}:{self.port} over "
                f"{self.transport} ({error!r}); {kept}retrying with back-off, further failures "
                "are counted, not printed"
            )
        self._outage += 1

    def _succeeded(self) -> None:
        self._delay = _RETRY_START
        if self._outage and self.transport != "udp":
            # A datagram the kernel took says nothing about the server: over UDP only the
            # first failure is printed, ever.
            write_line(
                f"ctxlog: SyslogHandler reaches {self.host}:{self.port} again after "
                f"{self._outage} failures"
            )
            self._outage = 0

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):  # close may report an earlier failure
                sock.close()

    def _after_fork(self) -> None:
        # The connection belongs to the parent: forget it without a TLS goodbye or a shutdown,
        # and leave the parent's backlog to the parent.
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                os.close(sock.detach())
        self._pid = os.getpid()
        self._pending.clear()
        # The counters tell about this process.
        self.sent = self.dropped = self.connections = self.failures = 0
        self._delay = _RETRY_START
        self._next_attempt = 0.0
        self._outage = 0

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<SyslogHandler {self.transport}://{self.host}:{self.port} ({level})>"
