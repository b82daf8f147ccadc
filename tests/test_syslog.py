"""SyslogHandler: RFC 5424 details, and delivery to a real rsyslogd over UDP, TCP and TLS."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import importlib.util
import inspect
import io
import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import warnings
import wsgiref.simple_server
import wsgiref.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxlog
import ctxlog.handlers
from ctxlog.handlers import SyslogHandler
from ctxlog.handlers.rfc5424 import severity, timestamp
from ctxlog.handlers.structured_data import param_value
from ctxlog.record.escape import sanitize

RSYSLOGD = "/usr/sbin/rsyslogd"
INSTALL = "apt-get install rsyslog rsyslog-openssl openssl"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BOM = "\ufeff"
HEADER = re.compile(
    rb"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    # One SD-ELEMENT whose PARAM-VALUEs have '"', '\' and ']' escaped, and nothing more: a ']'
    # in the message is not taken for the end of the structured data.
    rb'(?P<sd>-|\[[!#-<>-\\^-~]+(?: [!#-<>-\\^-~]{1,32}="(?:[^"\\\]]|\\["\\\]])*")*\])'
    rb"(?: \xef\xbb\xbf(?P<msg>.*))?\Z",
    re.DOTALL,
)
#: Values that need every kind of care on the way: RFC 5424 escapes, '=', UTF-8 of 2-4 bytes.
HOSTILE = 'say "hi"] \\ [x=y] é 中文 😀'


# --- helpers -------------------------------------------------------------------------------------


def record(message: str = "hello", level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": "app",
            "levelno": level,
            "levelname": logging.getLevelName(level),
            "msg": message,
            **extra,
        }
    )


def parse(data: bytes) -> dict[str, Any]:
    match = HEADER.match(data)
    assert match is not None, data
    parts = {k: (v.decode() if v is not None else None) for k, v in match.groupdict().items()}
    parts["pri"] = int(parts["pri"])
    return parts


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(0.02)


def run(*command: str, cwd: Path) -> None:
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} not found; the syslog tests need it: {INSTALL}")
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=30)


class Certificates:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost, made by openssl."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = directory / "ca.pem"
        self.cert = directory / "server.pem"
        self.key = directory / "server.key"
        run(
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=ctxlog test CA",
            # What Python 3.13's strict X.509 verification asks of a CA:
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory,
        )
        run(
            "openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=localhost",
            cwd=directory,
        )
        (directory / "ext.cnf").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "authorityKeyIdentifier=keyid\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
        )
        run(
            "openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem",
            cwd=directory,
        )

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


#: One JSON object per received message: the header fields rsyslog parsed, the raw structured
#: data, the parameters as mmpstrucdata unescaped them, the message, and the raw message.
CONFIG = """\
global(
    workDirectory="{dir}"
    parser.escapeControlCharactersOnReceive="off"
    defaultNetstreamDriverCAFile="{certs.ca}"
    defaultNetstreamDriverCertFile="{certs.cert}"
    defaultNetstreamDriverKeyFile="{certs.key}"
    maxMessageSize="{max_message_size}"
)
module(load="imudp")
module(load="imtcp")
module(load="mmpstrucdata")
template(name="received" type="list" option.jsonf="on") {{
    property(outname="pri" name="pri" format="jsonf")
    property(outname="hostname" name="hostname" format="jsonf")
    property(outname="app" name="app-name" format="jsonf")
    property(outname="procid" name="procid" format="jsonf")
    property(outname="msgid" name="msgid" format="jsonf")
    property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
    property(outname="sd" name="structured-data" format="jsonf")
    property(outname="params" name="$!rfc5424-sd" format="jsonf")
    property(outname="msg" name="msg" format="jsonf")
    property(outname="raw" name="rawmsg" format="jsonf")
    property(outname="input" name="inputname" format="jsonf")
}}
ruleset(name="received") {{
    action(type="mmpstrucdata")
    action(type="omfile" file="{out}" template="received")
}}
"""
INPUTS = {
    "udp": 'input(type="imudp" address="127.0.0.1" port="{port}" ruleset="received")\n',
    "tcp": 'input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="received")\n',
    "tls": (
        'input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="received" '
        'streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")\n'
    ),
}


class Rsyslog:
    """A real rsyslogd on 127.0.0.1 that writes what it receives to a JSON-lines file."""

    def __init__(
        self,
        directory: Path,
        certs: Certificates,
        transports: tuple[str, ...],
        max_message_size: int = 8096,
    ) -> None:
        if not Path(RSYSLOGD).exists():
            pytest.fail(f"{RSYSLOGD} not found; the syslog tests need it: {INSTALL}")
        self.directory = directory
        self.certs = certs
        self.out = directory / "received.jsonl"
        self.ports = {
            t: free_port(socket.SOCK_DGRAM if t == "udp" else socket.SOCK_STREAM)
            for t in transports
        }
        self.conf = directory / "rsyslog.conf"
        text = CONFIG.format(
            dir=directory, certs=certs, out=self.out, max_message_size=max_message_size
        )
        text += "".join(INPUTS[t].format(port=p) for t, p in self.ports.items())
        self.conf.write_text(text)
        self.process: subprocess.Popen[bytes] | None = None
        self._seen = 0

    def address(self, transport: str) -> tuple[str, int]:
        return ("127.0.0.1", self.ports[transport])

    def start(self) -> None:
        log = (self.directory / "rsyslogd.log").open("ab")
        self.process = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.directory / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        for transport in self.ports:
            if transport != "udp" and not wait_until(lambda t=transport: self._listens(t), 10):
                self.stop()
                output = (self.directory / "rsyslogd.log").read_text(errors="replace")
                pytest.fail(f"rsyslogd does not listen for {transport}: {output}\n{INSTALL}")
        if "udp" in self.ports:
            # imudp gives no sign of life but what it writes: probe until a datagram arrives.
            marker = f"probe-{uuid.uuid4().hex}"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:

                def probed() -> bool:
                    sock.sendto(f"<14>1 - - probe - - - {marker}".encode(), self.address("udp"))
                    return bool(self.find(marker))

                if not wait_until(probed, 10):
                    self.stop()
                    pytest.fail("rsyslogd does not receive UDP datagrams")

    def _listens(self, transport: str) -> bool:
        try:
            socket.create_connection(self.address(transport), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def received(self) -> list[dict[str, Any]]:
        """Every message written so far, with ``params`` decoded (mmpstrucdata gives a string)."""
        if not self.out.exists():
            return []
        messages = []
        for line in self.out.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.endswith("}"):  # rsyslog is still writing it
                continue
            message = json.loads(line)
            message["params"] = json.loads(message["params"]) if message["params"] else {}
            messages.append(message)
        return messages

    def find(self, marker: str) -> list[dict[str, Any]]:
        return [m for m in self.received() if marker in m["msg"]]

    def wait_for(self, marker: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``count`` messages containing ``marker`` arrived; return them."""
        found = wait_until(lambda: len(self.find(marker)) >= count and self.find(marker), timeout)
        assert found, f"{marker!r} did not arrive ({count} expected)"
        assert len(found) == count, found
        return list(found)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog"), certs, ("udp", "tcp", "tls"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
