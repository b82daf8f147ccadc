"""
``ctxlog demo``: the whole story on 127.0.0.1, with the standard library only.

The pieces, all in this process and on free ports:

* a small shop, a plain WSGI app behind :class:`ctxlog.WSGIMiddleware`, served by ``wsgiref``
  with one thread per request; the client plays a reverse proxy on 127.0.0.1 that appends each
  user's address to ``X-Forwarded-For``;
* a slow SMTP server (:mod:`ctxlog.demo.smtp`, 200 ms per message) that receives an e-mail for
  every ERROR record, sent by the standard library's ``SMTPHandler``;
* ``ctxlog receive`` (:class:`ctxlog.receiver.Receiver` in a thread) writing every record it is
  sent by :class:`ctxlog.handlers.JSONSocketHandler` behind :func:`ctxlog.nonblocking` to a
  temporary file.

Then: a burst of visits whose log lines are printed; the same burst of failing checkouts twice,
first with the SMTP handler attached directly, then behind :func:`ctxlog.nonblocking`, timed at
the client; and a count of what arrived. The exit status is 1 if an e-mail or a record was lost.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import logging
import logging.handlers
import math
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import IO, TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import ctxlog
from ctxlog.demo.smtp import Received, SlowSMTPServer
from ctxlog.handlers import JSONSocketHandler
from ctxlog.receiver import CONTINUATION, LineFormatter, Receiver, ReceiverThread

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["Delivery", "run"]

FORMAT: Final = (
    "%(asctime)s %(ip)-15s %(user)-6s %(request_id).12s %(levelname)-7s %(name)-13s %(message)s"
)
MAIL_FORMAT: Final = "%(asctime)s %(ip)s %(user)s %(request_id)s %(levelname)s %(message)s"
#: Seconds the demo's SMTP server takes to accept each message.
SMTP_DELAY: Final = 0.2
#: Failing checkouts in each of the two timed bursts.
REQUESTS: Final = 9
#: Requests in flight at once (one per user).
CONCURRENCY: Final = 3

#: user -> (password, the address the proxy saw them come from)
USERS: Final = {
    "alice": ("wonderland", "203.0.113.7"),
    "bob": ("builder", "198.51.100.23"),
    "carol": ("singer", "2001:db8::c0:1"),
}
DECLINED: Final = "/pay?card=declined"

log = ctxlog.get_logger("demo.shop")


# -- the shop --------------------------------------------------------------------------------


def _authenticate(environ: WSGIEnvironment) -> str | None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    known = USERS.get(name)
    return name if known is not None and known[0] == password else None


def shop(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Serve the demo shop: a catalogue, a payment (which a declined card fails) and a receipt."""
    user = _authenticate(environ)
    if user is not None:
        ctxlog.bind(user=user)  # after authentication, as a view would
    path = environ.get("PATH_INFO", "/")
    # The raw path, as a view might log it: ctxlog.Formatter escapes it in the line.
    log.info("looking at %s", path)
    if path == "/pay":
        if user is None:
            log.warning("refused: payment without login")
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"log in first\n"]
        card = parse_qs(environ.get("QUERY_STRING", "")).get("card", [""])[0]
        if card == "declined":
            log.error("payment of %s EUR failed: card declined", 42)  # e-mailed
            start_response("402 Payment Required", [("Content-Type", "text/plain")])
            return [b"card declined\n"]
        ctxlog.bind(basket="3 items")
        log.info("paid %s EUR", 42)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _receipt()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"welcome\n"]


def _receipt() -> Iterator[bytes]:
    # Runs while the server sends the body, after shop() has returned: the context is still there.
    log.info("streaming the receipt")
    yield b"receipt line 1\n"
    yield b"receipt line 2\n"


class _Server(ThreadingMixIn, WSGIServer):
    """wsgiref with a thread per request, which can wait until no request is in progress."""

    daemon_threads = False  # server_close() waits for them

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy = 0
        self._idle = threading.Condition()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Count the request in, then serve it in a thread of its own."""
        with self._idle:
            self._busy += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one request (the access line is logged when its response is closed)."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every request has been served to the end, access line included."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)


class _QuietHandler(WSGIRequestHandler):
    timeout = 30  # seconds a client may take to send its request

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Stay quiet: the access log comes from ctxlog."""


@dataclass(frozen=True)
class _Visit:
    user: str | None
    path: str
    forwarded_for: str


@dataclass(frozen=True)
class _Result:
    status: int
    request_id: str
    seconds: float


def _visit(port: int, visit: _Visit) -> _Result:
    headers = {"X-Forwarded-For": visit.forwarded_for, "User-Agent": "ctxlog-demo/1"}
    if visit.user is not None:
        token = base64.b64encode(f"{visit.user}:{USERS[visit.user][0]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", visit.path, headers=headers)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    return _Result(response.status, response.getheader("X-Request-ID") or "-", seconds)


