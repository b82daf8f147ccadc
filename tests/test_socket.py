"""JSONSocketHandler against the real receiver: per-process connections, back-off, buffer, stalls."""

from __future__ import annotations

import logging
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import ctxlog
from ctxlog import wire as _wire
from ctxlog.handlers import JSONSocketHandler
from ctxlog.receiver import Receiver, ReceiverThread


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Collect:
    """A receiver's dispatch target: keeps every record it is handed."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self.lock = threading.Lock()

    def __call__(self, record: logging.LogRecord) -> None:
        with self.lock:
            self.records.append(record)

    def messages(self) -> list[str]:
        with self.lock:
            return [r.getMessage() for r in self.records]


def sender_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


@pytest.fixture
def received():
    got = Collect()
    thread = ReceiverThread(Receiver(port=0, dispatch=got)).start()
    got.port = thread.receiver.port
    got.receiver = thread.receiver
    yield got
    thread.stop(grace=1.0)


def test_record_arrives_with_context_merged_message_and_traceback(received):
    """The request's fields, the merged message and the traceback text cross the network."""
    handler = JSONSocketHandler("127.0.0.1", received.port)
    log = sender_logger("test.socket.roundtrip", handler)
    try:
        with ctxlog.scope(ip="203.0.113.7", user="alice", request_id="req-1"):
            log.info("paid %s EUR", 42, extra={"order": 7})
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError:
                log.exception("failed")
        assert wait_for(lambda: len(received.records) == 2)
    finally:
        handler.close()
    paid, failed = received.records
    assert "paid 42 EUR" == paid.getMessage()
    assert paid.args is None
    assert ("203.0.113.7", "alice", "req-1") == (paid.ip, paid.user, paid.request_id)
    assert 7 == paid.order
    assert re.fullmatch(r"127\.0\.0\.1:\d+", paid.peer)
    assert "ZeroDivisionError: division by zero" in failed.exc_text
    assert failed.exc_info is None
    assert {"sent": 2, "dropped": 0, "buffered": 0, "connections": 1, "failures": 0} == (
        handler.stats()
    )


def test_records_sent_while_the_receiver_is_down_arrive_in_order_after_it_returns(capsys):
    """100 records logged during an outage are buffered and sent, in order, once it ends."""
    port = free_port()
    handler = JSONSocketHandler("127.0.0.1", port, retry_start=0.05, retry_max=0.2)
    log = sender_logger("test.socket.outage", handler)
    got = Collect()
    thread = None
    try:
        for i in range(100):
            log.info("record %d", i)
        assert 100 == handler.stats()["buffered"]
        assert handler.failures >= 1
        thread = ReceiverThread(Receiver(port=port, dispatch=got)).start()
        # No further record is logged: the retry thread must send the buffer by itself.
        assert wait_for(lambda: len(got.records) == 100)
        assert [f"record {i}" for i in range(100)] == got.messages()
        assert 0 == handler.dropped
    finally:
        handler.close()
        if thread is not None:
            thread.stop(grace=1.0)
    err = capsys.readouterr().err
    assert 1 == err.count("cannot send to")  # one line for the outage, not one per attempt
    assert "reaches 127.0.0.1:" in err


def test_a_full_buffer_drops_the_oldest_and_counts_exactly(capsys):
    """Beyond `buffer` records the oldest are dropped, counted exactly, and reported once."""
    port = free_port()
    handler = JSONSocketHandler("127.0.0.1", port, buffer=10, retry_start=0.05, retry_max=0.1)
    log = sender_logger("test.socket.full", handler)
    got = Collect()
    thread = None
    try:
        for i in range(25):
            log.info("record %d", i)
        assert 15 == handler.dropped
        thread = ReceiverThread(Receiver(port=port, dispatch=got)).start()
        assert wait_for(lambda: len(got.records) == 10)
        assert [f"record {i}" for i in range(15, 25)] == got.messages()
    finally:
        handler.close()
        if thread is not None:
            thread.stop(grace=1.0)
    assert 1 == capsys.readouterr().err.count("is full")


def test_close_reports_what_it_could_not_send(capsys):
    """Closing while the receiver is unreachable counts the buffered records as dropped."""
    handler = JSONSocketHandler("127.0.0.1", free_port(), retry_start=5)
    log = sender_logger("test.socket.close", handler)
    log.warning("one")
    log.warning("two")
    handler.close()
    assert 2 == handler.dropped
    assert "closed with 2 records not sent" in capsys.readouterr().err


