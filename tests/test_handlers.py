"""DigestSMTPHandler against a real SMTP server (aiosmtpd on loopback), alone and behind nonblocking()."""

from __future__ import annotations

import email.message
import inspect
import logging
import threading
import time
import wsgiref.util
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import ctxlog
from ctxlog.handlers import DigestSMTPHandler

SUBJECT = "app errors"
FROM = "app@example.com"
TO = "ops@example.com"
MIME_HEADERS = {"Content-Type", "Content-Transfer-Encoding", "MIME-Version"}


@pytest.fixture
def cleanup() -> Iterator[list[logging.Handler]]:
    """Handlers to close at the end of the test, in the order given (nonblocking first)."""
    handlers: list[logging.Handler] = []
    try:
        yield handlers
    finally:
        for handler in handlers:
            handler.close()


@pytest.fixture
def make(smtp_server: Any, cleanup: list[logging.Handler]) -> Callable[..., DigestSMTPHandler]:
    """Build a DigestSMTPHandler aimed at the test server, closed after the test."""

    def build(fmt: str = "%(levelname)s %(message)s", **options: Any) -> DigestSMTPHandler:
        options.setdefault("timeout", 2.0)
        options.setdefault("interval", 0.3)
        subject = options.pop("subject", SUBJECT)
        handler = DigestSMTPHandler(("127.0.0.1", smtp_server.port), FROM, [TO], subject, **options)
        handler.setFormatter(logging.Formatter(fmt))
        cleanup.append(handler)
        return handler

    return build


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A private logger that does not propagate; its handlers are removed afterwards."""
    log = logging.getLogger(f"test_handlers.{request.node.name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield log
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)


def behind_queue(
    handler: DigestSMTPHandler, log: logging.Logger, cleanup: list[logging.Handler], **options: Any
) -> logging.Handler:
    """Put ``handler`` behind ctxlog.nonblocking() on ``log``; closed before the handler."""
    front = ctxlog.nonblocking([handler], **options)
    cleanup.insert(0, front)
    log.addHandler(front)
    return front


def record(message: str, level: int = logging.ERROR, **extra: Any) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": "app",
            "levelno": level,
            "levelname": logging.getLevelName(level),
            "msg": message,
            **extra,
        }
    )


def body(message: email.message.Message) -> str:
    """The text of ``message`` with the wire's CRLF line ends made LF."""
    text: str = message.get_content()  # type: ignore[attr-defined]
    return text.replace("\r\n", "\n")


def all_bodies(messages: list[email.message.Message]) -> str:
    return "\n".join(body(m) for m in messages)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def no_timer_of(handler: DigestSMTPHandler) -> bool:
    """Wait (briefly: a cancelled timer thread ends at once) until ``handler`` has no timer thread."""
    name = f"ctxlog-smtp-digest-{id(handler):x}"
    return wait_until(lambda: not [t for t in threading.enumerate() if t.name == name], timeout=2)


