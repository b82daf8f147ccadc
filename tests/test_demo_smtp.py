"""The demo's embedded SMTP server, driven by smtplib (and a raw socket where smtplib is too polite)."""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from ctxlog.demo.smtp import SlowSMTPServer


@pytest.fixture
def server() -> Iterator[SlowSMTPServer]:
    with SlowSMTPServer("127.0.0.1", 0, delay=0.0) as running:
        yield running


def connect(server: SlowSMTPServer) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.port, timeout=10)


def test_send_message_arrives_with_its_envelope_and_headers(server):
    """smtplib's send_message: the envelope and the parsed message are what was sent."""
    message = EmailMessage()
    message["From"] = "shop@example.com"
    message["To"] = "ops@example.com, dev@example.com"
    message["Subject"] = "an error"
    message.set_content("payment failed\n")

    with connect(server) as smtp:
        assert {} == smtp.send_message(message)

    [received] = server.received
    assert ("shop@example.com", ("ops@example.com", "dev@example.com")) == (received.mail_from, received.rcpt_to)
    parsed = received.message()
    assert ("an error", "payment failed\n") == (parsed["Subject"], parsed.get_content())


def test_multi_line_body_and_dot_stuffing_come_back_unchanged(server):
    """Lines that start with a dot, and a lone dot, survive: smtplib stuffs them, the server unstuffs."""
    body = "first line\r\n.hidden\r\n..two dots\r\n.\r\nlast line\r\n"
    data = f"Subject: dots\r\n\r\n{body}"

    with connect(server) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], data)

    [received] = server.received
    assert data.encode() == received.data
    assert body.replace("\r\n", "\n") == received.message().get_content()


def test_rset_abandons_the_open_transaction(server):
    """After MAIL, RCPT and RSET, the next transaction starts clean; only it is delivered."""
    with connect(server) as smtp:
        smtp.ehlo()
        assert 250 == smtp.mail("dropped@example.com")[0]
        assert 250 == smtp.rcpt("nobody@example.com")[0]
        assert 250 == smtp.rset()[0]
        assert 503 == smtp.rcpt("nobody@example.com")[0]  # no MAIL any more
        smtp.sendmail("kept@example.com", ["ops@example.com"], "Subject: kept\r\n\r\nbody\r\n")

    assert [("kept@example.com", ("ops@example.com",))] == [(r.mail_from, r.rcpt_to) for r in server.received]


def test_helo_noop_and_quit(server):
    """A client that only says HELO can send; NOOP is answered; QUIT says goodbye."""
    smtp = connect(server)
    try:
        assert 250 == smtp.helo("client.example")[0]
        assert 250 == smtp.noop()[0]
        smtp.sendmail("a@example.com", ["b@example.com"], "Subject: helo\r\n\r\nhi\r\n")
        assert 221 == smtp.docmd("QUIT")[0]
    finally:
        smtp.close()

    assert 1 == len(server.received)


def test_ehlo_advertises_size_and_8bitmime(server):
    """EHLO is a multi-line reply that smtplib reads as extensions."""
    with connect(server) as smtp:
        code, _ = smtp.ehlo("client.example")

        assert 250 == code
        assert smtp.has_extn("size") and smtp.has_extn("8bitmime")


def test_commands_out_of_order_are_refused(server):
    """MAIL before EHLO, RCPT before MAIL, DATA before RCPT, and unknown commands get 5xx."""
    with connect(server) as smtp:
        assert 503 == smtp.docmd("MAIL", "FROM:<a@example.com>")[0]
        smtp.ehlo()
        assert 503 == smtp.docmd("RCPT", "TO:<b@example.com>")[0]
        assert 503 == smtp.docmd("DATA")[0]
        assert 501 == smtp.docmd("MAIL", "FROM: a@example.com")[0]
        assert 250 == smtp.docmd("MAIL", "FROM:<a@example.com>")[0]
        assert 503 == smtp.docmd("MAIL", "FROM:<a@example.com>")[0]  # nested transaction
        assert 500 == smtp.docmd("EXPN", "ops")[0]

    assert [] == server.received


def test_a_message_over_the_size_limit_is_refused():
    """smtplib declares the size in MAIL FROM: a message over max_size is refused there."""
    with SlowSMTPServer(delay=0.0, max_size=100) as server, connect(server) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("a@example.com", ["b@example.com"], "Subject: big\r\n\r\n" + "x" * 200)

        assert 552 == refused.value.smtp_code
        assert [] == server.received


def test_an_overlong_line_is_answered_and_the_session_goes_on(server):
    """A command line over 64 KiB gets a 500; the next command on the connection still works."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        raw.sendall(b"NOOP " + b"x" * 70_000 + b"\r\nNOOP\r\n")

        assert reader.readline().startswith(b"500 ")
        assert reader.readline().startswith(b"250 ")
        reader.close()


def test_stop_ends_open_sessions_and_refuses_new_ones():
    """stop() returns with a client still connected; that client is disconnected, the port closed."""
    server = SlowSMTPServer(delay=0.0).start()
    smtp = connect(server)
    smtp.ehlo()

    server.stop()

    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()
    smtp.close()
    with pytest.raises(OSError):
        connect(server)
    server.stop()  # twice is harmless


def test_each_message_waits_the_current_delay_on_the_stop_event():
    """Every DATA waits ``delay`` (read per message) on the event stop() sets, so stop cuts it short."""

    class Recording(threading.Event):
        def __init__(self) -> None:
            super().__init__()
            self.waits: list[float | None] = []

        def wait(self, timeout: float | None = None) -> bool:
            self.waits.append(timeout)
            return super().wait(0)  # no real waiting in a test

    with SlowSMTPServer(delay=0.2) as server:
        server.stopping = recording = Recording()
        with connect(server) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], "Subject: one\r\n\r\nx\r\n")
            server.delay = 0.0
            smtp.sendmail("a@example.com", ["b@example.com"], "Subject: two\r\n\r\nx\r\n")

    assert [0.2, 0.0] == recording.waits
    assert recording.is_set()
    assert 2 == len(server.received)