def test_signed_frames_are_accepted_by_a_receiver_with_the_same_secret():
    """With a shared secret the receiver takes the sender's frames and refuses unsigned ones."""
    secret = b"0123456789abcdef-shared"
    got = Collect()
    thread = ReceiverThread(Receiver(port=0, secret=secret, dispatch=got)).start()
    signed = JSONSocketHandler("127.0.0.1", thread.receiver.port, secret=secret)
    unsigned = JSONSocketHandler("127.0.0.1", thread.receiver.port, retry_start=10)
    try:
        sender_logger("test.socket.signed", signed).info("signed")
        sender_logger("test.socket.unsigned", unsigned).info("unsigned")
        assert wait_for(lambda: thread.receiver.rejected.get("unsigned frame") == 1)
        sender_logger("test.socket.signed", signed).info("signed again")
        assert wait_for(lambda: len(got.records) == 2)
        assert ["signed", "signed again"] == got.messages()
    finally:
        signed.close()
        unsigned.close()
        thread.stop(grace=1.0)


def test_a_stalled_receiver_never_blocks_the_app_and_never_gets_a_cut_frame(capsys):
    """
    A receiver that stops reading: log calls behind nonblocking() return at once, and each
    connection carries whole frames only (a cut frame ends its connection).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    streams: dict[int, bytes] = {}
    stalled = threading.Event()  # set: stop stalling and read everything
    done = threading.Event()
    readers: list[threading.Thread] = []

    def read_all(n: int, conn: socket.socket) -> None:
        stalled.wait(30)
        chunks = []
        with conn:
            conn.settimeout(10)
            while data := conn.recv(1 << 20):
                chunks.append(data)
        streams[n] = b"".join(chunks)

    def serve() -> None:
        with listener:
            while not done.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                reader = threading.Thread(target=read_all, args=(len(readers), conn))
                readers.append(reader)
                reader.start()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    handler = JSONSocketHandler("127.0.0.1", port, timeout=0.3, retry_start=0.05, retry_max=0.1)
    front = ctxlog.nonblocking([handler], maxsize=100_000)
    log = sender_logger("test.socket.stall", front)
    big = "x" * 50_000
    worst = 0.0
    try:
        for i in range(200):  # 10 MB: far more than the socket buffers hold
            start = time.perf_counter()
            log.info("%d %s", i, big)
            worst = max(worst, time.perf_counter() - start)
        # The sender timed out mid-frame at least once and reconnected.
        assert wait_for(lambda: handler.stats()["connections"] >= 2, timeout=20)
    finally:
        stalled.set()
        front.close()
        handler.close()  # nonblocking() hands records over; the target's close() sends the rest
        done.set()
        server.join(20)
        for reader in readers:
            reader.join(20)
    assert worst < 0.25  # each send may block 0.3 s in the delivery thread, never here
    assert len(streams) >= 2
    complete = 0
    for stream in streams.values():
        offset = 0
        while len(stream) - offset >= _wire.HEADER_SIZE:
            header = stream[offset : offset + _wire.HEADER_SIZE]
            _signed, length = _wire.read_header(header)
            end = offset + _wire.HEADER_SIZE + length
            if end > len(stream):
                # Only the very last frame of a connection may be cut (the sender then closed).
                break
            record = _wire.decode(header, stream[offset + _wire.HEADER_SIZE : end])
            assert record.getMessage().endswith(big)
            complete += 1
            offset = end
    # Every record arrived whole at least once: a frame cut by a timeout is sent again whole.
    assert complete >= 200
    assert 0 == handler.dropped
    capsys.readouterr()


def test_name_resolution_happens_in_the_delivery_thread(monkeypatch):
    """A slow DNS answer delays the delivery thread, never the code that logs."""
    real = socket.getaddrinfo
    lookups = []

    def slow_getaddrinfo(host, *args, **kwargs):
        if host == "logs.slow.test":
            lookups.append(threading.current_thread().name)
            time.sleep(1.0)
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    got = Collect()
    thread = ReceiverThread(Receiver(port=0, dispatch=got)).start()
    handler = JSONSocketHandler("logs.slow.test", thread.receiver.port)
    front = ctxlog.nonblocking([handler])
    log = sender_logger("test.socket.dns", front)
    try:
        start = time.perf_counter()
        for i in range(20):
            log.info("r%d", i)
        elapsed = time.perf_counter() - start
        assert wait_for(lambda: len(got.records) == 20)
    finally:
        front.close()
        handler.close()
        thread.stop(grace=1.0)
    assert elapsed < 0.5  # 20 lookups would take 20 s if they happened here
    assert lookups
    assert threading.main_thread().name not in lookups


@pytest.mark.parametrize("signed", [False, True], ids=["open", "secret"])
def test_each_forked_worker_opens_its_own_connection(tmp_path, signed):
    """Children of a parent that already connected never write into its stream (PITFALLS 21); signed, each is a sender of its own."""
    log_file = tmp_path / "all.log"
    secret = b"0123456789abcdef-forked-workers"
    (tmp_path / "secret").write_bytes(secret)
    options = ["--secret-file", str(tmp_path / "secret")] if signed else []
    receiver = subprocess.Popen(
        [sys.executable, "-m", "ctxlog", "receive", "--listen", "127.0.0.1:0", "--file",
         str(log_file), "--format", "%(process)s %(message)s", *options],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        line = receiver.stderr.readline()
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", line).group(1))
        script = tmp_path / "forker.py"
        script.write_text(
            textwrap.dedent(f"""
            import logging, os, sys, warnings
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
            import ctxlog
            from ctxlog.handlers import JSONSocketHandler
            handler = JSONSocketHandler("127.0.0.1", {port}, secret={secret if signed else None!r})
            root = logging.getLogger()
            root.addHandler(handler)
            root.setLevel(logging.INFO)
            big = "y" * 200_000
            root.info("parent connected")  # the connection exists before the fork
            children = []
            for n in range(4):
                pid = os.fork()
                if pid == 0:
                    for i in range(20):
                        root.info("child %d record %d %s", n, i, big)
                    handler.close()
                    os._exit(0)
                children.append(pid)
            for i in range(20):
                root.info("parent record %d %s", i, big)
            for pid in children:
                os.waitpid(pid, 0)
            handler.close()
            print(handler.connections)
            """)
        )
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
        )
        assert 0 == done.returncode, done.stderr
        assert "1" == done.stdout.strip()  # the parent's own handler connected once
        expected = 1 + 20 + 4 * 20

        def lines() -> list[str]:
            return log_file.read_text(encoding="utf-8").splitlines() if log_file.exists() else []

        assert wait_for(lambda: len(lines()) >= expected, timeout=20)
    finally:
        receiver.send_signal(signal.SIGTERM)
        _, err = receiver.communicate(timeout=20)
    assert 0 == receiver.returncode, err
    assert "rejected: none" in err  # no garbage frame, no cut frame
    got = lines()
    assert expected == len(got)
    pids = {line.split(" ", 1)[0] for line in got}
    assert 5 == len(pids)  # the parent and four children, each on its own connection
    for n in range(4):
        mine = [line for line in got if f" child {n} record " in line]
        assert 20 == len(mine)
        assert all(line.endswith("y" * 200_000) for line in mine)
    assert 20 == sum(" parent record " in line for line in got)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 0}, "port=0 is not a TCP port"),
        ({"port": "9020"}, "is not a TCP port"),
        ({"host": ""}, "host=''"),
        ({"timeout": 0}, "timeout=0 is not a positive number"),
        ({"retry_max": float("nan")}, "retry_max=nan"),
        ({"buffer": 0}, "buffer=0 is not a positive integer"),
        ({"secret": b"short"}, "at least 16 bytes"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    """A misconfigured handler fails when it is made, naming the value."""
    arguments = {"host": "127.0.0.1", "port": 9020, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        JSONSocketHandler(**arguments)


def test_tls_must_be_a_context():
    """tls= takes None, a bool or an SSLContext."""
    with pytest.raises(TypeError, match="tls="):
        JSONSocketHandler("127.0.0.1", 9020, tls="yes")


def test_nothing_connects_before_the_first_record():
    """Making the handler opens no socket (a master may make it, then fork)."""
    handler = JSONSocketHandler("127.0.0.1", free_port())
    try:
        assert 0 == handler.connections
        assert 0 == handler.failures
    finally:
        handler.close()


def test_receiver_port_zero_is_reported(tmp_path: Path):
    """ReceiverThread exposes the port it bound when asked for port 0."""
    with ReceiverThread(Receiver(port=0, dispatch=Collect())) as thread:
        assert thread.receiver.port > 0


def test_the_hand_built_frame_in_the_docs_is_accepted():
    """docs/wire-format.md's sender, written without ctxlog, gets its record through."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "wire-format.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", page, re.DOTALL).group(1)
    got = Collect()
    with ReceiverThread(Receiver(port=0, dispatch=got)) as thread:
        code = snippet.replace("9020", str(thread.receiver.port))
        exec(compile(code, "wire-format.md", "exec"), {})  # noqa: S102 - our own docs
        assert wait_for(lambda: len(got.records) == 1)
    (record,) = got.records
    assert ("billing", "invoice 17 sent", "4be1c0d2a9f34e6b") == (
        record.name,
        record.getMessage(),
        record.request_id,
    )
    assert {} == thread.receiver.rejected


