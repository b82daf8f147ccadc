"""
:class:`JSONSocketHandler`: send records to ``ctxlog receive`` as length-prefixed JSON frames.

The standard library's SocketHandler pickles records, and the receiver that unpickles them runs
whatever code the bytes name. This handler sends the frames of :mod:`ctxlog.wire` instead, and
differs from SocketHandler where that one loses records or corrupts the stream:

- **One connection per process.** The socket is opened on the first record a process sends and
  checked against :func:`os.getpid` before every send: a worker forked from a master that had
  already connected opens its own connection and never writes into the one it inherited (two
  processes writing into one TCP stream interleave their frames).
- **Nothing is lost silently while the receiver is away.** Frames that cannot be sent wait in a
  bounded buffer (``buffer`` frames, at most ``buffer_bytes`` bytes) and go out, in order, as
  soon as a connection succeeds; a small thread retries with exponential back-off while frames
  are waiting, so they do not depend on the next record to leave. When the buffer is full the
  *oldest* frame is dropped and counted in :attr:`JSONSocketHandler.dropped`; the first drop is
  reported on stderr, and so are the first failure of an outage and its end.
- **A closed connection is noticed before writing.** The receiver never sends anything, so a
  connection that has become readable was closed by it (idle timeout, restart): the handler
  opens a new one instead of writing a record into a dead one.
- **A frame is never cut.** If a send fails or times out part-way through a frame, that
  connection is closed (the receiver discards the half frame) and the whole frame is sent again
  on the next connection.

Sending blocks for up to ``timeout`` seconds while a receiver stalls: put the handler behind
:func:`ctxlog.nonblocking` so that this happens in the delivery thread, not in a request. Name
resolution happens in that thread too, when a connection is made.

Delivery is *at most once* across a connection that breaks: frames the kernel had accepted
before the receiver went away cannot be told apart from frames it had read, and are not sent
again. Everything sent while the receiver is down, or before a send fails, is buffered and sent.

With a ``secret``, a frame is signed when it is sent, not when its record is logged: its
sequence number and time (which the receiver checks to refuse a replayed frame) are those of
the send, so a record kept through a long outage is still accepted. A frame sent again after a
failed send is signed again.
"""

from __future__ import annotations

import logging
import ssl

from ctxlog import wire
from ctxlog._lifecycle import register
from ctxlog.handlers.linked import LinkedHandler
from ctxlog.handlers.options import count, seconds, tcp_port
from ctxlog.handlers.sender import StreamSender
from ctxlog.record.stamp import stamp

__all__ = ["JSONSocketHandler"]

_NAME = "JSONSocketHandler"


class JSONSocketHandler(LinkedHandler):
    """
    Send each record to a ``ctxlog receive`` over TCP (optionally TLS) as one JSON frame.

    Args:
        host: The receiver's host name or address.
        port: The receiver's port.
        tls: ``None`` for plain TCP; ``True`` for TLS with the system's trusted certificates
            and host name checking; or an :class:`ssl.SSLContext` of your own.
        secret: A key shared with the receiver (``ctxlog receive --secret-file``); every
            frame then carries a sender id, a sequence number, the time it was sent and an
            HMAC-SHA256 tag over them and the record. At least 16 bytes; a ``str`` is encoded
            as UTF-8.
        timeout: Seconds a connection attempt or a send may take before it counts as failed.
        buffer: The most frames kept while the receiver cannot be reached.
        buffer_bytes: The most bytes those frames may take together.
        retry_start: The first wait before reconnecting, in seconds; it doubles on each
            failure up to ``retry_max``.
        retry_max: The longest wait between attempts.

    Raises:
        ValueError: A port, timeout, buffer size or back-off that is not usable, or a secret
            shorter than 16 bytes.
        TypeError: ``tls`` is neither ``None``, a bool nor an SSL context.

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
       Signed frames carry a sender id, sequence and time, set when the frame is sent; a
       record holding a lone surrogate is sent (escaped), no longer dropped. A connection that
       breaks gets one new attempt at once, the back-off starts again after a send (not a
       connection) succeeds, a forked child's counters start at 0, TLS connections end with a
       TLS goodbye, and the handler sends in batches behind :func:`ctxlog.nonblocking`
       (:meth:`set_batching`).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | bool | None = None,
        secret: bytes | str | None = None,
        timeout: float = 5.0,
        buffer: int = 10_000,
        buffer_bytes: int = 16 * 1024 * 1024,
        retry_start: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        super().__init__()
        if not isinstance(host, str) or not host:
            msg = f"{_NAME}: host={host!r} is not a host name or address"
            raise ValueError(msg)
        if not tcp_port(port):
            msg = f"{_NAME}: port={port!r} is not a TCP port (1-65535)"
            raise ValueError(msg)
        self.host, self.port = host, port
        self.tls = _tls_context(tls)
        signer = _signer(secret)
        self.timeout = seconds(_NAME, "timeout", timeout)
        self.retry_start = seconds(_NAME, "retry_start", retry_start)
        self.retry_max = seconds(_NAME, "retry_max", retry_max)
        self.buffer = count(_NAME, "buffer", buffer)
        self.buffer_bytes = count(_NAME, "buffer_bytes", buffer_bytes)
        self._signed = signer is not None
        self._sender = StreamSender(
            _NAME,
            host,
            port,
            tls=self.tls,
            timeout=self.timeout,
            lock=self.lock,  # type: ignore[arg-type] # Handler.createLock() made it
            buffer=self.buffer,
            buffer_bytes=self.buffer_bytes,
            retry_start=self.retry_start,
            retry_max=self.retry_max,
            seal=None if signer is None else signer.sign,
        )
        register(self._sender)

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``record`` as one frame now, or keep it until the receiver can be reached."""
        if record.levelno < self.level:
            return
        if "request_id" not in record.__dict__:
            # Attached directly, not behind ctxlog's QueueHandler or a ContextFilter: this is
            # the thread that logged, so the request's context is the current one.
            stamp(record)
        try:
            body = wire.encode_body(record)
        except Exception:  # a record the wire format cannot carry; the stdlib contract
            self._sender.dropped += 1
            self.handleError(record)
            return
        # Handler.handle() holds self.lock; the sender's retry thread takes it too. A signed
        # frame is signed as it leaves (the receiver checks its time and sequence).
        self._sender.push(body if self._signed else wire.unsigned(body))

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        tls = " tls" if self.tls is not None else ""
        return f"<JSONSocketHandler {self.host}:{self.port}{tls} ({level})>"


def _tls_context(tls: ssl.SSLContext | bool | None) -> ssl.SSLContext | None:
    if tls is True:
        return ssl.create_default_context()
    if tls is None or tls is False:
        return None
    if not isinstance(tls, ssl.SSLContext):
        msg = f"{_NAME}: tls={tls!r}; use None, True or an ssl.SSLContext"
        raise TypeError(msg)
    return tls


def _signer(secret: bytes | str | None) -> wire.Signer | None:
    if isinstance(secret, str):
        secret = secret.encode()
    if secret is None:
        return None
    if not isinstance(secret, bytes) or len(secret) < 16:
        msg = f"{_NAME}: secret must be at least 16 bytes (use a random key)"
        raise ValueError(msg)
    return wire.Signer(secret)
