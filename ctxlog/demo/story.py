"""
The story ``ctxlog demo`` tells, in three named steps, and :func:`run`, which prints it.

:class:`Demo` starts the shop (:mod:`ctxlog.demo.shop`) and where its records go
(:mod:`ctxlog.demo.delivery`), then :meth:`Demo.play` prints: what is running; (1) a burst of
visits whose log lines are shown; (2) the same burst of failing checkouts twice, first with the
SMTP handler attached directly, then behind :func:`ctxlog.nonblocking`, timed at the client;
(3) what arrived. Everything is stopped in reverse order by :meth:`Demo.close`, and the root
logger is left as it was found.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Final

import ctxlog
from ctxlog.demo.delivery import Destinations
from ctxlog.demo.shop import DECLINED, USERS, Result, Visit, serve, visit_shop

__all__ = ["CONCURRENCY", "FORMAT", "REQUESTS", "SMTP_DELAY", "Demo", "run"]

FORMAT: Final = (
    "%(asctime)s %(ip)-15s %(user)-6s %(request_id).12s %(levelname)-7s %(name)-13s %(message)s"
)
#: Seconds the demo's SMTP server takes to accept each message.
SMTP_DELAY: Final = 0.2
#: Failing checkouts in each of the two timed bursts.
REQUESTS: Final = 9
#: Requests in flight at once (one per user).
CONCURRENCY: Final = 3

#: Part 1: three customers shop, two strangers try tricks.
_STORY: Final = (
    Visit("alice", "/", USERS["alice"][1]),
    Visit("alice", "/pay", USERS["alice"][1]),
    Visit("bob", "/", USERS["bob"][1]),
    Visit("bob", DECLINED, USERS["bob"][1]),
    Visit("carol", "/pay", USERS["carol"][1]),
    Visit(None, "/pay", "192.0.2.99"),
    # A client that claims to be 10.0.0.1: the proxy appends the real address, which wins.
    Visit(None, "/", "10.0.0.1, 192.0.2.44"),
    # A path that tries to forge a second log line: it is escaped.
    Visit(None, "/search%0d%0a2024-01-01%20admin%20logged%20in", "192.0.2.45"),
)
#: The visit of part 1 whose ERROR part 3 shows as it arrived.
_BOBS_ERROR: Final = 3


class Demo:
    """Every piece of the demo, started in order and stopped in reverse by :meth:`close`."""

    def __init__(self, out: IO[str], smtp_delay: float) -> None:
        self.out = out
        self.smtp_delay = smtp_delay
        self._stack = contextlib.ExitStack()
        self.root = logging.getLogger()
        self.to: Destinations | None = None

    def say(self, text: str = "") -> None:
        """Print a line of the report."""
        print(text, file=self.out, flush=True)

    def start(self) -> None:
        """Start where the records go, then the shop."""
        stack = self._stack
        stack.callback(self.root.setLevel, self.root.level)
        self.root.setLevel(logging.INFO)
        self.to = to = Destinations(stack, self.smtp_delay)
        self._attach(to.tally)
        self._attach(to.to_receiver)
        self.server = serve(stack)
        self.port = self.server.server_address[1]

    def hurry(self) -> None:
        """Make the SMTP server fast, so that closing delivers what is queued at once."""
        if self.to is not None:
            self.to.hurry()

    def close(self) -> None:
        """Stop everything, in the reverse order of :meth:`start`."""
        self._stack.close()

    def play(self, requests: int) -> int:
        """Run the three parts and print the report; return the exit status."""
        self.introduce()
        bobs_error = self.tell_story()
        self.measure_latency(requests)
        return self.count_delivered(bobs_error)

    # -- the steps of play() ---------------------------------------------------------------------

    def introduce(self) -> None:
        """Say what is running, and where."""
        say, to = self.say, self._destinations()
        say(
            f"ctxlog demo: a shop on http://127.0.0.1:{self.port} (wsgiref) behind "
            "ctxlog.WSGIMiddleware"
        )
        say("  proxy    127.0.0.1, trusted: the client below plays it and appends each user's")
        say("           address to X-Forwarded-For")
        say(
            f"  e-mail   ERROR records, by logging.handlers.SMTPHandler to an SMTP server on "
            f"127.0.0.1:{to.smtp.port}"
        )
        say(f"           that takes {self.smtp_delay * 1000:.0f} ms to accept each message")
        say(
            "  network  every record, by JSONSocketHandler behind ctxlog.nonblocking() to "
            "ctxlog receive on"
        )
        say(f"           127.0.0.1:{to.receiver.port}, which writes them to a temporary file")

    def tell_story(self) -> str:
        """
        Part 1: every line printed, e-mails and records delivered without blocking.

        Returns:
            The request id of bob's declined payment, which part 3 looks for.
        """
        say = self.say
        say(
            "\n1. alice, bob and carol shop; two strangers try tricks. The shop logs, in the format"
        )
        say(f"   {FORMAT}\n")
        console = logging.StreamHandler(self.out)
        console.addFilter(ctxlog.ContextFilter())
        console.setFormatter(ctxlog.Formatter(FORMAT, "%H:%M:%S"))
        self._attach(console)
        self._attach(self._destinations().to_mail)
        results = self._burst(_STORY, 4)
        self._swap(console, None)
        say(
            f"\n   {len(results)} requests, statuses {sorted({r.status for r in results})}; "
            "each response echoed its X-Request-ID."
        )
        return results[_BOBS_ERROR].request_id

    def measure_latency(self, requests: int) -> None:
        """Part 2: the same burst with the SMTP handler attached directly, then queued."""
        say, to = self.say, self._destinations()
        names = list(USERS)
        burst = [
            Visit(names[i % len(names)], DECLINED, USERS[names[i % len(names)]][1])
            for i in range(requests)
        ]
        say(
            f"\n2. Latency seen by the client: {requests} checkout{'s' * (requests != 1)} "
            "with a declined card, "
            f"{CONCURRENCY} users at a time;"
        )
        say("   each logs an ERROR, which is e-mailed")
        self._swap(to.to_mail, to.mail_direct)
        direct = [r.seconds for r in self._burst(burst, CONCURRENCY)]
        self._swap(to.mail_direct, to.to_mail)
        queued = [r.seconds for r in self._burst(burst, CONCURRENCY)]
        burst_done = time.monotonic()
        to.to_mail.flush(timeout=60)
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

    def count_delivered(self, bobs_error: str) -> int:
        """Part 3: what arrived, with bob's ERROR as e-mailed and as received; the exit status."""
        say, to = self.say, self._destinations()
        self._swap(to.to_mail, None)
        self.root.removeHandler(to.tally)
        self.root.removeHandler(to.to_receiver)
        delivery = to.count()
        say("\n3. Delivered")
        say(
            f"   e-mails  {delivery.emails_received} received by the SMTP server, "
            f"{delivery.emails_sent} sent (one per ERROR record), e.g.:"
        )
        mail = to.mail_about(bobs_error)
        if mail is not None:
            say(f"            Subject: {mail.get('Subject')}")
            say(f"            {mail.get_content().strip().splitlines()[0]}")
        say(
            f"   records  {delivery.records_received} written by ctxlog receive, "
            f"{delivery.records_logged} logged, e.g.:"
        )
        line = to.line_about(bobs_error)
        if line is not None:
            say(f"            {line}")
        say()
        say(delivery.verdict())
        return 1 if delivery.problems() else 0

    # -- helpers ---------------------------------------------------------------------------------

    def _destinations(self) -> Destinations:
        if self.to is None:  # pragma: no cover - play() runs after start()
            msg = "the demo is not started"
            raise RuntimeError(msg)
        return self.to

    def _attach(self, handler: logging.Handler) -> None:
        self.root.addHandler(handler)
        self._stack.callback(self.root.removeHandler, handler)

    def _swap(self, old: logging.Handler | None, new: logging.Handler | None) -> None:
        self.server.wait_idle()  # the last access lines go where the others went
        if old is not None:
            self.root.removeHandler(old)
        if new is not None:
            self._attach(new)

    def _burst(self, visits: Sequence[Visit], workers: int) -> list[Result]:
        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="ctxlog-demo-client"
        ) as pool:
            return list(pool.map(lambda visit: visit_shop(self.port, visit), visits))


def _percentile(values: Sequence[float], percent: float) -> float:
    """Return the nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    rank = max(math.ceil(percent / 100 * len(ordered)), 1)
    return ordered[rank - 1]


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
    demo = Demo(out, smtp_delay)
    try:
        demo.start()
        return demo.play(requests)
    except BaseException as error:
        if not _interrupted(error):
            raise
        demo.hurry()
        sys.stderr.write("\nctxlog demo: interrupted\n")
        return 130
    finally:
        demo.close()


def _interrupted(error: BaseException) -> bool:
    """
    Tell whether ``error`` is Ctrl-C, or an error raised while Ctrl-C was unwinding.

    SIGINT can land inside the threading module's own Python code (a ``Condition`` that the
    thread pool waits on) and leave its lock half released: the ``KeyboardInterrupt`` then comes
    out as the ``RuntimeError("release unlocked lock")`` raised while it unwound.
    """
    seen: BaseException | None = error
    for _ in range(8):  # a short chain; never a cycle followed for ever
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False