def make(
    rsyslog: Rsyslog, certs: Certificates, cleanup: list[logging.Handler]
) -> Callable[..., SyslogHandler]:
    """Build a SyslogHandler aimed at the test server, closed after the test."""

    def build(transport: str = "tcp", **options: Any) -> SyslogHandler:
        options.setdefault("app_name", "shop")
        options.setdefault("timeout", 2.0)
        if transport == "tls":
            options.setdefault("tls", certs.client())
        handler = SyslogHandler(rsyslog.address(transport), transport=transport, **options)
        cleanup.append(handler)
        return handler

    return build


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A private logger that does not propagate; its handlers are removed afterwards."""
    log = logging.getLogger(f"test_syslog.{request.node.name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield log
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)


def marker() -> str:
    return uuid.uuid4().hex


# --- construction --------------------------------------------------------------------------------


def test_exported_from_handlers() -> None:
    """The handler is public as ctxlog.handlers.SyslogHandler."""
    assert ctxlog.handlers.SyslogHandler is SyslogHandler


def test_signature() -> None:
    """The constructor takes the documented parameters and defaults, all but address keyword-only."""
    params = inspect.signature(SyslogHandler).parameters
    keyword = inspect.Parameter.KEYWORD_ONLY
    expected = {
        "address": (inspect.Parameter.POSITIONAL_OR_KEYWORD, ("localhost", 514)),
        "transport": (keyword, "udp"),
        "facility": (keyword, "user"),
        "app_name": (keyword, None),
        "hostname": (keyword, None),
        "enterprise_id": (keyword, 32473),
        "tls": (keyword, None),
        "timeout": (keyword, 5.0),
        "msgid": (keyword, None),
        "fields": (keyword, ctxlog.FIELDS),
        "max_size": (keyword, 8096),
        "buffer": (keyword, 1000),
    }
    assert expected == {name: (p.kind, p.default) for name, p in params.items()}


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"address": "logs.internal:514"}, ValueError, "address='logs.internal:514'"),
        ({"address": ("", 514)}, ValueError, "address"),
        ({"address": ("h", 0)}, ValueError, "address=('h', 0)"),
        ({"address": ("h", True)}, ValueError, "address"),
        ({"transport": "TCP"}, ValueError, "transport='TCP'"),
        ({"transport": "relp"}, ValueError, "'udp', 'tcp' or 'tls'"),
        ({"facility": "local8"}, ValueError, "facility='local8'"),
        ({"facility": 24}, ValueError, "facility=24"),
        ({"facility": True}, ValueError, "facility=True"),
        ({"app_name": "my shop"}, ValueError, "app_name='my shop'"),
        ({"app_name": "x" * 49}, ValueError, "1-48 printable US-ASCII"),
        ({"app_name": ""}, ValueError, "app_name=''"),
        ({"hostname": "café"}, ValueError, "hostname='café'"),
        ({"msgid": "x" * 33}, ValueError, "1-32"),
        ({"enterprise_id": 0}, ValueError, "enterprise_id=0"),
        ({"enterprise_id": "acme"}, ValueError, "enterprise_id='acme'"),
        ({"enterprise_id": "1." + "2" * 40}, ValueError, "over 32"),
        ({"tls": True, "transport": "tls"}, TypeError, "tls=True"),
        ({"tls": ssl.create_default_context()}, ValueError, "transport='udp'"),
        ({"timeout": 0}, ValueError, "timeout=0"),
        ({"timeout": float("inf")}, ValueError, "timeout=inf"),
        ({"fields": "ip"}, ValueError, "fields='ip'"),
        ({"fields": ["ip", "a=b"]}, ValueError, "'a=b'"),
        ({"fields": ["ip", "x" * 33]}, ValueError, "PARAM-NAME"),
        ({"fields": ["ip", "ip"]}, ValueError, "twice"),
        ({"max_size": 479}, ValueError, "max_size=479"),
        ({"max_size": 65508}, ValueError, "480-65507"),
        ({"buffer": -1}, ValueError, "buffer=-1"),
    ],
)
def test_invalid_options(options: dict[str, Any], error: type[Exception], words: str) -> None:
    """A misconfiguration fails at construction, naming the option and its value."""
    with pytest.raises(error) as info:
        SyslogHandler(**options)
    assert words in str(info.value)
    assert "SyslogHandler" in str(info.value)


def test_valid_options() -> None:
    """Facility names in any case, numbers, dotted enterprise ids and large TCP sizes are taken."""
    handler = SyslogHandler(
        ("logs.internal", 514),
        transport="tcp",
        facility="LOCAL3",
        enterprise_id="32473.1.2",
        max_size=1 << 20,
    )
    assert (19, "ctx@32473.1.2", 1 << 20) == (handler.facility, handler.sd_id, handler.max_size)
    assert 4 == SyslogHandler(facility=4).facility
    assert isinstance(SyslogHandler(transport="tls").tls, ssl.SSLContext)


def test_constructor_does_not_connect() -> None:
    """Nothing is resolved, connected or started before the first record."""
    threads = threading.active_count()
    handler = SyslogHandler(("no-such-host.invalid", 514), transport="tls")
    assert handler._sender.sock is None
    assert threads == threading.active_count()
    assert {"sent": 0, "dropped": 0, "buffered": 0, "connections": 0, "failures": 0} == (
        handler.stats()
    )
    handler.close()


def test_default_names_made_to_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default APP-NAME and HOSTNAME are made printable ASCII and cut to the RFC's limits."""
    monkeypatch.setattr(sys, "argv", ["/srv/my app é/" + "w" * 60])
    monkeypatch.setattr(socket, "gethostname", lambda: "hôte " + "h" * 300)
    handler = SyslogHandler()
    assert "w" * 48 == handler.app_name
    assert "h_te_" + "h" * 250 == handler.hostname
    monkeypatch.setattr(sys, "argv", ["/srv/my app.py"])
    assert "my_app.py" == SyslogHandler().app_name
    monkeypatch.setattr(sys, "argv", [""])
    assert "-" == SyslogHandler().app_name