def test_the_hand_built_signed_frame_in_the_docs_is_accepted_once():
    """docs/wire-format.md's frame(record, key): accepted by a receiver with the key; the same bytes again are a replay."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "wire-format.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", page, re.DOTALL).group(1)
    definitions = snippet.split("\nrecord = ")[0]
    key = b"0123456789abcdef-docs"
    got = Collect()
    with ReceiverThread(Receiver(port=0, secret=key, dispatch=got)) as thread:
        namespace: dict = {}
        exec(compile(definitions, "wire-format.md", "exec"), namespace)  # noqa: S102 - our own docs
        record = {"name": "billing", "levelno": 20, "msg": "signed by hand", "created": time.time()}
        first, second = namespace["frame"](record, key), namespace["frame"](record, key)
        with socket.create_connection(("127.0.0.1", thread.receiver.port)) as sock:
            sock.sendall(first + first + second)
        assert wait_for(lambda: len(got.records) == 2)
        assert wait_for(lambda: thread.receiver.rejected)
    assert ["signed by hand"] * 2 == got.messages()
    assert {"replayed frame": 1} == thread.receiver.rejected


def test_a_connection_the_receiver_closed_is_replaced_before_the_next_record():
    """After the receiver's idle timeout closes the connection, the next record is not lost."""
    got = Collect()
    thread = ReceiverThread(Receiver(port=0, idle_timeout=0.2, dispatch=got)).start()
    handler = JSONSocketHandler("127.0.0.1", thread.receiver.port)
    log = sender_logger("test.socket.idle", handler)
    try:
        log.info("before the idle timeout")
        assert wait_for(lambda: thread.receiver.idle_closed == 1)
        time.sleep(0.1)  # the FIN has reached the sender
        log.info("after the idle timeout")
        assert wait_for(lambda: len(got.records) == 2)
    finally:
        handler.close()
        thread.stop(grace=1.0)
    assert ["before the idle timeout", "after the idle timeout"] == got.messages()
    assert 2 == handler.connections
    assert 0 == handler.failures


