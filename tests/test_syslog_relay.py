"""
Beyond one machine: processes -> an edge rsyslogd -> a central rsyslogd -> JSON lines.

Two real rsyslogd run the configuration files that docs/syslog.md includes,
``docs/rsyslog/ctxlog-forward.conf`` on the edge (omfwd, octet-counted, a disk-assisted queue)
and ``docs/rsyslog/ctxlog-central.conf`` on the central server (JSON lines), changed only where a
site changes them: addresses, ports and paths, and for plain TCP without the lines marked
``# TLS`` (see :func:`site`). Several processes log through ``SyslogHandler`` behind
``ctxlog.nonblocking``; the central server is stopped mid-stream and started again on the same
port; every record must arrive once, with its fields.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ctxlog.handlers import SyslogHandler

RSYSLOGD = "/usr/sbin/rsyslogd"
INSTALL = "apt-get install rsyslog rsyslog-openssl openssl"
ROOT = Path(__file__).resolve().parent.parent
EDGE_CONF = ROOT / "docs" / "rsyslog" / "ctxlog-forward.conf"
CENTRAL_CONF = ROOT / "docs" / "rsyslog" / "ctxlog-central.conf"
BOM = "\ufeff"
SENDERS = 4
RECORDS = 100  # per sender: half before the outage, half during it
OUTAGE = 4.0  # seconds the central server is away
#: A user name that needs every kind of care: RFC 5424 escapes, '=', UTF-8 of 2-4 bytes, and a
#: line break and an escape sequence that ctxlog writes as its escapes.
USER = 'say "hi"] \\ [x=y] é 中文 😀\n<34>1 FORGED\x1b[2J'
#: The user as the central server writes it: the RFC 5424 escapes removed by mmpstrucdata, the
#: line break and the ESC as ctxlog escapes them.
USER_RECEIVED = 'say "hi"] \\ [x=y] é 中文 😀\\n<34>1 FORGED\\x1b[2J'
PATH = '/orders/ü?note="]"&x=\\'

#: One sender process: logs RECORDS records inside requests, half, then waits for a line on
#: stdin, then the other half. It prints its host name first and its handler's stats last.
SENDER = """\
import json, logging, sys
import ctxlog, ctxlog.testing
from ctxlog.handlers import SyslogHandler

port, worker, records, user, path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), *sys.argv[4:]
syslog = SyslogHandler(("127.0.0.1", port), transport="tcp", app_name="shop", msgid="paid",
                       fields=[*ctxlog.FIELDS, "seq"], timeout=2)
front = ctxlog.nonblocking([syslog])
log = logging.getLogger("shop")
log.addHandler(front)
log.setLevel(logging.INFO)
log.propagate = False
print(syslog.hostname, flush=True)

def burst(numbers):
    for n in numbers:
        seq = f"{worker}-{n}"
        with ctxlog.testing.request(ip="203.0.113.7", user=user, request_id=f"r{seq}",
                                    method="POST", path=path, seq=seq):
            log.info("order %s paid\\nsecond line of %s", seq, seq)
    if not ctxlog.flush(timeout=10):
        sys.exit("not flushed")