# --- the message ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (logging.CRITICAL + 10, 1),
        (logging.CRITICAL, 2),
        (logging.ERROR + 5, 3),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (25, 5),
        (logging.INFO, 6),
        (logging.DEBUG, 7),
        (5, 7),
        (0, 7),
    ],
)
def test_severity(level: int, expected: int) -> None:
    """Levels map to RFC 5424 severities; custom levels to the nearest sensible one."""
    assert expected == severity(level)


@pytest.mark.parametrize(
    ("facility", "level", "pri"),
    [("user", logging.ERROR, 11), ("kern", logging.CRITICAL, 2), ("local7", logging.DEBUG, 191)],
)
def test_pri(facility: str, level: int, pri: int) -> None:
    """PRI is facility * 8 + severity."""
    handler = SyslogHandler(facility=facility)
    assert pri == parse(handler.encode(record(level=level)))["pri"]


def test_header() -> None:
    """Version 1, RFC 3339 time of the record with microseconds and offset, names, pid, msgid."""
    handler = SyslogHandler(app_name="shop", hostname="web1.example.com", msgid="ORDER")
    rec = record("paid", ip="203.0.113.7")
    parts = parse(handler.encode(rec))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}([+-]\d\d:\d\d|Z)", parts["ts"])
    moment = dt.datetime.fromisoformat(parts["ts"])
    assert moment.utcoffset() is not None
    assert abs(moment.timestamp() - rec.created) < 1e-6
    assert ("web1.example.com", "shop", str(os.getpid()), "ORDER") == (
        parts["host"],
        parts["app"],
        parts["procid"],
        parts["msgid"],
    )
    assert '[ctx@32473 ip="203.0.113.7"]' == parts["sd"]
    assert "paid" == parts["msg"]


def test_procid_is_the_records_process() -> None:
    """PROCID is the process that logged, which a record crossing processes keeps."""
    handler = SyslogHandler()
    assert "4242" == parse(handler.encode(record(process=4242)))["procid"]


def test_nil_values() -> None:
    """Unknown fields are left out; no field, no msgid and no message give '-' and no MSG."""
    handler = SyslogHandler(app_name="shop", hostname="h")
    parts = parse(handler.encode(record("", **dict.fromkeys(ctxlog.FIELDS, "-"))))
    assert ("-", "-", None) == (parts["msgid"], parts["sd"], parts["msg"])
    assert not handler.encode(record("")).endswith(b" ")
    parts = parse(handler.encode(record("x", ip="-", user="alice", request_id=None)))
    assert '[ctx@32473 user="alice"]' == parts["sd"]


def test_all_fields_in_order() -> None:
    """The standard fields are sent in ctxlog.FIELDS order, values as text."""
    handler = SyslogHandler()
    values = {"ip": "::1", "user": "bob", "request_id": "r1", "method": "GET", "path": "/a"}
    sd = parse(handler.encode(record(**dict(reversed(values.items())))))["sd"]
    assert '[ctx@32473 ip="::1" user="bob" request_id="r1" method="GET" path="/a"]' == sd


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ('a"b', 'a\\"b'),
        ("a\\b", "a\\\\b"),
        ("a]b", "a\\]b"),
        ("[x=y]", "[x=y\\]"),
        ("é 中文 😀", "é 中文 😀"),
        ("line\nbreak\ttab\x1b[31m", "line\\\\nbreak\\\\ttab\\\\x1b[31m"),
        ("\u202eevil", "\\\\u202eevil"),
        ("\ud800", "\\\\ud800"),
    ],
)
def test_param_value(value: str, expected: str) -> None:
    """'"', '\\' and ']' get a backslash; control characters become ctxlog's escapes first."""
    assert expected == param_value(value)


def test_fields_from_the_context() -> None:
    """A record without the fields gets them from the current context; its own ones win."""
    handler = SyslogHandler()
    with ctxlog.scope(user="alice", tenant="acme"):
        assert '[ctx@32473 user="alice"]' == parse(handler.encode(record()))["sd"]
        sd = parse(handler.encode(record(user="bob")))["sd"]
    assert '[ctx@32473 user="bob"]' == sd


def test_extra_fields() -> None:
    """fields= adds bound fields as parameters, in the order given."""
    handler = SyslogHandler(fields=["tenant", "user", "order_id"])
    with ctxlog.scope(user="alice", tenant="acme", order_id=42):
        sd = parse(handler.encode(record()))["sd"]
    assert '[ctx@32473 tenant="acme" user="alice" order_id="42"]' == sd


def test_message_is_the_formatter_output() -> None:
    """MSG is the Formatter's text: by default the message and the traceback, line breaks kept."""
    handler = SyslogHandler()
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        rec = record("failed", level=logging.ERROR, exc_info=sys.exc_info())
    msg = parse(handler.encode(rec))["msg"]
    assert msg.startswith("failed\nTraceback (most recent call last):\n")
    assert msg.endswith("ZeroDivisionError: division by zero")
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    assert "INFO app: hello" == parse(handler.encode(record()))["msg"]


def test_size_cap() -> None:
    """A long message is cut to max_size bytes, never inside a UTF-8 character, and ends '...'."""
    handler = SyslogHandler(max_size=480)
    for text in ("x" * 1000, "é" * 1000, "😀" * 1000):
        data = handler.encode(record(text))
        assert len(data) <= 480
        assert len(data) > 476
        msg = parse(data)["msg"]
        assert msg.endswith("...")
        assert text.startswith(msg[:-3])
    exact = handler.encode(record("x"))
    fits = "y" * (480 - len(exact) + 1)
    assert parse(handler.encode(record(fits)))["msg"] == fits


