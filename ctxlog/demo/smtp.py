"""
A small SMTP server for ``ctxlog demo``: standard library only, slow on purpose.

It speaks the part of RFC 5321 that :mod:`smtplib` uses to send mail (``EHLO``/``HELO``,
``MAIL``, ``RCPT``, ``DATA`` with dot-stuffing undone, ``RSET``, ``NOOP``, ``QUIT``) and keeps
what it accepts in memory. After the end of each message's data it waits ``delay`` seconds
before its ``250``, like a mail server that scans what it accepts: a logging handler that sends
an e-mail from a request makes that request wait as long.

It does no relaying, authentication or TLS, and serves one process on 127.0.0.1: the demo's
handlers and the tests.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import re
import socket
import socketserver
import threading
from dataclasses import dataclass
from typing import Final, Self, cast

__all__ = ["Received", "SlowSMTPServer"]

#: The longest line read, command or data (RFC 5321 allows 512 and 1000; smtplib stays below).
_MAX_LINE: Final = 64 * 1024
#: The most recipients one message may have.
_MAX_RECIPIENTS: Final = 100
_MAIL: Final = re.compile(r"FROM:\s*<([^<>]*)>\s*(.*)", re.IGNORECASE | re.DOTALL)
_RCPT: Final = re.compile(r"TO:\s*<([^<>]+)>\s*(.*)", re.IGNORECASE | re.DOTALL)
_SIZE_PARAM: Final = re.compile(r"(?:^|\s)SIZE=(\d+)(?:\s|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Received:
    """One message the server accepted: the envelope and the data as sent, dot-stuffing undone."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes

    def message(self) -> email.message.EmailMessage:
        r"""Parse :attr:`data` into an e-mail message, with ``\n`` line ends."""
        return email.message_from_bytes(
            self.data.replace(b"\r\n", b"\n"), policy=email.policy.default
        )


class _LineTooLongError(Exception):
    pass


