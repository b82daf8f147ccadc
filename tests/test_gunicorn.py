"""
One log file from many processes: gunicorn workers send through one ``ctxlog receive`` (issue 4).

Two real gunicorn masters serve the Flask app in ``tests/apps/gunicorn_app.py``: 4 sync workers
started with ``--preload`` (the master imports the app and logs before it forks) and 4 gthread
workers with 4 threads each. Every process sends through
``ctxlog.nonblocking([JSONSocketHandler(...)])`` to one real ``ctxlog receive`` that rotates a
small file, while a client sends a few hundred requests to each server; then both masters get
SIGTERM with a request still running, and the receiver last.
"""

from __future__ import annotations

import collections
import concurrent.futures
import http.client
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parent / "apps"
REQUESTS_PER_SERVER = 300
CLIENT_THREADS = 16
MAX_BYTES = 16 * 1024
WORKERS = 4
#: A line of the receiver's default format; a traceback follows on lines starting "  | ".
RECORD = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<ip>\S+) (?P<user>\S+) "
    r"(?P<request_id>\S+) (?P<name>\S+) (?P<message>.*) "
    r"\[pid (?P<pid>\d+) from (?P<peer>127\.0\.0\.1:\d+)\]"
)
CONTINUATION = "  | "


@dataclass
class Record:
    level: str
    ip: str
    user: str
    request_id: str
    name: str
    message: str
    pid: int
    peer: str
    tail: list[str] = field(default_factory=list)


@dataclass
class Server:
    kind: str
    options: list[str]
    preload: bool
    process: subprocess.Popen[bytes] | None = None
    stderr: Path | None = None
    port: int = 0


@dataclass
class Request:
    kind: str
    seq: int
    fail: bool

    @property
    def ip(self) -> str:
        return f"198.18.{self.seq // 256}.{self.seq % 256}"

    @property
    def user(self) -> str:
        return f"user-{self.seq}"

    @property
    def request_id(self) -> str:
        return f"{self.kind}-{self.seq:05d}"

    def headers(self) -> dict[str, str]:
        return {
            # The left-most entry is the client's own claim; 127.0.0.1 (the peer) is trusted
            # and appended the real client, the right-most entry.
            "X-Forwarded-For": f"6.6.6.6, {self.ip}",
            "X-User": self.user,
            "X-Request-ID": self.request_id,
            "X-Seq": str(self.seq),
            "Connection": "close",
        }


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def log_files(directory: Path) -> list[Path]:
    """Return app.log and its rotated files, oldest first."""
    rotated = [p for p in directory.glob("app.log.*") if p.suffix[1:].isdigit()]
    rotated.sort(key=lambda p: int(p.suffix[1:]), reverse=True)
    return [*rotated, directory / "app.log"]


def all_log_text(directory: Path) -> str:
    # While the receiver rotates, a file can be renamed between listing and reading: only the
    # final read (after the receiver exited) must be exact.
    return "".join(read_text(path) for path in log_files(directory))


def start_receiver(directory: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    stderr = directory / "receiver.err"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ctxlog", "receive", "--listen", "127.0.0.1:0",
             "--file", str(directory / "app.log"), "--max-bytes", str(MAX_BYTES),
             "--backup-count", "1000"],
            stderr=sink,
            cwd=directory,
        )  # fmt: skip
    found: list[int] = []

    def listening() -> bool:
        if process.poll() is not None:
            pytest.fail(f"ctxlog receive exited with {process.returncode}: {read_text(stderr)}")
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", read_text(stderr))
        if match:
            found.append(int(match.group(1)))
        return bool(found)

    wait_until(listening, 30, "ctxlog receive to listen")
    return process, found[0], stderr


def gunicorn_command(server: Server) -> list[str]:
    from gunicorn.config import KNOWN_SETTINGS

    command = [
        sys.executable, "-m", "gunicorn", "--pythonpath", str(APPS), "--bind", "127.0.0.1:0",
        "--workers", str(WORKERS), *server.options, "--graceful-timeout", "30",
        "--timeout", "60", "--log-level", "info",
    ]  # fmt: skip
    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
        # gunicorn 25.1+ opens a control socket at one path per user: two masters would share it.
        command.append("--no-control-socket")
    if server.preload:
        command.append("--preload")
    return [*command, "gunicorn_app:app"]