def count_connections(server: Any) -> list[int]:
    """Count SMTP sessions through aiosmtpd's EHLO hook (smtplib says EHLO once per connection)."""
    counter = [0]

    async def handle_EHLO(
        server_: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        counter[0] += 1
        session.host_name = hostname  # what aiosmtpd does when there is no hook
        return responses

    server.handle_EHLO = handle_EHLO
    return counter


# --- construction --------------------------------------------------------------------------------


def test_signature() -> None:
    """The constructor takes the documented positional and keyword-only parameters and defaults."""
    params = inspect.signature(DigestSMTPHandler).parameters
    expected = {
        "mailhost": (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        "fromaddr": (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        "toaddrs": (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        "subject": (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        "credentials": (inspect.Parameter.KEYWORD_ONLY, None),
        "secure": (inspect.Parameter.KEYWORD_ONLY, None),
        "timeout": (inspect.Parameter.KEYWORD_ONLY, 10.0),
        "interval": (inspect.Parameter.KEYWORD_ONLY, 60.0),
        "capacity": (inspect.Parameter.KEYWORD_ONLY, 100),
    }
    assert expected == {name: (p.kind, p.default) for name, p in params.items()}


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"toaddrs": []}, ValueError, "toaddrs is empty"),
        ({"toaddrs": ["ops@x\r\nBcc: evil@x"]}, ValueError, "toaddrs"),
        ({"toaddrs": [""]}, ValueError, "toaddrs"),
        ({"fromaddr": "app@x\nBcc: evil@x"}, ValueError, "fromaddr"),
        ({"interval": 0}, ValueError, "interval=0"),
        ({"interval": -1.0}, ValueError, "interval=-1.0"),
        ({"interval": float("nan")}, ValueError, "interval=nan"),
        ({"interval": float("inf")}, ValueError, "interval=inf"),
        ({"interval": "60"}, ValueError, "interval='60'"),
        ({"timeout": 0}, ValueError, "timeout=0"),
        ({"capacity": 0}, ValueError, "capacity=0"),
        ({"capacity": 2.5}, ValueError, "capacity=2.5"),
        ({"capacity": True}, ValueError, "capacity=True"),
        ({"secure": "yes"}, TypeError, "secure='yes'"),
        ({"secure": ("key.pem", "cert.pem")}, TypeError, "secure="),
    ],
)
def test_bad_config_raises_at_construction(
    change: dict[str, Any], error: type[Exception], words: str
) -> None:
    """Bad settings raise at construction with a message naming the setting."""
    arguments: dict[str, Any] = {
        "mailhost": "localhost",
        "fromaddr": FROM,
        "toaddrs": [TO],
        "subject": SUBJECT,
    }
    arguments.update(change)
    with pytest.raises(error) as caught:
        DigestSMTPHandler(**arguments)
    assert words in str(caught.value)
    assert "DigestSMTPHandler" in str(caught.value)


def test_good_config() -> None:
    """A single address, a (host, port) pair and secure=() are accepted."""
    handler = DigestSMTPHandler(
        ("mail", 2525), FROM, TO, SUBJECT, secure=(), interval=1, capacity=1
    )
    try:
        assert ("mail", 2525, [TO], 1.0, 1) == (
            handler.mailhost,
            handler.mailport,
            handler.toaddrs,
            handler.interval,
            handler.capacity,
        )
    finally:
        handler.close()


# --- digests -------------------------------------------------------------------------------------


def test_first_record_at_once_then_collected_until_close(
    smtp_server: Any, make: Callable[..., DigestSMTPHandler]
) -> None:
    """The first record is mailed at once; later ones wait for the interval, or for close()."""
    handler = make(interval=30.0)
    handler.handle(record("first"))
    messages = smtp_server.wait_for(1, timeout=5)
    assert ["ERROR first"] == [body(m).strip() for m in messages]
    assert SUBJECT == messages[0]["Subject"]
    handler.handle(record("second"))
    handler.handle(record("third"))
    time.sleep(0.3)
    assert 1 == len(smtp_server.messages)
    handler.close()
    messages = smtp_server.wait_for(2, timeout=5)
    assert 2 == len(messages)
    assert "ERROR second\nERROR third" == body(messages[1]).strip()
    assert f"{SUBJECT} (2 records)" == messages[1]["Subject"]
    assert (2, 3, 0, 0) == (handler.sent, handler.records_sent, handler.omitted, handler.failures)
    assert no_timer_of(handler)


def test_one_mail_per_interval_and_at_once_after_a_quiet_spell(
    smtp_server: Any, make: Callable[..., DigestSMTPHandler]
) -> None:
    """Records within an interval go out together after it; after a quiet spell, at once."""
    interval = 1.0
    handler = make(interval=interval)
    started = time.monotonic()
    handler.handle(record("r0"))
    for number in range(1, 10):
        handler.handle(record(f"r{number}"))
    messages = smtp_server.wait_for(2, timeout=5)
    assert 2 == len(messages)
    assert "ERROR r0" == body(messages[0]).strip()
    assert "\n".join(f"ERROR r{n}" for n in range(1, 10)) == body(messages[1]).strip()
    assert f"{SUBJECT} (9 records)" == messages[1]["Subject"]
    assert time.monotonic() - started >= interval * 0.9  # the digest waited for the interval
    time.sleep(interval + 0.2)  # a quiet spell
    sent_at = time.monotonic()
    handler.handle(record("after the quiet spell"))
    messages = smtp_server.wait_for(3, timeout=5)
    assert "ERROR after the quiet spell" == body(messages[2]).strip()
    assert time.monotonic() - sent_at < interval / 2  # sent at once, not after the interval


def test_capacity_counts_the_rest(smtp_server: Any, make: Callable[..., DigestSMTPHandler]) -> None:
    """Beyond capacity records are counted in the body, not carried; close() sends the digest."""
    handler = make(interval=30.0, capacity=5)
    handler.handle(record("first"))
    smtp_server.wait_for(1, timeout=5)
    for number in range(12):
        handler.handle(record(f"storm {number}"))
    handler.close()
    messages = smtp_server.wait_for(2, timeout=5)
    assert 2 == len(messages)
    text = body(messages[1])
    assert [f"ERROR storm {n}" for n in range(5)] == [
        line for line in text.splitlines() if line.startswith("ERROR")
    ]
    assert "... and 7 more records (more than capacity=5)" in text
    assert f"{SUBJECT} (12 records)" == messages[1]["Subject"]
    assert (2, 6, 7) == (handler.sent, handler.records_sent, handler.omitted)


def test_error_storm_becomes_a_handful_of_mails(
    smtp_server: Any,
    make: Callable[..., DigestSMTPHandler],
    logger: logging.Logger,
    cleanup: list[logging.Handler],
) -> None:
    """5,000 ERRORs in ~1.5 s with interval=0.5 s: a handful of e-mails, connections <= e-mails."""
    connections = count_connections(smtp_server)
    handler = make(interval=0.5)
    front = behind_queue(handler, logger, cleanup)
    started = time.monotonic()
    for number in range(5000):
        logger.error("storm %d", number)
        if number % 100 == 99:
            time.sleep(max(0.0, started + 1.5 * (number + 1) / 5000 - time.monotonic()))
    front.close()
    handler.close()
    messages = smtp_server.messages
    assert 1 <= len(messages) <= 5
    assert connections[0] <= len(messages)
    assert 0 == front.stats()["dropped"]  # type: ignore[attr-defined]
    assert 5000 == handler.records_sent + handler.omitted
    assert (len(messages), 0) == (handler.sent, handler.failures)
    assert "ERROR storm 0" == body(messages[0]).strip()


# --- a mail server that is down or slow ----------------------------------------------------------


def failure_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "could not send" in line]


