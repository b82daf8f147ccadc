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
  in a small buffer and go out, in order, as soon as the server is back: a small thread retries
  with back-off while records wait.

Sending can block for up to ``timeout`` seconds while the server is slow or unreachable: put the
handler behind :func:`ctxlog.nonblocking`. Name resolution happens when a connection is made.

The message is built with :mod:`ctxlog.handlers.rfc5424` (the header) and
:mod:`ctxlog.handlers.structured_data`; it leaves through a
:class:`~ctxlog.handlers.sender.StreamSender` (TCP, TLS) or a
:class:`~ctxlog.handlers.datagram.DatagramSender` (UDP).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ctxlog._lifecycle import register
from ctxlog.context import FIELDS, MISSING
from ctxlog.handlers import structured_data as sd
from ctxlog.handlers.datagram import DatagramSender
from ctxlog.handlers.linked import LinkedHandler
from ctxlog.handlers.options import count, seconds, tcp_port
from ctxlog.handlers.rfc5424 import (
    BOM,
    CUT,
    DOCUMENTATION_PEN,
    MAX_APP_NAME,
    MAX_HOSTNAME,
    MAX_MSGID,
    MAX_PROCID,
    MAX_UDP,
    MIN_SIZE,
    MSG_ROOM,
    TRANSPORTS,
    cut,
    facility_code,
    header_field,
    header_token,
    param_names,
    sd_id,
    severity,
    timestamp,
)
from ctxlog.handlers.sender import StreamSender

__all__ = ["SyslogHandler"]

_NAME = "SyslogHandler"
#: Back-off between connection attempts after a failure: doubles from the first to the last.
_RETRY_START: Final = 0.25
_RETRY_MAX: Final = 30.0


class SyslogHandler(LinkedHandler):
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
    records (the oldest are dropped first) and go out once the server is back: a small thread
    retries while records wait. A record that cannot be formatted goes to :meth:`handleError`.

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
       made a header token. Records kept through an outage are sent by a retry thread, not only
       with the next record; behind :func:`ctxlog.nonblocking`, TCP and TLS send in batches
       (:meth:`set_batching`).
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
        self.host, self.port = _address(address)
        if transport not in TRANSPORTS:
            msg = f"{_NAME}: transport={transport!r}; use 'udp', 'tcp' or 'tls'"
            raise ValueError(msg)
        self.transport = transport
        self.facility = facility_code(facility)
        self.app_name = header_field("app_name", app_name, MAX_APP_NAME) or header_token(
            Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "", MAX_APP_NAME
        )
        self.hostname = header_field("hostname", hostname, MAX_HOSTNAME) or header_token(
            socket.gethostname(), MAX_HOSTNAME
        )
        self.msgid = header_field("msgid", msgid, MAX_MSGID) or MISSING
        self.sd_id = sd_id(enterprise_id)
        self.tls = _tls_context(tls, transport)
        self.timeout = seconds(_NAME, "timeout", timeout)
        self.fields = param_names(fields)
        self.max_size = _max_size(max_size, transport)
        #: The most bytes the STRUCTURED-DATA may take: half of the message.
        self.sd_size = max_size // 2
        self.buffer = count(
            _NAME, "buffer", buffer, least=0, what="a number of records (0 or more)"
        )
        self._sender = self._make_sender()
        self._octet_counting = transport != "udp"
        register(self._sender)

    def _make_sender(self) -> StreamSender | DatagramSender:
        if self.transport == "udp":
            return DatagramSender(
                _NAME,
                self.host,
                self.port,
                transport="udp",
                timeout=self.timeout,
                retry_start=_RETRY_START,
                retry_max=_RETRY_MAX,
            )
        return StreamSender(
            _NAME,
            self.host,
            self.port,
            tls=self.tls,
            timeout=self.timeout,
            lock=self.lock,  # type: ignore[arg-type] # Handler.createLock() made it
            buffer=self.buffer,
            retry_start=_RETRY_START,
            retry_max=_RETRY_MAX,
        )

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
        return sd.structured_data(
            self.sd_id, self.fields, record, self.sd_size if size is None else size
        )

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
            procid = header_token(procid, MAX_PROCID)
        head = (
            f"<{pri}>1 {timestamp(record.created)} {self.hostname} {self.app_name} {procid} "
            f"{self.msgid} "
        )
        # The header is ASCII and, at its longest (RFC limits), leaves room for "-" and a MSG.
        size = min(self.sd_size, self.max_size - len(head) - MSG_ROOM)
        data = (head + self.structured_data(record, size)).encode()
        text = self.format(record)
        if not text:
            return data
        message = text.encode("utf-8", "backslashreplace")
        room = self.max_size - len(data) - 1 - len(BOM)
        if len(message) > room:
            message = cut(message, max(room - len(CUT), 0)) + CUT
        return b"%s %s%s" % (data, BOM, message)

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
        if self._octet_counting:  # RFC 6587: LEN SP MSG
            data = b"%d %s" % (len(data), data)
        # Handler.handle() holds self.lock around emit(); the sender's retry thread takes it.
        self._sender.push(data)

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<SyslogHandler {self.transport}://{self.host}:{self.port} ({level})>"


def _address(address: tuple[str, int]) -> tuple[str, int]:
    if (
        not isinstance(address, tuple | list)
        or len(address) != 2
        or not isinstance(address[0], str)
        or not address[0]
        or not tcp_port(address[1])
    ):
        msg = f"{_NAME}: address={address!r} is not a (host, port) pair"
        raise ValueError(msg)
    return address[0], address[1]


def _tls_context(tls: ssl.SSLContext | None, transport: str) -> ssl.SSLContext | None:
    if tls is not None and not isinstance(tls, ssl.SSLContext):
        msg = f"{_NAME}: tls={tls!r}; use None or an ssl.SSLContext"
        raise TypeError(msg)
    if tls is not None and transport != "tls":
        msg = f"{_NAME}: tls= is given but transport={transport!r}; use 'tls'"
        raise ValueError(msg)
    if transport == "tls" and tls is None:
        return ssl.create_default_context()
    return tls


def _max_size(max_size: int, transport: str) -> int:
    limit = MAX_UDP if transport == "udp" else sys.maxsize
    if (
        isinstance(max_size, bool)
        or not isinstance(max_size, int)
        or not MIN_SIZE <= max_size <= limit
    ):
        most = f"-{MAX_UDP}" if transport == "udp" else " or more"
        msg = f"{_NAME}: max_size={max_size!r} is not a size in bytes ({MIN_SIZE}{most})"
        raise ValueError(msg)
    return max_size
