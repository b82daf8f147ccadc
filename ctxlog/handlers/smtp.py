"""
:class:`DigestSMTPHandler`: error reports by e-mail, at most one per interval.

It sends them the way an operator wants them: the first record after a quiet spell at once, then
at most one e-mail per ``interval`` with everything that happened in it. An error storm of
thousands of records becomes a handful of e-mails, not thousands of SMTP connections, and a mail
server that is down or slow costs the application nothing. Put it behind
:func:`ctxlog.nonblocking`: talking to the server takes time.
"""

from __future__ import annotations

import email.utils
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Final

from ctxlog._lifecycle import register, unregister
from ctxlog._stderr import write_line
from ctxlog.handlers.options import count, seconds
from ctxlog.record.escape import LINE_BREAK, escape_block, sanitize
from ctxlog.record.formatter import Formatter

__all__ = ["DigestSMTPHandler"]

_NAME = "DigestSMTPHandler"
_MAX_SUBJECT: Final = 200


class DigestSMTPHandler(logging.Handler):
    """
    E-mail records in digests: at most one e-mail per ``interval`` seconds.

    The first record after a quiet spell is sent at once. Records that follow within
    ``interval`` are collected (up to ``capacity``; beyond that only counted) and sent together
    when the interval is over. :meth:`close` and :meth:`flush` send what is collected.

    If the server cannot be reached, the handler keeps what it collected (within ``capacity``),
    writes one line to stderr, counts the failures, and tries again once per interval; when the
    server is back it says so once and goes on. Its ``emit`` can take up to ``timeout`` seconds
    while it talks to the server: put it behind :func:`ctxlog.nonblocking`.

    The subject is the text given here, plus a count; it is never built from record data, so a
    request cannot inject headers into the e-mail. The body holds one record per line, formatted
    by :class:`ctxlog.Formatter` (``"%(message)s"``, the traceback on ``"  | "`` lines) unless
    you set another formatter; whatever the formatter, carriage returns, escape sequences, bidi
    controls and lone surrogates in the body are escaped.

    Args:
        mailhost: ``"host"`` or ``("host", port)``.
        fromaddr: The sender address.
        toaddrs: One address or a list of them.
        subject: The subject line (control and bidi characters are escaped, as in a log line).
        credentials: ``(username, password)`` to log in with.
        secure: ``None`` for plain SMTP; an :class:`ssl.SSLContext` or ``()`` (default context)
            to use STARTTLS.
        timeout: Seconds to wait for the server on each operation.
        interval: Seconds between e-mails.
        capacity: The most records one e-mail carries; the others are counted in it.

    Raises:
        ValueError: An empty recipient list, a non-positive interval, timeout or capacity.
        TypeError: ``secure`` is neither ``None``, ``()`` nor an SSL context.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
       The default formatter is :class:`ctxlog.Formatter`; the body's escaping is ctxlog's one
       rule, less line feeds, tabs and backslashes.
    """

    def __init__(
        self,
        mailhost: str | tuple[str, int],
        fromaddr: str,
        toaddrs: str | Sequence[str],
        subject: str,
        *,
        credentials: tuple[str, str] | None = None,
        secure: ssl.SSLContext | tuple[()] | None = None,
        timeout: float = 10.0,
        interval: float = 60.0,
        capacity: int = 100,
    ) -> None:
        super().__init__()
        self.setFormatter(Formatter())
        self.mailhost, self.mailport = _mail_server(mailhost)
        self.fromaddr = fromaddr
        self.toaddrs = _recipients(fromaddr, toaddrs)
        self.subject = sanitize(str(subject), _MAX_SUBJECT)
        self.credentials = credentials
        if secure is not None and secure != () and not isinstance(secure, ssl.SSLContext):
            msg = f"{_NAME}: secure={secure!r}; use None, () or an ssl.SSLContext"
            raise TypeError(msg)
        self.secure = secure
        self.timeout = seconds(_NAME, "timeout", timeout)
        self.interval = seconds(_NAME, "interval", interval)
        self.capacity = count(_NAME, "capacity", capacity)
        #: E-mails sent, records they carried, records left out (over capacity), failed sends.
        self.sent = 0
        self.records_sent = 0
        self.omitted = 0
        self.failures = 0
        self._buffer: list[str] = []
        self._over = 0
        self._last_attempt = float("-inf")
        self._timer: threading.Timer | None = None
        self._failing = False
        self._failed_since = 0
        self._closed = False
        register(self)

    def emit(self, record: logging.LogRecord) -> None:
        """Collect ``record``; send now if no e-mail went out within the last interval."""
        if record.levelno < self.level:
            # A listener with respect_handler_level=False (the standard library's default)
            # calls handle() whatever the level: an ERROR handler must not mail INFO records.
            return
        try:
            text = self.format(record)
        except Exception:  # the stdlib contract: errors go to handleError
            self.handleError(record)
            return
        # Handler.handle() holds self.lock around emit(); the timer thread takes it too.
        if len(self._buffer) < self.capacity:
            self._buffer.append(text)
        else:
            self._over += 1
        if self._timer is not None:
            return
        wait = self._last_attempt + self.interval - time.monotonic()
        if wait <= 0:
            self._send()
        elif not self._closed:
            self._schedule(wait)
        # After close() no timer runs: what comes within the interval waits for the next record
        # after it (still at most one e-mail per interval).

    def _schedule(self, wait: float) -> None:
        timer = threading.Timer(wait, self._on_timer)
        timer.name = f"ctxlog-smtp-digest-{id(self):x}"
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _on_timer(self) -> None:
        with self.lock:  # type: ignore[union-attr] # Handler.createLock() made it
            if self._timer is not threading.current_thread():
                # flush() cancelled this timer while it waited for the lock, and may have
                # scheduled another one since: that one is in charge.
                return
            self._timer = None
            if self._buffer or self._over:
                self._send()

    def flush(self) -> None:
        """Send what is collected now, whatever the interval."""
        with self.lock:  # type: ignore[union-attr]
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._buffer or self._over:
                self._send()

    def close(self) -> None:
        """Send what is collected (one attempt, no retry afterwards), then close."""
        with self.lock:  # type: ignore[union-attr]
            self._closed = True
        try:
            self.flush()
            with self.lock:  # type: ignore[union-attr]
                unsent = len(self._buffer) + self._over
                if unsent:
                    self.omitted += unsent
                    self._buffer, self._over = [], 0
                    write_line(
                        f"ctxlog: DigestSMTPHandler closed with {unsent} records not sent to "
                        f"{self.mailhost}:{self.mailport}"
                    )
        finally:
            unregister(self)
            super().close()

    def _send(self) -> None:
        lines, over = self._buffer, self._over
        self._buffer, self._over = [], 0
        self._last_attempt = time.monotonic()
        try:
            self._deliver(self._message(lines, over))
        except Exception as error:  # OSError, SMTPException, a bad header: count, retry
            self.failures += 1
            self._failed_since += 1
            # Keep what fits for the next attempt; count the rest as omitted.
            keep = lines[: self.capacity]
            self.omitted += len(lines) - len(keep)
            self._buffer, self._over = keep + self._buffer, over + self._over
            del self._buffer[self.capacity :]
            if not self._failing:
                self._failing = True
                write_line(
                    f"ctxlog: DigestSMTPHandler could not send to {self.mailhost}:{self.mailport}"
                    f" ({error!r}); retrying every {self.interval:g} s, further failures are "
                    "counted in .failures, not printed"
                )
            if self._timer is None and not self._closed:
                self._schedule(self.interval)
            return
        self.sent += 1
        self.records_sent += len(lines)
        self.omitted += over
        if self._failing:
            self._failing = False
            write_line(
                f"ctxlog: DigestSMTPHandler reaches {self.mailhost}:{self.mailport} again "
                f"after {self._failed_since} failed attempts"
            )
            self._failed_since = 0

    def _message(self, lines: list[str], over: int) -> EmailMessage:
        count = len(lines) + over
        message = EmailMessage()
        message["From"] = self.fromaddr
        message["To"] = ", ".join(self.toaddrs)
        message["Date"] = email.utils.formatdate(localtime=True)
        message["Subject"] = self.subject if count == 1 else f"{self.subject} ({count} records)"
        # The records' own text, laid out in lines by the formatter: what no reader should get
        # raw (CR, ESC, bidi controls, lone surrogates, which would lose the whole digest) is
        # escaped, line feeds and tabs are kept. ctxlog.Formatter (the default) has already put
        # each record on one line, its traceback on "  | " lines.
        body = escape_block("\n".join(lines))
        if over:
            body += f"\n\n... and {over} more records (more than capacity={self.capacity})\n"
        message.set_content(body)
        return message

    def _deliver(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.mailhost, self.mailport, timeout=self.timeout) as smtp:
            if self.secure is not None:
                context = self.secure if isinstance(self.secure, ssl.SSLContext) else None
                smtp.starttls(context=context or ssl.create_default_context())
            if self.credentials is not None:
                smtp.login(*self.credentials)
            smtp.send_message(message, self.fromaddr, self.toaddrs)

    def after_fork_in_child(self) -> None:
        """
        Start afresh in a forked child (ctxlog's fork hook calls it).

        The parent's timer thread does not exist here, and the parent sends what it collected.

        .. versionadded:: 0.3.0
        """
        self._timer = None
        self._buffer, self._over = [], 0

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<DigestSMTPHandler {self.mailhost}:{self.mailport} ({level})>"


def _mail_server(mailhost: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(mailhost, tuple | list):
        return str(mailhost[0]), int(mailhost[1])
    return str(mailhost), smtplib.SMTP_PORT


def _recipients(fromaddr: str, toaddrs: str | Sequence[str]) -> list[str]:
    """Return ``toaddrs`` as a list, if it and ``fromaddr`` hold e-mail addresses."""
    recipients = [toaddrs] if isinstance(toaddrs, str) else list(toaddrs)
    if not recipients:
        msg = f"{_NAME}: toaddrs is empty; give at least one recipient"
        raise ValueError(msg)
    for name, address in [("fromaddr", fromaddr)] + [("toaddrs", a) for a in recipients]:
        if (
            not isinstance(address, str)
            or not address.strip()
            or LINE_BREAK.search(address) is not None
        ):
            msg = f"{_NAME}: {name} has {address!r}, not an e-mail address"
            raise ValueError(msg)
    return recipients