def test_server_down_costs_the_app_nothing_and_delivery_resumes(
    smtp_server: Any,
    make: Callable[..., DigestSMTPHandler],
    logger: logging.Logger,
    cleanup: list[logging.Handler],
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Connection refused: fast log calls, failures counted, one stderr line, records delivered later."""
    smtp_server.stop()
    handler = make(interval=0.3)
    behind_queue(handler, logger, cleanup)
    slowest = 0.0
    for number in range(20):
        started = time.monotonic()
        logger.error("while down %d", number)
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.01)
    assert slowest < 0.05
    assert wait_until(lambda: handler.failures >= 3)  # retried once per interval
    assert 0 == handler.sent
    smtp_server.start()
    messages = smtp_server.wait_for(1, timeout=5)
    assert wait_until(lambda: handler.records_sent == 20)
    text = all_bodies(messages)
    assert [f"ERROR while down {n}" for n in range(20)] == [
        line for line in text.splitlines() if "while down" in line
    ]
    err = capfd.readouterr().err
    assert 1 == len(failure_lines(err))
    assert f"127.0.0.1:{smtp_server.port}" in failure_lines(err)[0]
    assert "Traceback" not in err
    assert 1 == len([line for line in err.splitlines() if "again" in line])


def test_server_down_within_capacity(
    smtp_server: Any, make: Callable[..., DigestSMTPHandler], capfd: pytest.CaptureFixture[str]
) -> None:
    """While the server is down the handler keeps at most capacity records; the rest are counted."""
    smtp_server.stop()
    handler = make(interval=0.3, capacity=3)
    for number in range(10):
        handler.handle(record(f"kept? {number}"))
    assert 1 == handler.failures
    smtp_server.start()
    messages = smtp_server.wait_for(1, timeout=5)
    text = body(messages[0])
    assert ["ERROR kept? 0", "ERROR kept? 1", "ERROR kept? 2"] == [
        line for line in text.splitlines() if "kept?" in line
    ]
    assert "... and 7 more records" in text
    assert f"{SUBJECT} (10 records)" == messages[0]["Subject"]
    assert 1 == len(failure_lines(capfd.readouterr().err))


def test_slow_server_costs_the_app_nothing(
    smtp_server: Any,
    make: Callable[..., DigestSMTPHandler],
    logger: logging.Logger,
    cleanup: list[logging.Handler],
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A server slower than the timeout: fast log calls, failures counted once on stderr, then delivery."""
    smtp_server.delay = 1.0
    handler = make(interval=0.3, timeout=0.2)
    behind_queue(handler, logger, cleanup)
    slowest = 0.0
    for number in range(20):
        started = time.monotonic()
        logger.error("while slow %d", number)
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.02)
    assert slowest < 0.05
    assert wait_until(lambda: handler.failures >= 2)
    smtp_server.delay = 0.0
    # A timed-out DATA may still have been accepted by the server: duplicates are allowed, losses not.
    assert wait_until(lambda: handler.records_sent >= 1 and not handler._buffer)
    assert wait_until(
        lambda: (
            {f"ERROR while slow {n}" for n in range(20)}
            <= set(all_bodies(smtp_server.messages).splitlines())
        )
    )
    err = capfd.readouterr().err
    assert 1 == len(failure_lines(err))
    assert "Traceback" not in err