def test_format_error_goes_to_handle_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record that cannot be formatted goes to handleError, not to the caller."""
    handler = SyslogHandler(("127.0.0.1", free_port(socket.SOCK_DGRAM)))
    failed: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", failed.append)
    bad = record("%d", args=("not a number",))
    handler.handle(bad)
    assert [bad] == failed
    assert 0 == handler.sent
    handler.close()


# --- the size budgets ----------------------------------------------------------------------------

#: The escapes of ctxlog that a PARAM-VALUE may carry once rsyslog unescaped it.
SEQUENCE = r"\\(?:[\\ntr]|x[0-9a-f]{2}|u[0-9a-f]{4})"
#: A PARAM-VALUE as RFC 5424 writes it: '"', '\' and ']' only after a backslash.
PARAM = re.compile(r' ([!#-<>-\\^-~]{1,32})="((?:[^"\\\]]|\\["\\\]])*)"')
#: The raw request values of the attack: a user name and a path of bidi overrides.
EVIL_USER = "\u202e" * 256
EVIL_PATH = "/" + "\u202e" * 1023


def parse_sd(sd: str) -> dict[str, str]:
    """Return the parameters of a ``[ctx@32473 ...]`` element, unescaped; fail on anything else."""
    assert sd.startswith("[ctx@32473") and sd.endswith("]"), sd
    body = sd[len("[ctx@32473") : -1]
    params: dict[str, str] = {}
    end = 0
    for match in PARAM.finditer(body):
        assert match.start() == end, sd
        assert match.group(1) not in params, sd
        params[match.group(1)] = re.sub(r"\\(.)", r"\1", match.group(2))
        end = match.end()
    assert end == len(body), sd
    assert params, sd
    return params


def escaped(value: str) -> str:
    """Return ``value`` with ctxlog's escapes, as a receiver reads it back from a PARAM-VALUE."""
    return re.sub(r"\\(.)", r"\1", param_value(value))


def cut_where_allowed(received: str, value: str) -> bool:
    """Tell whether ``received`` is ``value`` escaped, whole or cut before escaping with '...'."""
    if len(value) <= len(received) and received == escaped(value):
        return True
    if not received.endswith("..."):
        return False
    kept = received[:-3]
    # Cut before escaping: ``kept`` is the escaped form of a prefix of the value (whose escaped
    # length grows with the prefix: search for it).
    low, high = 0, len(kept)
    while low < high:
        middle = (low + high) // 2
        if len(escaped(value[:middle])) < len(kept):
            low = middle + 1
        else:
            high = middle
    return escaped(value[:low]) == kept


def test_sd_size_is_half_of_max_size() -> None:
    """The structured data may take half of max_size."""
    assert (4048, 240, 32753) == tuple(
        SyslogHandler(max_size=size).sd_size for size in (8096, 480, 65507)
    )


@pytest.mark.parametrize("max_size", [480, 2048, 8096])
def test_attack_values_are_cut_short_fields_kept(max_size: int) -> None:
    """A bidi-filled user and path (7 bytes a character) are cut; ip, request_id, method stay whole."""
    handler = SyslogHandler(max_size=max_size, app_name="shop", hostname="web1")
    user, path = sanitize(EVIL_USER, 256), sanitize(EVIL_PATH, 1024)
    fields = {"ip": "203.0.113.7", "request_id": "4be1c0d2a9f34e6b8c27d5e0f1a3b6c9", "method": "GET"}
    data = handler.encode(record("hello", user=user, path=path, **fields))
    assert len(data) <= max_size
    parts = parse(data)
    assert len(parts["sd"].encode()) <= max_size // 2
    params = parse_sd(parts["sd"])
    assert fields == {name: params[name] for name in fields}
    assert cut_where_allowed(params["path"], path)
    assert re.fullmatch(r"/(\\u202e)+\.\.\.", params["path"]), params["path"]
    assert cut_where_allowed(params["user"], user)  # whole at 8096: the path is cut instead
    assert re.fullmatch(r"(\\u202e)+(\.\.\.)?", params["user"]), params["user"]
    assert "hello" == parts["msg"]


@pytest.mark.parametrize(
    ("value", "sequences"),
    [
        ("\u202e" * 3000, True),  # escaped by the handler: \u202e, then its backslash doubled
        (sanitize("\u202e" * 3000, 3000), True),  # escaped at capture: the same on the wire
        (sanitize('a\\"]\u202e\n\x1b' * 600, 5000), True),
        ("\\" * 3000, False),  # bound values are sent as given: each backslash is a character
        ('"' * 3000, True),
        ("]" * 3000, True),
        ('a\\"]\u202e\n' * 600, False),
        ("😀é" * 2000, True),
        ("\ud800" * 3000, True),
    ],
)
def test_cut_never_splits_an_escape(value: str, sequences: bool) -> None:
    """Whatever the size, a cut value ends on a whole escape, a whole character, then '...'."""
    handler = SyslogHandler()
    rec = record(user=value)
    for size in range(len('[ctx@32473 user=""]') + 16, 300):
        sd = handler.structured_data(rec, size)
        assert len(sd.encode()) <= size
        (got,) = parse_sd(sd).values()  # no backslash left to escape the closing quote
        assert cut_where_allowed(got, value), (size, got)
        if sequences:
            assert re.fullmatch(rf"(?:{SEQUENCE}|[^\\])*\.\.\.", got), (size, got)


def test_a_field_without_room_is_left_out() -> None:
    """Many long bound fields in 480 bytes: the first ones are kept (cut), the last left out."""
    names = [f"f{n}" for n in range(40)]
    handler = SyslogHandler(max_size=480, fields=names)
    values = {name: f"{name}:" + "v" * 100 for name in names}
    data = handler.encode(record("hello", **values))
    assert len(data) <= 480
    parts = parse(data)
    params = parse_sd(parts["sd"])
    assert names[: len(params)] == list(params)
    assert 5 < len(params) < 40
    for name, got in params.items():
        assert got.startswith(f"{name}:v")
        assert cut_where_allowed(got, values[name])
    assert "hello" == parts["msg"]


def test_short_later_field_fits_where_a_long_one_does_not() -> None:
    """A parameter that does not fit is skipped; a shorter one after it may still be sent."""
    handler = SyslogHandler(fields=["a", "b" * 32, "c"])
    rec = record(a="x" * 100, **{"b" * 32: "y" * 100}, c="z")
    sd = handler.structured_data(rec, len('[ctx@32473 a="" c="z"]') + 16)
    assert {"a": "x" * 13 + "...", "c": "z"} == parse_sd(sd)