def start_gunicorn(server: Server, receiver_port: int, directory: Path) -> None:
    env = {
        **os.environ,
        "CTXLOG_TEST_KIND": server.kind,
        "CTXLOG_TEST_RECEIVER_PORT": str(receiver_port),
        "PYTHONUNBUFFERED": "1",
    }
    server.stderr = directory / f"gunicorn-{server.kind}.err"
    with server.stderr.open("wb") as sink:
        server.process = subprocess.Popen(
            gunicorn_command(server), stderr=sink, stdout=sink, env=env, cwd=directory
        )


def gunicorn_listening(server: Server) -> bool:
    assert server.process is not None
    assert server.stderr is not None
    if server.process.poll() is not None:
        pytest.fail(f"gunicorn {server.kind} exited early: {read_text(server.stderr)}")
    match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", read_text(server.stderr))
    if match:
        server.port = int(match.group(1))
    return bool(server.port)


def booted_workers(server: Server) -> set[int]:
    assert server.stderr is not None
    return {
        int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", read_text(server.stderr))
    }


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, str | None, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("X-Request-ID"), response.read()
    finally:
        connection.close()


def send(server: Server, request: Request, path: str) -> None:
    status, echoed, body = get(server.port, path, request.headers())
    assert echoed == request.request_id, (status, body)
    if request.fail:
        assert (500, b"failed\n") == (status, body)
    else:
        assert 200 == status, body
        assert request.seq == json.loads(body)["seq"]


def parse(text: str) -> tuple[list[Record], list[str]]:
    """Return the records in ``text``, and the lines that are neither a record nor a tail."""
    records: list[Record] = []
    bad: list[str] = []
    for line in text.split("\n")[:-1]:  # the file ends with a newline
        if line.startswith(CONTINUATION):
            if records:
                records[-1].tail.append(line[len(CONTINUATION) :])
            else:
                bad.append(line)
            continue
        match = RECORD.fullmatch(line)
        if match is None:
            bad.append(line)
            continue
        fields = match.groupdict()
        records.append(Record(**{**fields, "pid": int(fields["pid"])}))
    if not text.endswith("\n") and text:
        bad.append(text.rsplit("\n", 1)[-1])
    return records, bad


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.kill()
    process.wait(timeout=30)