def test_no_retry_after_close(
    smtp_server: Any, make: Callable[..., DigestSMTPHandler], capfd: pytest.CaptureFixture[str]
) -> None:
    """close() with the server down makes one attempt, says what was lost, and leaves no timer behind."""
    smtp_server.stop()
    handler = make(interval=0.2)
    handler.handle(record("lost"))
    handler.handle(record("lost too"))
    handler.close()
    assert no_timer_of(handler)
    assert (2, 2, 0) == (handler.failures, handler.omitted, handler.sent)
    smtp_server.start()
    time.sleep(0.5)
    assert [] == smtp_server.messages
    err = capfd.readouterr().err
    assert 1 == len(failure_lines(err))
    assert 1 == len([line for line in err.splitlines() if "closed with 2 records not sent" in line])


def test_starttls_refused_is_a_counted_failure(
    smtp_server: Any, make: Callable[..., DigestSMTPHandler], capfd: pytest.CaptureFixture[str]
) -> None:
    """secure=() against a server without STARTTLS: counted and reported once, nothing raised."""
    handler = make(secure=(), interval=0.2)
    handler.handle(record("one"))
    handler.handle(record("two"))
    assert wait_until(lambda: handler.failures >= 2)
    err = capfd.readouterr().err
    assert 1 == len(failure_lines(err))
    assert "STARTTLS" in failure_lines(err)[0]
    assert [] == smtp_server.messages


def test_cancelled_timer_does_not_send_early(
    smtp_server: Any, make: Callable[..., DigestSMTPHandler]
) -> None:
    """A timer that fired while flush() held the lock does not send the next window early."""
    interval = 1.0
    handler = make(interval=interval)
    handler.handle(record("first"))
    smtp_server.wait_for(1, timeout=5)
    handler.handle(record("second"))  # schedules timer A
    handler.acquire()
    try:
        time.sleep(interval + 0.2)  # timer A fires and waits for the lock
        handler.flush()  # sends "second"; cancelling A is too late
        handler.handle(record("third"))  # schedules timer B, one interval from now
    finally:
        handler.release()
    time.sleep(interval * 0.4)
    assert 2 == len(smtp_server.messages)
    messages = smtp_server.wait_for(3, timeout=5)
    assert ["ERROR first", "ERROR second", "ERROR third"] == [body(m).strip() for m in messages]
    time.sleep(0.2)
    assert 3 == len(smtp_server.messages)


# --- headers and body ----------------------------------------------------------------------------


def test_record_data_never_reaches_the_headers(
    smtp_server: Any, make: Callable[..., DigestSMTPHandler]
) -> None:
    """CR/LF, ESC and bidi controls in records: the mail is sent, no Bcc, the subject is the configured one."""
    handler = make("%(levelname)s %(path)s %(user)s %(message)s", interval=30.0)
    handler.handle(record("GET /x\r\nBcc: evil@x", path="/x\r\nBcc: evil@x", user="\x1b[31m"))
    handler.handle(record("\x1b[31mred \u202eevil", path="\u202e", user="\r\nSubject: forged"))
    handler.handle(record("broken \udcff bytes", path="/", user="-"))
    handler.close()
    messages = smtp_server.wait_for(2, timeout=5)
    assert 2 == len(messages)
    for message in messages:
        assert message["Bcc"] is None
        assert ["From", "To", "Date", "Subject"] == [k for k in message if k not in MIME_HEADERS]
        assert (FROM, TO) == (message["From"], message["To"])
        assert "evil" not in str(message["Subject"]) and "forged" not in str(message["Subject"])
    assert [SUBJECT, f"{SUBJECT} (2 records)"] == [m["Subject"] for m in messages]
    text = all_bodies(messages)
    assert "GET /x\\r" in text
    assert "\\x1b[31mred \\u202eevil" in text
    assert "broken \\udcff bytes" in text
    assert not any(char in text for char in "\r\x1b\u202e")