# -- counting --------------------------------------------------------------------------------


class _Tally(logging.Handler):
    """Count, where they are logged, the records sent on to the receiver and the ERRORs mailed."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records = 0
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle() holds self.lock around emit().
        self.records += 1
        if record.levelno >= logging.ERROR:
            self.errors += 1


class _Mailer(logging.handlers.SMTPHandler):
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


def _percentile(values: Sequence[float], percent: float) -> float:
    """Return the nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    rank = max(math.ceil(percent / 100 * len(ordered)), 1)
    return ordered[rank - 1]


# -- the demo --------------------------------------------------------------------------------


class _Demo:
    """Every piece of the demo, started in order and stopped in reverse by :meth:`close`."""

    def __init__(self, out: IO[str], smtp_delay: float) -> None:
        self.out = out
        self.smtp_delay = smtp_delay
        self._stack = contextlib.ExitStack()
        self.root = logging.getLogger()

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def start(self) -> None:
        stack = self._stack
        root = self.root
        old_level = root.level
        stack.callback(root.setLevel, old_level)
        root.setLevel(logging.INFO)
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
        self.smtp = stack.enter_context(SlowSMTPServer("127.0.0.1", 0, delay=self.smtp_delay))

        # Every record, counted, and sent on to the receiver without blocking.
        self.tally = _Tally()
        self.sender = JSONSocketHandler("127.0.0.1", self.receiver.port)
        stack.callback(self.sender.close)
        self.to_receiver = ctxlog.nonblocking([self.sender])
        stack.callback(self.to_receiver.close)
        self._attach(self.tally)
        self._attach(self.to_receiver)

        # ERROR records e-mailed, by a handler attached directly or by one behind nonblocking().
        self.mail_direct = self._mailer()
        self.mail_queued = self._mailer()
        self.to_mail = ctxlog.nonblocking([self.mail_queued])
        stack.callback(self.to_mail.close)

        # The shop.
        app = ctxlog.WSGIMiddleware(shop, trusted_proxies=["127.0.0.1", "::1"], access_log=True)
        server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_QuietHandler)
        stack.callback(server.server_close)
        self.server = server
        self.port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="ctxlog-demo-shop", daemon=True
        )
        thread.start()
        stack.callback(thread.join)
        stack.callback(server.shutdown)

    def _mailer(self) -> _Mailer:
        mailer = _Mailer(
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

    def _attach(self, handler: logging.Handler) -> None:
        self.root.addHandler(handler)
        self._stack.callback(self.root.removeHandler, handler)

    def _swap(self, old: logging.Handler | None, new: logging.Handler | None) -> None:
        self.server.wait_idle()  # the last access lines go where the others went
        if old is not None:
            self.root.removeHandler(old)
        if new is not None:
            self._attach(new)

    def _burst(self, visits: Sequence[_Visit], workers: int) -> list[_Result]:
        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="ctxlog-demo-client"
        ) as pool:
            return list(pool.map(lambda visit: _visit(self.port, visit), visits))

    def hurry(self) -> None:
        """Make the SMTP server fast, so that closing delivers what is queued at once."""
        with contextlib.suppress(AttributeError):  # interrupted before it started
            self.smtp.delay = 0.0

    def close(self) -> None:
        self._stack.close()

    def play(self, requests: int) -> int:
        """Run the three parts and print the report; return the exit status."""
        say = self.say
        receiver = self.receiver
        say(
            f"ctxlog demo: a shop on http://127.0.0.1:{self.port} (wsgiref) behind "
            "ctxlog.WSGIMiddleware"
        )
        say("  proxy    127.0.0.1, trusted: the client below plays it and appends each user's")
        say("           address to X-Forwarded-For")
        say(
            f"  e-mail   ERROR records, by logging.handlers.SMTPHandler to an SMTP server on "
            f"127.0.0.1:{self.smtp.port}"
        )
        say(f"           that takes {self.smtp_delay * 1000:.0f} ms to accept each message")
        say(
            "  network  every record, by JSONSocketHandler behind ctxlog.nonblocking() to "
            "ctxlog receive on"
        )
        say(f"           127.0.0.1:{receiver.port}, which writes them to a temporary file")

        # 1. The story: every line printed, e-mails and records delivered without blocking.
        say(
            "\n1. alice, bob and carol shop; two strangers try tricks. The shop logs, in the format"
        )
        say(f"   {FORMAT}\n")
        console = logging.StreamHandler(self.out)
        console.addFilter(ctxlog.ContextFilter())
        console.setFormatter(ctxlog.Formatter(FORMAT, "%H:%M:%S"))
        self._attach(console)
        self._attach(self.to_mail)
        bob_declined = _Visit("bob", DECLINED, USERS["bob"][1])
        story = [
            _Visit("alice", "/", USERS["alice"][1]),
            _Visit("alice", "/pay", USERS["alice"][1]),
            _Visit("bob", "/", USERS["bob"][1]),
            bob_declined,
            _Visit("carol", "/pay", USERS["carol"][1]),
            _Visit(None, "/pay", "192.0.2.99"),
            # A client that claims to be 10.0.0.1: the proxy appends the real address, which wins.
            _Visit(None, "/", "10.0.0.1, 192.0.2.44"),
            # A path that tries to forge a second log line: it is escaped.
            _Visit(None, "/search%0d%0a2024-01-01%20admin%20logged%20in", "192.0.2.45"),
        ]
        results = self._burst(story, 4)
        self._swap(console, None)
        say(
            f"\n   {len(results)} requests, statuses {sorted({r.status for r in results})}; "
            "each response echoed its X-Request-ID."
        )
        bobs_error = results[story.index(bob_declined)].request_id

        # 2. Latency: the same burst with the SMTP handler attached directly, then queued.
        names = list(USERS)
        burst = [
            _Visit(names[i % len(names)], DECLINED, USERS[names[i % len(names)]][1])
            for i in range(requests)
        ]
        say(
            f"\n2. Latency seen by the client: {requests} checkout{'s' * (requests != 1)} "
            "with a declined card, "
            f"{CONCURRENCY} users at a time;"
        )
        say("   each logs an ERROR, which is e-mailed")
        self._swap(self.to_mail, self.mail_direct)
        direct = [r.seconds for r in self._burst(burst, CONCURRENCY)]
        self._swap(self.mail_direct, self.to_mail)
        queued = [r.seconds for r in self._burst(burst, CONCURRENCY)]
        burst_done = time.monotonic()
        self.to_mail.flush(timeout=60)
        background = time.monotonic() - burst_done
        for label, seconds, note in (
            ("SMTPHandler attached directly       ", direct, "  (its lock queues the requests)"),
            ("the same behind ctxlog.nonblocking()", queued, ""),
        ):
            p50, p95 = _percentile(seconds, 50) * 1000, _percentile(seconds, 95) * 1000
            say(f"   {label}  p50 {p50:7.1f} ms   p95 {p95:7.1f} ms{note}")
        faster = _percentile(direct, 50) / max(_percentile(queued, 50), 1e-9)
        say(
            f"   nonblocking() made the median request {faster:.0f}x faster; the {requests} "
            f"e-mails left in the background ({background:.1f} s)"
        )

        # 3. What arrived.
        self._swap(self.to_mail, None)
        self.root.removeHandler(self.tally)
        self.root.removeHandler(self.to_receiver)
        self.to_mail.close()
        self.to_receiver.close()
        self.sender.close()
        delivery = self._count()
        say("\n3. Delivered")
        say(
            f"   e-mails  {delivery.emails_received} received by the SMTP server, "
            f"{delivery.emails_sent} sent (one per ERROR record), e.g.:"
        )
        mail = _mail_about(self.smtp.received, bobs_error)
        if mail is not None:
            say(f"            Subject: {mail.get('Subject')}")
            say(f"            {mail.get_content().strip().splitlines()[0]}")
        say(
            f"   records  {delivery.records_received} written by ctxlog receive, "
            f"{delivery.records_logged} logged, e.g.:"
        )
        line = _line_about(self.log_file, bobs_error)
        if line is not None:
            say(f"            {line}")
        say()
        say(delivery.verdict())
        return 1 if delivery.problems() else 0

    def _count(self) -> Delivery:
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


def _mail_about(received: list[Received], request_id: str) -> EmailMessage | None:
    for item in received:
        message = item.message()
        if request_id in message.get_content():
            return message
    return None


def _line_about(path: Path, request_id: str) -> str | None:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if request_id in line and " ERROR " in line:
                return line.rstrip("\n")
    return None


def run(
    out: IO[str] | None = None,
    *,
    requests: int = REQUESTS,
    smtp_delay: float = SMTP_DELAY,
) -> int:
    """
    Run the demo and print its report on ``out``; return the exit status.

    Args:
        out: Where the report goes (standard output by default).
        requests: Failing checkouts in each timed burst.
        smtp_delay: Seconds the SMTP server takes per message.

    Returns:
        0 if every e-mail and record arrived, 1 if one was lost, 130 on Ctrl-C.
    """
    out = out or sys.stdout
    demo = _Demo(out, smtp_delay)
    try:
        demo.start()
        return demo.play(requests)
    except KeyboardInterrupt:
        demo.hurry()
        sys.stderr.write("\nctxlog demo: interrupted\n")
        return 130
    finally:
        demo.close()