def test_huge_value_costs_no_more_than_its_budget() -> None:
    """A 10 MB bound value is cut to its share; the message keeps the rest of max_size."""
    handler = SyslogHandler(fields=["blob"])
    data = handler.encode(record("hello", blob="\u202e" * 5_000_000))
    assert len(data) <= 8096
    assert "hello" == parse(data)["msg"]


def test_within_budget_whole_over_it_shared() -> None:
    """Within its budget the structured data is sent whole; over it, long values share the room."""
    handler = SyslogHandler(fields=["user", "path"])
    user, path = "a" * 2500, "/é" * 1000  # 2500 and 3000 bytes: each fits half of 8096 alone
    sd = handler.structured_data(record(user=user))
    assert {"user": user} == parse_sd(sd)
    sd = handler.structured_data(record(user=user, path=path))
    assert len(sd.encode()) <= 4048
    params = parse_sd(sd)
    assert cut_where_allowed(params["user"], user)
    assert cut_where_allowed(params["path"], path)
    # The rest went to the two in equal parts.
    assert abs(len(params["user"].encode()) - len(params["path"].encode())) <= 3


def test_longest_header_still_fits() -> None:
    """The longest header the RFC allows, a procid that is no number: max_size 480 still holds."""
    handler = SyslogHandler(
        max_size=480, hostname="h" * 255, app_name="a" * 48, msgid="m" * 32, facility="local7"
    )
    for process in ("1 - [x] FORGED\n", 10**400, -1, "", "4242"):
        data = handler.encode(
            record("x" * 1000, level=logging.DEBUG, process=process, user=EVIL_USER)
        )
        assert len(data) <= 480
        parts = parse(data)
        assert re.fullmatch(r"[!-~]{1,20}", parts["procid"]), parts["procid"]
        assert parts["msg"].endswith("...")
    assert "1_-_[x]_FORGED_" == parse(handler.encode(record(process="1 - [x] FORGED\n")))["procid"]


#: Values an attacker or a careless developer may put in a field.
HOSTILE_CHARS = st.sampled_from(
    ["\u202e", "\u2066", "\u2028", '"', "]", "\\", "=", " ", "é", "中", "😀", "\ud800", "\udfff",
     "\n", "\x1b", "\x85", "\x00", "a", "u", "x", "0"]
)
hostile_values = st.one_of(
    st.text(st.one_of(HOSTILE_CHARS, st.characters()), max_size=300),
    st.builds(lambda text, n: text * n, st.text(HOSTILE_CHARS, min_size=1, max_size=6),
              st.integers(1, 12_000)),
)
#: A value and whether it holds ctxlog's escapes, as a request's values do once captured.
field_values = st.one_of(
    st.tuples(hostile_values, st.just(False)),
    st.tuples(hostile_values.map(lambda value: sanitize(value, 1024)), st.just(True)),
)


@settings(deadline=None, max_examples=200)
@given(
    max_size=st.one_of(st.sampled_from([480, 481, 2048, 8096]), st.integers(480, 65507)),
    transport=st.sampled_from(["udp", "tcp", "tls"]),
    hostname=st.sampled_from(["web1", "h" * 255]),
    values=st.lists(field_values, min_size=1, max_size=30),
    message=st.one_of(st.just(""), hostile_values),
)
def test_every_message_fits_max_size(
    max_size: int, transport: str, hostname: str, values: list[tuple[str, bool]], message: str
) -> None:
    """Whatever the fields and message hold, a message fits max_size and every part parses."""
    names = [*ctxlog.FIELDS, *(f"extra{n}" for n in range(len(values)))][: len(values)]
    handler = SyslogHandler(
        max_size=max_size, transport=transport, hostname=hostname, app_name="shop", fields=names
    )
    fields = {name: value for name, (value, _) in zip(names, values, strict=True)}
    captured = {name for name, (_, sanitized) in zip(names, values, strict=True) if sanitized}
    data = handler.encode(record(message, **fields))
    assert len(data) <= max_size
    parts = parse(data)
    sent = [(name, value) for name, value in fields.items() if value != "-"]
    match = HEADER.match(data)
    assert match is not None
    budget = min(max_size // 2, max_size - match.start("sd") - 7)
    assert len(parts["sd"].encode()) <= budget
    if sum(len(value) for _, value in sent) <= budget:
        whole = "".join(f' {name}="{param_value(value)}"' for name, value in sent)
        if len(f"[ctx@32473{whole}]".encode()) <= budget:
            assert (f"[ctx@32473{whole}]" if sent else "-") == parts["sd"]
    params = parse_sd(parts["sd"]) if parts["sd"] != "-" else {}
    assert [name for name, _ in sent if name in params] == list(params)
    for name, got in params.items():
        assert cut_where_allowed(got, fields[name]), (name, got)
        if len(fields[name]) <= 16 and len(param_value(fields[name]).encode()) <= 16:
            assert escaped(fields[name]) == got  # short values are never cut
        if name in captured:
            assert re.fullmatch(rf"(?:{SEQUENCE}|[^\\])*(?:\.\.\.)?", got), (name, got)
    if message:
        text = message.encode("utf-8", "backslashreplace").decode()
        if parts["msg"] != text:
            assert parts["msg"].endswith("...")
            assert text.startswith(parts["msg"][:-3])
            assert len(data) > max_size - 4  # cut only for want of room
    else:
        assert parts["msg"] is None


# --- against rsyslogd ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_fields_arrive_intact(
    transport: str, rsyslog: Rsyslog, make: Callable[..., SyslogHandler], logger: logging.Logger
) -> None:
    """Header, parameters (after unescaping) and message arrive as sent, over every transport."""
    handler = make(transport, msgid="CHECKOUT", facility="local0")
    logger.addHandler(handler)
    tag = marker()
    with ctxlog.scope(ip="203.0.113.7", user=HOSTILE, request_id=tag, method="POST", path="/é"):
        logger.warning("%s: %s", tag, HOSTILE)
    (got,) = rsyslog.wait_for(tag)
    assert str(16 * 8 + 4) == got["pri"]
    assert (handler.hostname, "shop", str(os.getpid()), "CHECKOUT") == (
        got["hostname"],
        got["app"],
        got["procid"],
        got["msgid"],
    )
    expected = {"ip": "203.0.113.7", "user": HOSTILE, "request_id": tag, "method": "POST"}
    assert {"ctx@32473": {**expected, "path": "/é"}} == got["params"]
    assert BOM + f"{tag}: {HOSTILE}" == got["msg"]
    assert {"udp": "imudp", "tcp": "imtcp", "tls": "imtcp"}[transport] == got["input"]
    assert 1 == handler.sent
    assert 0 == handler.failures


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_control_characters_arrive_escaped(
    transport: str, rsyslog: Rsyslog, make: Callable[..., SyslogHandler], logger: logging.Logger
) -> None:
    """A bound value with a line break or ESC arrives as ctxlog's escapes, on one line."""
    logger.addHandler(make(transport))
    tag = marker()
    with ctxlog.scope(user="eve\n\x1b[31mroot\x00", request_id=tag):
        logger.info(tag)
    (got,) = rsyslog.wait_for(tag)
    assert "eve\\n\\x1b[31mroot\\x00" == got["params"]["ctx@32473"]["user"]