class _Session(socketserver.StreamRequestHandler):
    """One SMTP connection: a command loop with one transaction at a time."""

    timeout = 30.0  # seconds a client may stay silent

    def setup(self) -> None:
        super().setup()
        self.owner = cast("_TCPServer", self.server).owner
        self.greeted = False
        self.reset()

    def reset(self) -> None:
        self.mail_from: str | None = None
        self.rcpt_to: list[str] = []

    def reply(self, *lines: str) -> None:
        """Send one reply; several lines make a multi-line reply (``250-...`` then ``250 ...``)."""
        text = "".join(
            f"{line[:3]}{'-' if i < len(lines) - 1 else ' '}{line[4:]}\r\n"
            for i, line in enumerate(lines)
        )
        self.wfile.write(text.encode("ascii", "replace"))

    def read_line(self) -> bytes | None:
        """Return the next line without its line end; ``None`` at the end of the connection."""
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            return None
        if len(line) > _MAX_LINE:
            while line and not line.endswith(b"\n"):  # skip the rest of it
                line = self.rfile.readline(_MAX_LINE + 1)
            raise _LineTooLongError
        return line.rstrip(b"\r\n")

    def handle(self) -> None:
        self.owner.track(self.connection, add=True)
        try:
            self.reply(f"220 {self.owner.hostname} ESMTP ctxlog demo")
            while not self.owner.stopping.is_set():
                try:
                    line = self.read_line()
                except _LineTooLongError:
                    self.reply("500 5.5.2 line too long")
                    continue
                if line is None or not self.command(line.decode("utf-8", "replace")):
                    return
        except OSError:  # the client went away or stayed silent too long
            return
        finally:
            self.owner.track(self.connection, add=False)

    def command(self, line: str) -> bool:
        """Answer one command line; return ``False`` when the session is over."""
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        argument = argument.strip()
        if verb == "QUIT":
            self.reply(f"221 2.0.0 {self.owner.hostname} closing connection")
            return False
        handler = {
            "EHLO": self.ehlo,
            "HELO": self.helo,
            "MAIL": self.mail,
            "RCPT": self.rcpt,
            "DATA": self.data,
            "RSET": self.rset,
            "NOOP": self.noop,
        }.get(verb)
        if handler is None:
            self.reply("500 5.5.2 command not recognized")
        else:
            handler(argument)
        return True

    def ehlo(self, argument: str) -> None:
        if not argument:
            self.reply("501 5.5.4 EHLO needs a domain or address")
            return
        self.greeted = True
        self.reset()
        self.reply(
            f"250 {self.owner.hostname} greets {argument}",
            "250 8BITMIME",
            f"250 SIZE {self.owner.max_size}",
            "250 HELP",
        )

    def helo(self, argument: str) -> None:
        if not argument:
            self.reply("501 5.5.4 HELO needs a domain or address")
            return
        self.greeted = True
        self.reset()
        self.reply(f"250 {self.owner.hostname}")

    def mail(self, argument: str) -> None:
        match = _MAIL.fullmatch(argument)
        if not self.greeted:
            self.reply("503 5.5.1 EHLO or HELO first")
        elif self.mail_from is not None:
            self.reply("503 5.5.1 a transaction is already open (RSET first)")
        elif match is None:
            self.reply("501 5.5.4 syntax: MAIL FROM:<address>")
        elif (size := _SIZE_PARAM.search(match.group(2))) and int(
            size.group(1)
        ) > self.owner.max_size:
            self.reply("552 5.3.4 message too big")
        else:
            self.mail_from = match.group(1)
            self.reply("250 2.1.0 OK")

    def rcpt(self, argument: str) -> None:
        match = _RCPT.fullmatch(argument)
        if self.mail_from is None:
            self.reply("503 5.5.1 MAIL first")
        elif match is None:
            self.reply("501 5.5.4 syntax: RCPT TO:<address>")
        elif len(self.rcpt_to) >= _MAX_RECIPIENTS:
            self.reply("452 4.5.3 too many recipients")
        else:
            self.rcpt_to.append(match.group(1))
            self.reply("250 2.1.5 OK")

    def data(self, argument: str) -> None:
        if argument:
            self.reply("501 5.5.4 DATA takes no argument")
            return
        if self.mail_from is None or not self.rcpt_to:
            self.reply("503 5.5.1 RCPT first")
            return
        self.reply("354 end data with <CR><LF>.<CR><LF>")
        lines: list[bytes] = []
        size = 0
        too_long = False
        while True:
            try:
                line = self.read_line()
            except _LineTooLongError:
                too_long = True
                continue
            if line is None:
                raise ConnectionResetError  # the client left in the middle of a message
            if line == b".":
                break
            if line.startswith(b"."):
                line = line[1:]  # dot-stuffing (RFC 5321, 4.5.2)
            size += len(line) + 2
            if size <= self.owner.max_size:
                lines.append(line)
        if too_long or size > self.owner.max_size:
            self.reset()
            self.reply("552 5.3.4 message too big")
            return
        message = Received(
            self.mail_from, tuple(self.rcpt_to), b"".join(x + b"\r\n" for x in lines)
        )
        self.reset()
        self.owner.stopping.wait(self.owner.delay)  # slow on purpose; not once it is stopping
        number = self.owner.keep(message)
        self.reply(f"250 2.0.0 OK: queued as {number}")

    def rset(self, _: str) -> None:
        self.reset()
        self.reply("250 2.0.0 OK")

    def noop(self, _: str) -> None:
        self.reply("250 2.0.0 OK")


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False  # server_close() waits for every session
    block_on_close = True

    def __init__(self, address: tuple[str, int], owner: SlowSMTPServer) -> None:
        self.owner = owner
        super().__init__(address, _Session)

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet: a client's mistake is answered on its connection, nowhere else."""


class SlowSMTPServer:
    """
    Serve SMTP on ``host:port`` in threads of this process, answering each message slowly.

    Args:
        host: The address to listen on.
        port: The port; 0 picks a free one (read :attr:`port` after :meth:`start`).
        delay: Seconds between the end of a message's data and the server's reply. It can be
            changed while the server runs; :meth:`stop` cuts a wait short.
        max_size: The largest message accepted, in bytes.
    """

    hostname = "ctxlog-demo.invalid"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        delay: float = 0.2,
        max_size: int = 10 * 1024 * 1024,
    ) -> None:
        self.host, self.port = host, port
        self.delay = delay
        self.max_size = max_size
        self.stopping = threading.Event()
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def received(self) -> list[Received]:
        """The messages accepted so far, oldest first."""
        with self._lock:
            return list(self._received)

    def keep(self, message: Received) -> int:
        """Store ``message``; return how many messages the server has accepted."""
        with self._lock:
            self._received.append(message)
            return len(self._received)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        """Remember the open connections, so that :meth:`stop` can end them."""
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def start(self) -> Self:
        """Listen, and serve in a thread; return once the port is bound."""
        server = _TCPServer((self.host, self.port), self)
        self._server = server
        self.port = server.server_address[1]
        self.stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="ctxlog-demo-smtp", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, end the open connections and wait for their threads."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its session
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
