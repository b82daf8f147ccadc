"""
A slow SMTP server (aiosmtpd) in a process of its own, that counts what it received.

The server runs outside the measured process so that its event loop never competes with the log
calls for the GIL (a real mail server is on another machine). Every DATA command waits ``delay``
seconds before it answers ``250 OK``; connections are served concurrently.

Records are recognised in the decoded body of every message by ``contestant=NAME seq=N``; the
server keeps, per contestant, the messages that carried it, every ``seq`` seen and how many times.

Used by ``bench_delivery.py``::

    with SlowSMTPServer(delay=0.2) as server:
        handler = logging.handlers.SMTPHandler(("127.0.0.1", server.port), ...)
        ...
        server.stats()  # {"messages": 12, "contestants": {"smtp": {...}}}

Run directly, it is the server: ``python _smtp.py --delay 0.2`` prints ``READY <port>`` and
answers the commands ``stats`` (one JSON line) and ``quit`` on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

RECORD = re.compile(r"contestant=(\S+) seq=(\d+)")


class _Counter:
    """The aiosmtpd handler: waits ``delay`` in DATA, then counts the records in the body."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.messages = 0
        self.seen: dict[str, dict[int, int]] = {}
        self.messages_of: dict[str, int] = {}
        self.subjects: dict[str, int] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        found = RECORD.findall(text)
        with self.lock:
            self.messages += 1
            subject = str(message["Subject"] or "")
            self.subjects[subject] = self.subjects.get(subject, 0) + 1
            names = set()
            for name, seq in found:
                counts = self.seen.setdefault(name, {})
                counts[int(seq)] = counts.get(int(seq), 0) + 1
                names.add(name)
            for name in names:
                self.messages_of[name] = self.messages_of.get(name, 0) + 1
        return "250 OK"

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "messages": self.messages,
                "contestants": {
                    name: {
                        "messages": self.messages_of.get(name, 0),
                        "unique": len(counts),
                        "total": sum(counts.values()),
                        "max_seq": max(counts, default=-1),
                    }
                    for name, counts in self.seen.items()
                },
            }


def serve(delay: float) -> None:
    """Run the server until ``quit`` (or EOF) on stdin."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:  # aiosmtpd's readiness check needs a port number, not 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    counter = _Counter(delay)
    controller = Controller(counter, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    print(f"READY {port}", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                print(json.dumps(counter.stats()), flush=True)
            elif command == "quit":
                break
    finally:
        controller.stop()


class SlowSMTPServer:
    """Start ``serve()`` in a child process; ask it for its counts."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.port = 0
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--delay", str(self.delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # the server prints READY within ready_timeout
        if not line.startswith("READY "):
            self.stop()
            msg = f"SMTP server did not start: {line!r}"
            raise RuntimeError(msg)
        self.port = int(line.split()[1])

    def stats(self) -> dict[str, Any]:
        assert self._process is not None
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        with self._lock:
            self._process.stdin.write("stats\n")
            self._process.stdin.flush()
            return json.loads(self._process.stdout.readline())

    def wait_for(self, expected: dict[str, int], timeout: float) -> dict[str, Any]:
        """Wait until every contestant's ``unique`` count reaches ``expected``; return stats."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            got = stats["contestants"]
            if all(got.get(name, {}).get("unique", 0) >= n for name, n in expected.items()):
                return stats
            if time.monotonic() >= deadline:
                return stats
            time.sleep(0.1)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            assert process.stdin is not None
            process.stdin.write("quit\n")
            process.stdin.flush()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.2, help="seconds DATA waits")
    serve(parser.parse_args().delay)