def test_behind_nonblocking_a_burst_leaves_in_few_sends(monkeypatch):
    """The delivery thread lets the handler join a burst's frames: far fewer sends than records."""
    sends = []
    real_sendall = socket.socket.sendall

    def counting_sendall(self, data, *args):
        sends.append(len(data))
        return real_sendall(self, data, *args)

    monkeypatch.setattr(socket.socket, "sendall", counting_sendall)
    got = Collect()
    thread = ReceiverThread(Receiver(port=0, dispatch=got)).start()
    handler = JSONSocketHandler("127.0.0.1", thread.receiver.port)
    front = ctxlog.nonblocking([handler], maxsize=10_000)
    log = sender_logger("test.socket.burst", front)
    try:
        for i in range(2_000):
            log.info("record %d", i)
        assert wait_for(lambda: len(got.records) == 2_000)
    finally:
        front.close()
        handler.close()
        thread.stop(grace=1.0)
    assert [f"record {i}" for i in range(2_000)] == got.messages()
    assert 2_000 == handler.sent
    assert len(sends) < 500  # one send per record without batching
    assert not handler._sender.batching  # close() gave the handler its own sending back


def test_set_batching_holds_frames_until_flush(received):
    """With batching on (as a delivery worker sets it), frames wait for flush(); off, each leaves at once."""
    from ctxlog.queue.target import Batching

    handler = JSONSocketHandler("127.0.0.1", received.port)
    log = sender_logger("test.socket.set_batching", handler)
    try:
        assert isinstance(handler, Batching)
        handler.set_batching(True)
        for i in range(10):
            log.info("held %d", i)
        assert 10 == handler.stats()["buffered"]
        assert 0 == handler.sent
        handler.flush()
        assert wait_for(lambda: len(received.records) == 10)
        log.info("held again")
        handler.set_batching(False)  # sends what is held
        assert wait_for(lambda: len(received.records) == 11)
        log.info("at once")
        assert 0 == handler.stats()["buffered"]
        assert wait_for(lambda: len(received.records) == 12)
    finally:
        handler.close()
    assert [*(f"held {i}" for i in range(10)), "held again", "at once"] == received.messages()
    assert 12 == handler.sent