def test_request_through_wsgi_middleware_and_nonblocking(
    rsyslog: Rsyslog,
    make: Callable[..., SyslogHandler],
    logger: logging.Logger,
    cleanup: list[logging.Handler],
) -> None:
    """Behind nonblocking(), a request's fields (as the middleware captured them) arrive."""
    handler = make("tcp")
    front = ctxlog.nonblocking([handler])
    cleanup.insert(0, front)
    logger.addHandler(front)
    tag = marker()

    def view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        ctxlog.bind(user='o"brien]')
        logger.info("view %s", tag)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    app = ctxlog.WSGIMiddleware(view)
    environ: dict[str, Any] = {
        "REMOTE_ADDR": "198.51.100.9",
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/caf\u00c3\u00a9/\\x\n",  # WSGI's latin-1 str of the UTF-8 bytes
        "HTTP_X_REQUEST_ID": tag,
    }
    wsgiref.util.setup_testing_defaults(environ)
    response = app(environ, lambda status, headers, exc_info=None: None)
    assert [b"ok"] == list(response)
    response.close()  # type: ignore[attr-defined]
    (got,) = rsyslog.wait_for(tag)
    assert {
        "ip": "198.51.100.9",
        "user": 'o"brien]',
        "request_id": tag,
        "method": "POST",
        "path": "/café/\\\\x\\n",  # as ctxlog's middleware escaped it
    } == got["params"]["ctx@32473"]
    assert f"{BOM}view {tag}" == got["msg"]


@pytest.mark.parametrize("transport", ["tcp", "tls", "udp"])
def test_traceback_arrives_as_one_message(
    transport: str, rsyslog: Rsyslog, make: Callable[..., SyslogHandler], logger: logging.Logger
) -> None:
    """A multi-line traceback is one message: octet-counting frames need no line ends."""
    logger.addHandler(make(transport))
    tag = marker()

    def fail() -> None:
        msg = f"payment gateway timed out\n(second line of {tag})"
        raise RuntimeError(msg)

    try:
        fail()
    except RuntimeError:
        logger.exception("checkout failed %s", tag)
    (got,) = rsyslog.wait_for(tag)
    lines = got["msg"].removeprefix(BOM).split("\n")
    assert f"checkout failed {tag}" == lines[0]
    assert "Traceback (most recent call last):" == lines[1]
    assert "in fail" in got["msg"]
    assert ["RuntimeError: payment gateway timed out", f"(second line of {tag})"] == lines[-2:]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_long_message_is_cut_where_rsyslog_would(
    transport: str, rsyslog: Rsyslog, make: Callable[..., SyslogHandler], logger: logging.Logger
) -> None:
    """By default a message is cut at 8096 bytes (rsyslog's default maxMessageSize), with '...'."""
    handler = make(transport)
    logger.addHandler(handler)
    tag = marker()
    logger.info("%s %s", tag, "é" * 20_000)
    (got,) = rsyslog.wait_for(tag)
    assert got["msg"].endswith("é...")
    assert 8090 < len(got["raw"].encode()) <= 8096
    assert 1 == handler.sent


def test_rsyslog_cuts_longer_messages_without_a_mark(
    rsyslog: Rsyslog, make: Callable[..., SyslogHandler], logger: logging.Logger
) -> None:
    """Why the default: with a larger max_size, rsyslog keeps 8096 bytes and no '...' says so."""
    logger.addHandler(make("tcp", max_size=12_000))
    tag = marker()
    logger.info("%s %s", tag, "y" * 10_000)
    (got,) = rsyslog.wait_for(tag)
    assert 8096 == len(got["raw"].encode())
    assert got["msg"].endswith("yyy")


