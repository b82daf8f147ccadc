"""
Where the demo's records go, and what arrived there.

:class:`Destinations` starts, on free ports of 127.0.0.1: ``ctxlog receive`` (a
:class:`~ctxlog.receiver.Receiver` in a thread) writing to a temporary file, fed by a
:class:`~ctxlog.handlers.JSONSocketHandler` behind :func:`ctxlog.nonblocking`; the slow SMTP
server of :mod:`ctxlog.demo.smtp`; and the standard library's ``SMTPHandler`` twice, once to
attach directly and once behind :func:`ctxlog.nonblocking`. A :class:`Tally` counts, where they
are logged, the records sent and the ERRORs mailed; :meth:`Destinations.count` compares that
with what arrived, as a :class:`Delivery`.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Final

import ctxlog
from ctxlog.demo.smtp import SlowSMTPServer
from ctxlog.handlers import JSONSocketHandler
from ctxlog.receiver import CONTINUATION, LineFormatter, Receiver, ReceiverThread

__all__ = ["MAIL_FORMAT", "Delivery", "Destinations", "Mailer", "Tally"]

MAIL_FORMAT: Final = "%(asctime)s %(ip)s %(user)s %(request_id)s %(levelname)s %(message)s"


class Tally(logging.Handler):
    """Count, where they are logged, the records sent on to the receiver and the ERRORs mailed."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records = 0
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Count one record; Handler.handle() holds the handler's lock around this."""
        self.records += 1
        if record.levelno >= logging.ERROR:
            self.errors += 1


class Mailer(logging.handlers.SMTPHandler):
    """The standard library's SMTPHandler, counting the records it failed to send."""

    failures = 0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - stdlib name
        """Count the failure, then report it as the standard library does."""
        self.failures += 1
        super().handleError(record)


@dataclass(frozen=True)
class Delivery:
    """What was sent and what arrived; :meth:`problems` says what was lost."""

    emails_sent: int
    emails_received: int
    records_logged: int
    records_received: int
    dropped: int = 0
    failed: int = 0

    def problems(self) -> list[str]:
        """Return one line per kind of loss; empty when everything arrived."""
        found = []
        if self.emails_received != self.emails_sent:
            found.append(
                f"{self.emails_received} e-mails arrived at the SMTP server, "
                f"{self.emails_sent} were sent"
            )
        if self.records_received != self.records_logged:
            found.append(
                f"{self.records_received} records were written by ctxlog receive, "
                f"{self.records_logged} were logged"
            )
        if self.dropped:
            found.append(f"{self.dropped} records were dropped by full queues")
        if self.failed:
            found.append(f"{self.failed} records could not be handed to a handler")
        return found

    def verdict(self) -> str:
        """Return the report's last line: ``nothing lost: ...`` or ``LOST: ...``."""
        problems = self.problems()
        if problems:
            return "LOST: " + "; ".join(problems) + "."
        return (
            f"nothing lost: {self.emails_received}/{self.emails_sent} e-mails and "
            f"{self.records_received}/{self.records_logged} records arrived; no record dropped, "
            "no handler failed."
        )


class Destinations:
    """Every place the demo's records go, started in order; ``stack`` stops them in reverse."""

    def __init__(self, stack: contextlib.ExitStack, smtp_delay: float) -> None:
        self._stack = stack
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ctxlog-demo-")))

        # ctxlog receive, writing to a file.
        self.log_file = folder / "shop.log"
        file_handler = logging.FileHandler(self.log_file, encoding="utf-8")
        stack.callback(file_handler.close)
        file_handler.setFormatter(LineFormatter())

        def write(record: logging.LogRecord) -> None:
            file_handler.handle(record)

        self.receiver = Receiver("127.0.0.1", 0, dispatch=write)
        self.receiver_thread = ReceiverThread(self.receiver).start()
        stack.callback(self.receiver_thread.stop)

        # The slow SMTP server.
        self.smtp = stack.enter_context(SlowSMTPServer("127.0.0.1", 0, delay=smtp_delay))

        # Every record, counted, and sent on to the receiver without blocking.
        self.tally = Tally()
        self.sender = JSONSocketHandler("127.0.0.1", self.receiver.port)
        stack.callback(self.sender.close)
        self.to_receiver = ctxlog.nonblocking([self.sender])
        stack.callback(self.to_receiver.close)

        # ERROR records e-mailed, by a handler attached directly or by one behind nonblocking().
        self.mail_direct = self._mailer()
        self.mail_queued = self._mailer()
        self.to_mail = ctxlog.nonblocking([self.mail_queued])
        stack.callback(self.to_mail.close)

    def _mailer(self) -> Mailer:
        mailer = Mailer(
            ("127.0.0.1", self.smtp.port),
            "shop@example.com",
            ["ops@example.com"],
            "shop: an ERROR was logged",
            timeout=10.0,
        )
        mailer.setLevel(logging.ERROR)
        mailer.addFilter(ctxlog.ContextFilter())  # attached directly; behind the queue: stamped
        mailer.setFormatter(ctxlog.Formatter(MAIL_FORMAT, "%H:%M:%S"))
        self._stack.callback(mailer.close)
        return mailer

    def hurry(self) -> None:
        """Make the SMTP server fast, so that closing delivers what is queued at once."""
        self.smtp.delay = 0.0

    def count(self) -> Delivery:
        """Close the senders, stop the receiver, and count what arrived."""
        self.to_mail.close()
        self.to_receiver.close()
        self.sender.close()
        # The receiver takes in what was sent, then stops; its file is complete.
        self.receiver_thread.stop()
        with self.log_file.open(encoding="utf-8") as lines:
            written = sum(1 for line in lines if not line.startswith(CONTINUATION))
        mail_stats, sent_stats = self.to_mail.stats(), self.to_receiver.stats()
        return Delivery(
            emails_sent=self.tally.errors,
            emails_received=len(self.smtp.received),
            records_logged=self.tally.records,
            records_received=written,
            dropped=mail_stats["dropped"] + sent_stats["dropped"] + self.sender.dropped,
            failed=self.mail_direct.failures + self.mail_queued.failures + sent_stats["failed"],
        )

    def mail_about(self, request_id: str) -> EmailMessage | None:
        """Return the first e-mail received that mentions ``request_id``."""
        for item in self.smtp.received:
            message = item.message()
            if request_id in message.get_content():
                return message
        return None

    def line_about(self, request_id: str) -> str | None:
        """Return the first ERROR line of the receiver's file that mentions ``request_id``."""
        with self.log_file.open(encoding="utf-8") as lines:
            for line in lines:
                if request_id in line and " ERROR " in line:
                    return line.rstrip("\n")
        return None