@pytest.mark.timeout(180)
def test_gunicorn_sync_and_gthread_workers_share_one_receiver(tmp_path):
    """Records of 4+4 gunicorn workers arrive once each, whole, with their request's fields."""
    if importlib.util.find_spec("gunicorn") is None:
        pytest.fail("gunicorn is not installed: it is in the test extra (pip install -e '.[test]')")
    servers = [
        Server("sync", ["--worker-class", "sync"], preload=True),
        Server("gthread", ["--worker-class", "gthread", "--threads", "4"], preload=False),
    ]
    receiver: subprocess.Popen[bytes] | None = None
    try:
        receiver, receiver_port, receiver_err = start_receiver(tmp_path)
        for server in servers:
            start_gunicorn(server, receiver_port, tmp_path)
        for server in servers:
            wait_until(lambda s=server: gunicorn_listening(s), 60, f"gunicorn {server.kind}")
        # Every worker is up (and has its app, hence its logging) before the load starts.
        for server in servers:
            wait_until(
                lambda s=server: len(booted_workers(s)) == WORKERS, 60, f"{server.kind} workers"
            )
        wait_until(
            lambda: all_log_text(tmp_path).count("app loaded kind=gthread") == WORKERS,
            60,
            "the gthread workers to import the app",
        )

        requests: list[tuple[Server, Request]] = []
        seq = 0
        for _ in range(REQUESTS_PER_SERVER):
            for server in servers:
                seq += 1
                requests.append((server, Request(server.kind, seq, fail=seq % 10 == 3)))
        with concurrent.futures.ThreadPoolExecutor(CLIENT_THREADS) as pool:
            loads = [
                pool.submit(send, server, request, "/order?fail=1" if request.fail else "/order")
                for server, request in requests
            ]
            for done in loads:
                done.result()

            # Graceful shutdown with a request still running on each server.
            slow: list[tuple[Server, Request]] = []
            for server in servers:
                seq += 1
                slow.append((server, Request(server.kind, seq, fail=False)))
            running = [pool.submit(send, s, r, "/slow?seconds=2") for s, r in slow]
            wait_until(
                lambda: all(f"slow seq={r.seq} start" in all_log_text(tmp_path) for _, r in slow),
                30,
                "the slow requests to start",
            )
            for server in servers:
                assert server.process is not None
                server.process.send_signal(signal.SIGTERM)
            for server in servers:
                assert server.process is not None
                assert 0 == server.process.wait(timeout=60), read_text(server.stderr)
            for done in running:
                done.result()

        receiver.send_signal(signal.SIGTERM)
        assert 0 == receiver.wait(timeout=30), read_text(receiver_err)
    finally:
        for server in servers:
            stop(server.process)
        stop(receiver)

    # -- what the file holds ----------------------------------------------------------------
    files = log_files(tmp_path)
    assert len(files) - 1 >= 3, "expected at least 3 rollovers"
    for path in files:
        assert path.stat().st_size <= MAX_BYTES, path
    records, bad = parse("".join(path.read_text(encoding="utf-8") for path in files))
    assert [] == bad  # every line whole: a record or a traceback line

    summary = read_text(receiver_err)
    assert f"stopped: {len(records)} records from " in summary, summary
    assert "rejected: none" in summary, summary
    for server in servers:
        errors = [line for line in read_text(server.stderr).splitlines() if "ctxlog" in line]
        assert [] == errors  # no drop, failure or undelivered record reported by ctxlog

    # Every request's records, exactly once, each with that request's ip, user and request id.
    expected: dict[tuple[str, str], tuple[Request, str]] = {}
    for _, request in requests:
        steps = [
            ("shop", f"order seq={request.seq} start kind={request.kind}", "INFO"),
            ("shop.pricing", f"pricing seq={request.seq}", "INFO"),
            ("shop", f"order seq={request.seq} failed", "ERROR")
            if request.fail
            else ("shop", f"order seq={request.seq} done total={request.seq * 3 + 1}", "INFO"),
        ]
        for name, message, level in steps:
            expected[name, message] = (request, level)
    for _, request in slow:
        expected["shop", f"slow seq={request.seq} start kind={request.kind}"] = (request, "INFO")
        expected["shop", f"slow seq={request.seq} done"] = (request, "INFO")

    seen = collections.Counter((r.name, r.message) for r in records)
    duplicated = sorted(key for key, count in seen.items() if count > 1)
    assert [] == duplicated
    missing = sorted(key for key in expected if key not in seen)
    assert [] == missing

    request_pids: dict[str, set[int]] = collections.defaultdict(set)
    lifecycle: list[Record] = []
    for record in records:
        key = (record.name, record.message)
        if key not in expected:
            lifecycle.append(record)
            continue
        request, level = expected[key]
        got = (record.level, record.ip, record.user, record.request_id)
        assert (level, request.ip, request.user, request.request_id) == got, record
        request_pids[request.kind].add(record.pid)
        if level == "ERROR":
            assert "Traceback (most recent call last):" == record.tail[0], record
            assert f"ValueError: no price for seq {request.seq}" == record.tail[-1], record
        else:
            assert [] == record.tail, record

    # Outside requests: "app loaded" where the app was imported (the sync master, before it
    # forked; each gthread worker), "process exiting" from every process that imported it.
    by_kind: dict[str, dict[str, list[int]]] = {
        server.kind: {"app loaded": [], "process exiting": []} for server in servers
    }
    for record in lifecycle:
        match = re.fullmatch(r"(app loaded|process exiting) kind=(\w+) pid=(\d+)", record.message)
        assert match is not None, record
        event, kind, pid = match.group(1), match.group(2), int(match.group(3))
        assert (record.name, record.pid) == ("shop", pid), record
        assert ("-", "-", "-") == (record.ip, record.user, record.request_id), record
        by_kind[kind][event].append(pid)
    all_workers: set[int] = set()
    for server in servers:
        assert server.process is not None
        master = server.process.pid
        workers = booted_workers(server)
        assert WORKERS == len(workers), read_text(server.stderr)  # none died and was replaced
        assert master not in workers
        importers = {master} if server.preload else workers
        assert sorted(importers) == sorted(by_kind[server.kind]["app loaded"])
        exiting = (importers | workers) if server.preload else workers
        assert sorted(exiting) == sorted(by_kind[server.kind]["process exiting"])
        # Requests were served by this server's workers, all of them, never by the master.
        assert workers == request_pids[server.kind]
        all_workers |= workers
    assert 2 * WORKERS == len(all_workers)

    # One connection never carries two processes' records: the workers of the --preload
    # master did not write into the connection they inherited from it.
    pids_by_peer: dict[str, set[int]] = collections.defaultdict(set)
    for record in records:
        pids_by_peer[record.peer].add(record.pid)
    shared = {peer: pids for peer, pids in pids_by_peer.items() if len(pids) > 1}
    assert {} == shared