def test_default_formatter_puts_each_record_on_one_line(
    smtp_server: Any, cleanup: list[logging.Handler]
) -> None:
    """Without a formatter set, a hostile message is one body line, its traceback on '  | ' lines."""
    handler = DigestSMTPHandler(
        ("127.0.0.1", smtp_server.port), FROM, [TO], SUBJECT, timeout=2.0, interval=30.0
    )
    cleanup.append(handler)
    try:
        raise ValueError("bad\nFORGED exception line")
    except ValueError as error:
        failed = record("caught %s", args=(error,), exc_info=(ValueError, error, error.__traceback__))
    handler.handle(record("a\nFORGED line \ud800 \\n"))
    handler.handle(failed)
    handler.close()
    text = all_bodies(smtp_server.wait_for(2, timeout=5))
    lines = [line for line in text.split("\n") if line]
    assert "a\\nFORGED line \\ud800 \\\\n" == lines[0]
    assert "caught bad\\nFORGED exception line" == lines[1]
    assert "  | Traceback (most recent call last):" == lines[2]
    assert all(line.startswith("  | ") for line in lines[2:])
    assert "  | FORGED exception line" == lines[-1]


def test_subject_with_line_break_is_escaped(
    smtp_server: Any, make: Callable[..., DigestSMTPHandler]
) -> None:
    """A configured subject with CR/LF is escaped, never split into a second header."""
    handler = make(subject="alert\r\nBcc: evil@x")
    handler.handle(record("one"))
    messages = smtp_server.wait_for(1, timeout=5)
    assert "alert\\r\\nBcc: evil@x" == messages[0]["Subject"]
    assert messages[0]["Bcc"] is None


def test_body_carries_the_request_context(
    smtp_server: Any,
    make: Callable[..., DigestSMTPHandler],
    logger: logging.Logger,
    cleanup: list[logging.Handler],
) -> None:
    """Through nonblocking(), each record in the body shows the ip, user and request id of its request."""
    handler = make("%(ip)s %(user)s %(request_id)s %(message)s", interval=30.0)
    behind_queue(handler, logger, cleanup)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        logger.error("in the request")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wsgi = ctxlog.WSGIMiddleware(app, user=lambda environ: environ.get("REMOTE_USER"))
    environ: dict[str, Any] = {
        "REMOTE_ADDR": "192.0.2.7",
        "REMOTE_USER": "alice",
        "HTTP_X_REQUEST_ID": "req-alice",
    }
    wsgiref.util.setup_testing_defaults(environ)
    assert [b"ok"] == list(wsgi(environ, lambda *args: None))

    def job(user: str) -> None:
        with ctxlog.scope(user=user, request_id=f"job-{user}"):
            logger.error("in a job")

    threads = [threading.Thread(target=job, args=(name,)) for name in ("bob", "carol")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.error("outside")
    cleanup[0].close()
    handler.close()
    lines = set(all_bodies(smtp_server.wait_for(2, timeout=5)).splitlines())
    assert {
        "192.0.2.7 alice req-alice in the request",
        "- bob job-bob in a job",
        "- carol job-carol in a job",
        "- - - outside",
    } == lines - {""}


# --- levels --------------------------------------------------------------------------------------


def test_respect_handler_level_behind_nonblocking(
    smtp_server: Any,
    make: Callable[..., DigestSMTPHandler],
    logger: logging.Logger,
    cleanup: list[logging.Handler],
) -> None:
    """An ERROR-level handler behind nonblocking(): 20 INFO and 1 ERROR make exactly one e-mail."""
    connections = count_connections(smtp_server)
    handler = make(interval=0.2)
    handler.setLevel(logging.ERROR)
    front = behind_queue(handler, logger, cleanup)
    for number in range(20):
        logger.info("info %d", number)
    logger.error("the error")
    front.close()
    handler.close()
    time.sleep(0.3)
    assert ["ERROR the error"] == [body(m).strip() for m in smtp_server.messages]
    assert 1 == connections[0]
    assert 1 == front.stats()["delivered"]  # type: ignore[attr-defined] # INFO was never queued


def test_level_holds_behind_a_listener_that_ignores_it(
    smtp_server: Any, make: Callable[..., DigestSMTPHandler]
) -> None:
    """Behind a listener with respect_handler_level=False, an ERROR-level handler still mails only ERRORs."""
    import queue

    handler = make(interval=0.2)
    handler.setLevel(logging.ERROR)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = ctxlog.QueueListener(records, handler)
    listener.start()
    try:
        for number in range(20):
            records.put(record(f"info {number}", logging.INFO))
        records.put(record("the error"))
    finally:
        listener.stop()
    handler.close()
    time.sleep(0.3)
    assert ["ERROR the error"] == [body(m).strip() for m in smtp_server.messages]