burst(range(records // 2))
print("half", flush=True)
sys.stdin.readline()
burst(range(records // 2, records))
front.close()
syslog.close()
print(json.dumps(syslog.stats()), flush=True)
"""


# --- helpers -------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def site(conf: Path, changes: dict[str, str], *, tls: bool) -> str:
    """
    Return a docs configuration file as this test runs it.

    Each of ``changes`` (an address, a port, a path) must be in the file, so that the file
    cannot drift away from them; for plain TCP the lines marked ``# TLS`` go, as the file says.
    Everything else runs as the docs show it.
    """
    text = conf.read_text(encoding="utf-8")
    for old, new in changes.items():
        assert old in text, f"{old!r} is no longer in {conf.name}"
        text = text.replace(old, new)
    if not tls:
        text = "".join(line for line in text.splitlines(keepends=True) if "# TLS" not in line)
    return text


def run(*command: str, cwd: Path) -> None:
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} not found; the syslog tests need it: {INSTALL}")
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certificates(directory: Path) -> None:
    """A throwaway CA and a certificate for logs.internal, named as the docs' files name them."""
    run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=ctxlog relay test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    run(
        "openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "logs.internal.key",
        "-out", "logs.internal.csr", "-subj", "/CN=logs.internal",
        cwd=directory,
    )  # fmt: skip
    (directory / "ext.cnf").write_text(
        "subjectAltName=DNS:logs.internal\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run(
        "openssl", "x509", "-req", "-in", "logs.internal.csr", "-CA", "ca.pem",
        "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf",
        "-out", "logs.internal.pem",
        cwd=directory,
    )  # fmt: skip


class Rsyslogd:
    """A real rsyslogd running ``snippet`` as /etc/rsyslog.d/ would hold it, with its own spool."""

    def __init__(self, directory: Path, snippet: str, port: int) -> None:
        if not Path(RSYSLOGD).exists():
            pytest.fail(f"{RSYSLOGD} not found; the syslog tests need it: {INSTALL}")
        self.directory = directory
        self.port = port
        self.spool = directory / "spool"
        self.spool.mkdir(parents=True)
        self.snippet = snippet
        (directory / "snippet.conf").write_text(snippet)
        # What the distribution's rsyslog.conf holds around the snippet: the workDirectory.
        self.conf = directory / "rsyslog.conf"
        self.conf.write_text(
            f'global(workDirectory="{self.spool}")\ninclude(file="{directory / "snippet.conf"}")\n'
        )
        self.log = directory / "rsyslogd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def check(self) -> None:
        """Let rsyslogd check the configuration (``rsyslogd -N1``, as the docs advise)."""
        result = subprocess.run(
            [RSYSLOGD, "-N1", "-f", str(self.conf)],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert 0 == result.returncode, result.stdout + result.stderr

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.directory / "pid")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not wait_until(lambda: listens(self.port), 10):
            self.stop()
            pytest.fail(f"rsyslogd does not listen: {self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None


class Sender:
    """One sender process; its printed lines are read by a thread, so waiting has a deadline."""

    def __init__(self, edge_port: int, worker: int, directory: Path) -> None:
        self.errors = directory / f"sender-{worker}.err"
        with self.errors.open("w") as errors:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    SENDER,
                    str(edge_port),
                    str(worker),
                    str(RECORDS),
                    USER,
                    PATH,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                encoding="utf-8",
            )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self, timeout: float = 30) -> str:
        """The next line the process prints, within ``timeout`` seconds."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(
                f"sender {self.process.pid}: no line in {timeout} s: {self.errors.read_text()}"
            )

    def go(self) -> None:
        """Let the process log its second half."""
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.reader.join(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def received(out: Path) -> list[dict[str, Any]]:
    """The JSON lines the central server wrote, the last one only once it is whole."""
    if not out.exists():
        return []
    return [
        json.loads(line)
        for line in out.read_text(encoding="utf-8").splitlines(keepends=True)
        if line.endswith("\n")
    ]


@pytest.fixture
def senders() -> Iterator[list[Sender]]:
    started: list[Sender] = []
    try:
        yield started
    finally:
        for sender in started:
            sender.close()


@pytest.fixture
def servers() -> Iterator[list[Rsyslogd]]:
    started: list[Rsyslogd] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


# --- the chain -----------------------------------------------------------------------------------


def test_docs_show_the_files_the_test_runs() -> None:
    """docs/syslog.md includes both configuration files, so the page shows what runs here."""
    page = (ROOT / "docs" / "syslog.md").read_text(encoding="utf-8")
    for conf in (EDGE_CONF, CENTRAL_CONF):
        assert f"```{{literalinclude}} rsyslog/{conf.name}\n" in page


def start_chain(
    tmp_path: Path, servers: list[Rsyslogd], *, tls: bool
) -> tuple[Rsyslogd, Rsyslogd, Path]:
    """Start the central server and the edge as the docs configure them (stopped by ``servers``)."""
    certs = tmp_path / "tls"
    certs.mkdir()
    if tls:
        make_certificates(certs)
    out = tmp_path / "apps"
    out.mkdir()
    central_port, edge_port = free_port(), free_port()
    central_changes = {
        "/etc/rsyslog.d/tls/": f"{certs}/",
        "/var/log/apps/": f"{out}/",
        'port="6514"': f'address="127.0.0.1" port="{central_port}"',
    }
    edge_changes = {
        "/etc/rsyslog.d/tls/": f"{certs}/",
        'target="logs.internal" port="6514"': f'target="127.0.0.1" port="{central_port}"',
        'address="127.0.0.1" port="514"': f'address="127.0.0.1" port="{edge_port}"',
    }
    central = Rsyslogd(
        tmp_path / "central", site(CENTRAL_CONF, central_changes, tls=tls), central_port
    )
    edge = Rsyslogd(tmp_path / "edge", site(EDGE_CONF, edge_changes, tls=tls), edge_port)
    for server in (central, edge):
        assert ("ossl" in server.snippet) is tls
        server.check()
        servers.append(server)
        server.start()
    return central, edge, out


def sentinel(port: int, text: str) -> None:
    """Log one record to the edge from this process, over its own connection."""
    handler = SyslogHandler(("127.0.0.1", port), transport="tcp", app_name="shop", timeout=5)
    try:
        handler.handle(
            logging.makeLogRecord({"msg": text, "levelno": logging.INFO, "levelname": "INFO"})
        )
        assert (1, 0) == (handler.sent, handler.failures)
    finally:
        handler.close()


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_records_cross_a_central_outage_with_their_fields(
    tls: bool,
    tmp_path: Path,
    servers: list[Rsyslogd],
    senders: list[Sender],
) -> None:
    """Central server down mid-stream and back: each record arrives once, with its fields."""
    central, edge, out = start_chain(tmp_path, servers, tls=tls)
    senders.extend(Sender(edge.port, worker, tmp_path) for worker in range(SENDERS))
    hostnames = {sender.line() for sender in senders}
    assert ["half"] * SENDERS == [sender.line() for sender in senders]

    # Part of the stream has crossed both servers: now the central server goes away.
    shop = out / "shop.json"
    half = SENDERS * RECORDS // 2
    assert wait_until(lambda: len(received(shop)) >= half, 20), len(received(shop))
    central.stop()
    stopped = time.monotonic()
    for sender in senders:
        sender.go()
    stats = [json.loads(sender.line()) for sender in senders]
    assert [0] * SENDERS == [sender.process.wait(10) for sender in senders]
    assert [(RECORDS, 0, 0)] * SENDERS == [(s["sent"], s["dropped"], s["failures"]) for s in stats]

    # Queued behind the records in the edge: once it and (nearly) all records are there, the
    # edge has sent everything it had.
    sentinel(edge.port, "sentinel")
    time.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))  # the outage itself
    central.start()  # on the same port

    enough = SENDERS * RECORDS - (1 if tls else 0)

    def arrived() -> list[dict[str, Any]] | None:
        got = received(shop)
        done = len(got) > enough and any(m["msg"] == f"{BOM}sentinel" for m in got)
        return got if done else None

    got = wait_until(arrived, 30)
    assert got, f"{len(received(shop))} records arrived; {enough} and the sentinel expected"
    got = [m for m in got if m["msg"] != f"{BOM}sentinel"]
    seqs = [m["rfc5424-sd"]["ctx@32473"]["seq"] for m in got]
    assert sorted(set(seqs)) == sorted(seqs), "a record arrived twice"
    missing = {f"{w}-{n}" for w in range(SENDERS) for n in range(RECORDS)} - set(seqs)
    if tls:
        # rsyslog's omfwd over TLS does not see that the central server closed the
        # connection, and loses the one record it writes into it (docs/syslog.md says so).
        assert len(missing) <= 1, missing
    else:
        assert set() == missing
    pids = {str(sender.process.pid) for sender in senders}
    for message in got:
        seq = message["rfc5424-sd"]["ctx@32473"]["seq"]
        assert {
            "ip": "203.0.113.7",
            "user": USER_RECEIVED,
            "request_id": f"r{seq}",
            "method": "POST",
            "path": PATH,
            "seq": seq,
        } == message["rfc5424-sd"]["ctx@32473"]
        assert f"{BOM}order {seq} paid\nsecond line of {seq}" == message["msg"]
        assert ("shop", "paid", "info") == (message["app"], message["msgid"], message["severity"])
        assert message["host"] in hostnames
        assert message["procid"] in pids
    # Each process's records arrive in the order it logged them.
    for sender in senders:
        mine = [m for m in got if m["procid"] == str(sender.process.pid)]
        numbers = [int(m["rfc5424-sd"]["ctx@32473"]["seq"].split("-")[1]) for m in mine]
        assert sorted(numbers) == numbers