def test_tls_with_an_unknown_ca_fails_quietly(
    rsyslog: Rsyslog,
    make: Callable[..., SyslogHandler],
    logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A server certificate that does not verify is a counted failure, reported once on stderr."""
    handler = make("tls", tls=ssl.create_default_context(), buffer=0)
    logger.addHandler(handler)
    logger.error("not sent")
    logger.error("not sent either")  # within the back-off: not even tried
    assert 1 == handler.failures
    assert 2 == handler.dropped
    assert 0 == handler.sent
    err = capsys.readouterr().err
    assert 1 == err.count("ctxlog: SyslogHandler cannot send to 127.0.0.1:")
    assert "CERTIFICATE_VERIFY_FAILED" in err


def test_udp_without_a_listener_never_raises(
    make: Callable[..., SyslogHandler], logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """UDP to a port nobody listens on: refused datagrams are counted, the app sees nothing."""
    handler = SyslogHandler(("127.0.0.1", free_port(socket.SOCK_DGRAM)), timeout=1)
    logger.addHandler(handler)
    try:
        for n in range(20):
            logger.info("into the void %d", n)
            time.sleep(0.005)  # let the ICMP port unreachable come back
        assert handler.failures > 0
        assert 1 == capsys.readouterr().err.count("ctxlog: SyslogHandler cannot send")
    finally:
        handler.close()


@pytest.fixture
def own_rsyslog(tmp_path: Path, certs: Certificates) -> Iterator[Rsyslog]:
    """An rsyslogd for this test alone (TCP), which it may stop and start again."""
    server = Rsyslog(tmp_path, certs, ("tcp",))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_outage_is_counted_and_delivery_resumes(
    own_rsyslog: Rsyslog,
    logger: logging.Logger,
    cleanup: list[logging.Handler],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """rsyslogd down: no exception, failures counted and reported once; records kept and sent."""
    handler = SyslogHandler(own_rsyslog.address("tcp"), transport="tcp", timeout=1)
    cleanup.append(handler)
    logger.addHandler(handler)
    tag = marker()
    logger.info("%s before", tag)
    own_rsyslog.wait_for(f"{tag} before")
    own_rsyslog.stop()
    for n in range(3):
        logger.error("%s during %d", tag, n)
    assert handler.failures >= 1
    assert 3 == handler.stats()["buffered"]
    own_rsyslog.start()
    # The next record after the back-off takes the kept ones along.
    wait_until(lambda: logger.info("%s after", tag) or handler.stats()["buffered"] == 0)
    got = own_rsyslog.wait_for(f"{tag} during", count=3)
    assert [f"{BOM}{tag} during {n}" for n in range(3)] == [m["msg"] for m in got]
    assert own_rsyslog.find(f"{tag} after")
    err = capsys.readouterr().err
    assert 1 == err.count("ctxlog: SyslogHandler cannot send to")
    assert 1 == err.count("ctxlog: SyslogHandler reaches 127.0.0.1:")


def test_records_kept_through_an_outage_leave_without_a_next_record(
    own_rsyslog: Rsyslog, logger: logging.Logger, cleanup: list[logging.Handler]
) -> None:
    """The retry thread sends what was kept once the server is back: no further record needed."""
    handler = SyslogHandler(own_rsyslog.address("tcp"), transport="tcp", timeout=1)
    cleanup.append(handler)
    logger.addHandler(handler)
    tag = marker()
    logger.info("%s before", tag)
    own_rsyslog.wait_for(f"{tag} before")
    own_rsyslog.stop()
    for n in range(3):
        logger.error("%s during %d", tag, n)
    assert 3 == handler.stats()["buffered"]
    own_rsyslog.start()
    got = own_rsyslog.wait_for(f"{tag} during", count=3, timeout=10)
    assert [f"{BOM}{tag} during {n}" for n in range(3)] == [m["msg"] for m in got]
    assert 0 == handler.stats()["buffered"]


def test_set_batching_holds_messages_until_flush(
    rsyslog: Rsyslog, make: Callable[..., SyslogHandler], logger: logging.Logger
) -> None:
    """Over TCP, batching (as a delivery worker sets it) holds messages until flush()."""
    from ctxlog.queue.target import Batching

    handler = make("tcp")
    logger.addHandler(handler)
    assert isinstance(handler, Batching)
    handler.set_batching(True)
    tag = marker()
    for n in range(5):
        logger.info("%s held %d", tag, n)
    assert (5, 0) == (handler.stats()["buffered"], handler.sent)
    handler.flush()
    got = rsyslog.wait_for(f"{tag} held", count=5)
    assert [f"{BOM}{tag} held {n}" for n in range(5)] == [m["msg"] for m in got]
    handler.set_batching(False)
    logger.info("%s at once", tag)
    assert (0, 6) == (handler.stats()["buffered"], handler.sent)


def test_server_restart_loses_nothing(
    own_rsyslog: Rsyslog, logger: logging.Logger, cleanup: list[logging.Handler]
) -> None:
    """A connection the server closed is noticed before the next send: a new one, no failure."""
    handler = SyslogHandler(own_rsyslog.address("tcp"), transport="tcp", timeout=1)
    cleanup.append(handler)
    logger.addHandler(handler)
    tag = marker()
    logger.info("%s first", tag)
    own_rsyslog.wait_for(f"{tag} first")
    own_rsyslog.stop()
    own_rsyslog.start()
    for n in range(3):
        logger.info("%s second %d", tag, n)
    own_rsyslog.wait_for(f"{tag} second", count=3)
    assert (0, 2, 4) == (handler.failures, handler.connections, handler.sent)


def test_forked_child_uses_its_own_connection(
    rsyslog: Rsyslog, make: Callable[..., SyslogHandler], logger: logging.Logger
) -> None:
    """Parent and child log at once over TCP; every record of both arrives whole."""
    handler = make("tcp")
    logger.addHandler(handler)
    tag = marker()
    logger.info("%s first", tag)
    rsyslog.wait_for(f"{tag} first")
    padding = "x" * 2000  # long frames: interleaved writes into one stream would show
    with warnings.catch_warnings():
        # 3.12+ warns about fork() in a process with threads; the child only logs and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            for n in range(200):
                logger.info("%s child %d %s", tag, n, padding)
            code = 0 if handler.connections == 1 and handler.sent == 200 else 2
        finally:
            os._exit(code)
    for n in range(200):
        logger.info("%s parent %d %s", tag, n, padding)
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    for who, procid in (("parent", os.getpid()), ("child", pid)):
        got = rsyslog.wait_for(f"{tag} {who} ", count=200)
        assert [f"{BOM}{tag} {who} {n} {padding}" for n in range(200)] == [m["msg"] for m in got]
        assert {str(procid)} == {m["procid"] for m in got}
    assert (1, 201) == (handler.connections, handler.sent)


def test_example_app(rsyslog: Rsyslog, cleanup: list[logging.Handler]) -> None:
    """examples/syslog_app.py: a request's records reach rsyslogd with its fields."""
    spec = importlib.util.spec_from_file_location(
        "ctxlog_example_syslog_app", EXAMPLES / "syslog_app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    host, port = rsyslog.address("tcp")
    root = logging.getLogger()
    level = root.level
    front = example.configure_logging(f"{host}:{port}", "tcp", stream=io.StringIO())
    cleanup.append(front)
    cleanup.extend(worker.target for worker in front.workers)  # front.close() leaves them open
    tag = marker()
    environ: dict[str, Any] = {"PATH_INFO": "/order", "HTTP_X_REQUEST_ID": tag}
    wsgiref.util.setup_testing_defaults(environ)
    try:
        response = example.application(environ, lambda status, headers, exc_info=None: None)
        b"".join(response)
        response.close()
        ctxlog.flush(timeout=5)
    finally:
        root.removeHandler(front)
        root.setLevel(level)
    got = wait_until(
        lambda: [
            m
            for m in rsyslog.received()
            if m["params"].get("ctx@32473", {}).get("request_id") == tag
        ]
    )
    assert got
    assert {"GET"} == {m["params"]["ctx@32473"]["method"] for m in got}
    assert {"/order"} == {m["params"]["ctx@32473"]["path"] for m in got}
    assert {"shop"} == {m["app"] for m in got}


# --- hostile requests and values, against rsyslogd -----------------------------------------------


@pytest.fixture(scope="module")
def small_rsyslog(
    tmp_path_factory: pytest.TempPathFactory, certs: Certificates
) -> Iterator[Rsyslog]:
    """An rsyslogd that keeps 2048 bytes of a message (maxMessageSize), over UDP and TCP."""
    server = Rsyslog(
        tmp_path_factory.mktemp("rsyslog-2048"), certs, ("udp", "tcp"), max_message_size=2048
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


class QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    """wsgiref's request handler without its line on stderr for every request."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 # the stdlib's name
        pass


@contextlib.contextmanager
def serving(app: Any) -> Iterator[tuple[str, int]]:
    """Serve ``app`` with wsgiref on 127.0.0.1 in a thread; yield its address."""
    server = wsgiref.simple_server.make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[0], server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def get(address: tuple[str, int], target: str, headers: dict[str, str | bytes]) -> int:
    """Send one GET request over HTTP/1.0; return the status."""
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.parametrize(
    "case",
    [
        ("tcp", 8096, True),
        ("tls", 8096, True),
        ("udp", 8096, True),
        ("tcp", 2048, False),  # the path alone is enough
        ("udp", 2048, False),
    ],
    ids=lambda case: "-".join(str(part) for part in case),
)
def test_a_request_cannot_forge_a_syslog_record(
    case: tuple[str, int, bool],
    request: pytest.FixtureRequest,
    certs: Certificates,
    cleanup: list[logging.Handler],
    logger: logging.Logger,
) -> None:
    """Bidi-filled paths and users ending in a forged record give one record per request."""
    transport, max_size, with_user = case
    # An rsyslogd that keeps max_size bytes, as the docs ask: the default one, or one for 2048.
    server: Rsyslog = request.getfixturevalue("rsyslog" if max_size == 8096 else "small_rsyslog")
    handler = SyslogHandler(
        server.address(transport),
        transport=transport,
        app_name="shop",
        max_size=max_size,
        timeout=2,
        tls=certs.client() if transport == "tls" else None,
    )
    cleanup.append(handler)
    logger.addHandler(handler)

    def view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        logger.info("view %s", environ["HTTP_X_REQUEST_ID"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def user(environ: dict[str, Any]) -> str | None:
        # An authenticating proxy's header, as an application would read it (PEP 3333).
        name = environ.get("HTTP_X_USER", "")
        return name.encode("latin-1").decode("utf-8") or None

    app = ctxlog.WSGIMiddleware(view, user=user)
    tag = marker()
    stamp = timestamp(time.time())
    # The attacker lays out the message as an unbounded encoder would write it, so that the
    # byte after the server's limit (which rsyslog drops) is followed by a record of their own.
    forged = f"<34>1 {stamp} {handler.hostname} sshd 4242 - - FORGED root login {tag}"
    with serving(app) as address:
        rids = [f"{tag}{n}" for n in range(3)]
        for rid in rids:
            users = 'user="' + "\\\\u202e" * 256 + '" ' if with_user else ""
            before = (
                f"<14>1 {stamp} {handler.hostname} shop {os.getpid()} - "
                f'[ctx@32473 ip="127.0.0.1" {users}request_id="{rid}" method="GET" path="/'
            )
            bidi, padding = divmod(max_size + 1 - len(before), 7)  # 7 bytes each, escaped
            path = "/" + "a" * padding + "\u202e" * bidi + forged
            path += "\u202e" * (1024 - len(path))
            assert bidi > 0
            assert len(path) == 1024
            headers: dict[str, str | bytes] = {"X-Request-ID": rid}
            if with_user:
                headers["X-User"] = ("\u202e" * 256).encode()
            assert 200 == get(address, urllib.parse.quote(path), headers)
    logger.info("sentinel %s", tag)  # the same connection: what came before has arrived with it
    server.wait_for(f"sentinel {tag}")
    got = [m for m in server.received() if tag in m["raw"]]
    assert [] == [m for m in got if m["app"] != "shop" or "FORGED" in m["msg"]]
    for rid in rids:
        (one,) = [m for m in got if rid in m["raw"]]
        params = one["params"]["ctx@32473"]
        assert (rid, "127.0.0.1", "GET") == (params["request_id"], params["ip"], params["method"])
        assert params["path"].startswith("/")
        assert params["path"].endswith("\\u202e...")
        if with_user:
            assert re.fullmatch(r"(\\u202e)+(\.\.\.)?", params["user"]), params["user"]
        assert f"{BOM}view {rid}" == one["msg"]
        assert len(one["raw"].encode()) <= max_size
    assert len(rids) + 1 == len(got)
    assert (len(rids) + 1, 0) == (handler.sent, handler.dropped)


@pytest.mark.parametrize("max_size", [8096, 65507])
def test_udp_record_with_huge_fields_is_cut_and_sent(max_size: int) -> None:
    """A bound field that would make the datagram unsendable is cut to fit; the record is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        handler = SyslogHandler(
            server.getsockname(), fields=[*ctxlog.FIELDS, "cart"], max_size=max_size
        )
        try:
            handler.handle(record("checkout", user="alice", cart="item;" * 20_000))
            data, _ = server.recvfrom(1 << 17)
        finally:
            handler.close()
    assert len(data) <= max_size
    assert (1, 0, 0) == (handler.sent, handler.dropped, handler.failures)
    parts = parse(data)
    params = parse_sd(parts["sd"])
    assert "alice" == params["user"]
    assert params["cart"].startswith("item;item;")
    assert params["cart"].endswith("...")
    assert "checkout" == parts["msg"]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_lone_surrogate_is_sent_escaped(
    transport: str, rsyslog: Rsyslog, make: Callable[..., SyslogHandler], logger: logging.Logger
) -> None:
    """A lone surrogate in the message or a field arrives escaped; the record is sent, not dropped."""
    handler = make(transport, fields=[*ctxlog.FIELDS, "query"])
    logger.addHandler(handler)
    tag = marker()
    with ctxlog.scope(user="eve\ud800", query="q=\udfff"):
        logger.warning("%s searched %s", tag, "\ud800x")
    (got,) = rsyslog.wait_for(tag)
    assert f"{BOM}{tag} searched \\ud800x" == got["msg"]
    assert {"user": "eve\\ud800", "query": "q=\\udfff"} == got["params"]["ctx@32473"]
    assert (1, 0) == (handler.sent, handler.dropped)
