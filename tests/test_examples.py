"""Run every example for real, so none of them can rot."""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import re
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from unittest import mock

import httpx
import pytest

import ctxlog

with warnings.catch_warnings():
    # Recent Starlette prefers the httpx2 package and warns once when it falls back to httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HEX_ID = re.compile(r"[0-9a-f]{32}")
PROXY = ("10.0.0.1", 40000)  # inside the examples' default trusted_proxies, 10.0.0.0/8


def load_example(filename: str):
    """Import an example by path, with the default settings (no TRUSTED_PROXIES override)."""
    name = "ctxlog_example_" + filename.removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / filename)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ):
        os.environ.pop("TRUSTED_PROXIES", None)
        spec.loader.exec_module(module)
    return module


class ExampleLog(logging.Handler):
    """Keep every record, and its line formatted with the examples' format."""

    def __init__(self, fmt: str) -> None:
        super().__init__(logging.INFO)
        self.addFilter(ctxlog.ContextFilter())
        self.setFormatter(logging.Formatter(fmt))
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    def of(self, request_id: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "request_id", None) == request_id]

    def access(self, request_id: str) -> logging.LogRecord:
        found = [r for r in self.of(request_id) if r.name == "ctxlog.access"]
        assert len(found) == 1, self.lines
        return found[0]

    def messages(self, logger: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == logger]


@pytest.fixture(scope="module")
def starlette_example():
    return load_example("starlette_app.py")


@pytest.fixture(scope="module")
def flask_example():
    return load_example("flask_app.py")


@pytest.fixture
def logged(starlette_example):
    root = logging.getLogger()
    level = root.level
    handler = ExampleLog(starlette_example.LOG_FORMAT)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def assert_fields(records, *, ip: str, user: str, request_id: str) -> None:
    assert records
    for record in records:
        assert (record.ip, record.user, record.request_id) == (ip, user, request_id), record


# --- Starlette --------------------------------------------------------------------------------


def test_starlette_requests_through_trusted_proxy(starlette_example, logged):
    """Two requests through a trusted proxy log their own client, user and request id."""
    with TestClient(starlette_example.app, client=PROXY) as client:
        first = client.get(
            "/pay?amount=12",
            auth=("alice", "wonderland"),
            headers={"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "order-17"},
        )
        second = client.get(
            "/pay?amount=3",
            auth=("bob", "builder"),
            headers={"X-Forwarded-For": "198.51.100.4, 10.0.0.7"},
        )
    assert first.status_code == second.status_code == 200
    assert first.headers["X-Request-ID"] == "order-17"
    second_id = second.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(second_id)

    assert_fields(logged.of("order-17"), ip="203.0.113.7", user="alice", request_id="order-17")
    assert_fields(logged.of(second_id), ip="198.51.100.4", user="bob", request_id=second_id)
    assert "203.0.113.7 alice order-17 shop: paid 12 EUR" in "\n".join(logged.lines)

    access = logged.access("order-17")
    assert access.getMessage().startswith('203.0.113.7 - alice "GET /pay HTTP/1.1" 200 ')
    assert access.status == 200
    assert access.amount == 12  # bound in the view, seen by the access line
    assert "amount=12" not in access.getMessage()  # query strings stay out by default
    assert logged.access(second_id).amount == 3


def test_starlette_untrusted_peer(starlette_example, logged):
    """A peer outside trusted_proxies is the client; TestClient's default peer is not an IP."""
    forged = {"X-Forwarded-For": "1.2.3.4"}
    with TestClient(starlette_example.app, client=("192.0.2.10", 5555)) as client:
        direct = client.get("/", headers=forged)
    with TestClient(starlette_example.app) as client:
        default = client.get("/", headers=forged)
    assert direct.json()["ip"] == "192.0.2.10"
    assert default.json()["ip"] == "-"
    assert logged.access(direct.headers["X-Request-ID"]).ip == "192.0.2.10"
    assert logged.access(default.headers["X-Request-ID"]).ip == "-"


def test_starlette_anonymous_and_failed_login(starlette_example, logged):
    """Anonymous requests and failed logins are logged with user '-'."""
    with TestClient(starlette_example.app, client=PROXY) as client:
        anonymous = client.get("/")
        failed = client.get("/", auth=("alice", "not-her-password"))
    assert anonymous.status_code == 200
    assert anonymous.json()["user"] == "-"
    assert failed.status_code == 400
    failed_id = failed.headers["X-Request-ID"]
    warning = [r for r in logged.of(failed_id) if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warning] == ["failed login for 'alice'"]
    assert_fields(logged.of(failed_id), ip="10.0.0.1", user="-", request_id=failed_id)


def test_starlette_sync_view_runs_in_thread_pool(starlette_example, logged):
    """A sync view logs from a worker thread with the request's fields, and its bind() lasts."""
    with TestClient(starlette_example.app, client=PROXY) as client:
        response = client.get("/report", auth=("bob", "builder"))
    request_id = response.headers["X-Request-ID"]
    (built,) = [r for r in logged.of(request_id) if r.getMessage() == "report built"]
    access = logged.access(request_id)
    assert built.thread != access.thread  # really another thread
    assert_fields([built, access], ip="10.0.0.1", user="bob", request_id=request_id)
    assert access.report == "daily"


def test_starlette_streaming_and_background_task(starlette_example, logged):
    """Streaming chunks and a background task log with the fields of their request."""
    with TestClient(starlette_example.app, client=PROXY) as client:
        streamed = client.get(
            "/stream", auth=("alice", "wonderland"), headers={"X-Request-ID": "s-1"}
        )
        signup = client.get("/signup?name=carol", headers={"X-Request-ID": "bg-1"})
    assert streamed.text == "line 0\nline 1\nline 2\n"
    chunks = [r for r in logged.of("s-1") if r.getMessage().startswith("sending chunk")]
    assert len(chunks) == 3
    assert_fields(chunks, ip="10.0.0.1", user="alice", request_id="s-1")
    assert logged.access("s-1").size == len(streamed.content)

    assert signup.json() == {"ok": True}
    messages = [r.getMessage() for r in logged.of("bg-1")]
    assert messages[:2] == ["signing up", "welcome mail queued for carol"]
    assert logged.of("bg-1")[-1].name == "ctxlog.access"  # written after the background task
    assert_fields(logged.of("bg-1"), ip="10.0.0.1", user="-", request_id="bg-1")


def test_starlette_error_and_bad_request_id(starlette_example, logged):
    """A failing view gives status 500 with the id echoed; an unusable incoming id is replaced."""
    with TestClient(starlette_example.app, client=PROXY, raise_server_exceptions=False) as client:
        failed = client.get("/boom", headers={"X-Request-ID": "boom-1"})
        renamed = client.get("/", headers={"X-Request-ID": "has a space"})
    assert failed.status_code == 500
    assert failed.headers["X-Request-ID"] == "boom-1"
    assert logged.access("boom-1").status == 500
    new_id = renamed.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(new_id)
    assert renamed.json()["request_id"] == new_id
    assert not [line for line in logged.lines if "has a space" in line]


# --- Flask ------------------------------------------------------------------------------------


def test_flask_view_binds_user(flask_example, logged):
    """The user init_app finds (g.user) reaches the view's records and the access line; no leak."""
    client = flask_example.app.test_client()
    with client.get(
        "/account",
        auth=("alice", "wonderland"),
        headers={"X-Forwarded-For": "203.0.113.9", "X-Request-ID": "flask-1"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    ) as response:
        assert response.get_json() == {"user": "alice"}
        assert response.headers["X-Request-ID"] == "flask-1"
    with client.get("/", environ_base={"REMOTE_ADDR": "10.0.0.2"}) as anonymous:
        anonymous_id = anonymous.get_json()["request_id"]
    assert anonymous.headers["X-Request-ID"] == anonymous_id

    assert_fields(logged.of("flask-1"), ip="203.0.113.9", user="alice", request_id="flask-1")
    access = logged.access("flask-1")  # written when the response is closed
    assert access.getMessage().startswith('203.0.113.9 - alice "GET /account HTTP/1.1" 200 ')
    assert_fields(logged.of(anonymous_id), ip="10.0.0.2", user="-", request_id=anonymous_id)


def test_flask_untrusted_peer_and_login_required(flask_example, logged):
    """A peer outside trusted_proxies is the client, and a refused login is logged as '-'."""
    client = flask_example.app.test_client()
    with client.get(
        "/account",
        auth=("bob", "wrong"),
        headers={"X-Forwarded-For": "1.2.3.4"},
        environ_base={"REMOTE_ADDR": "192.0.2.20"},
    ) as response:
        assert response.status_code == 401
        request_id = response.headers["X-Request-ID"]
    assert_fields(logged.of(request_id), ip="192.0.2.20", user="-", request_id=request_id)
    assert logged.access(request_id).status == 401


def test_flask_streaming(flask_example, logged):
    """Chunks of a streamed body are logged with the request's fields after the view returned."""
    client = flask_example.app.test_client()
    with client.get(
        "/stream",
        auth=("bob", "builder"),
        headers={"X-Forwarded-For": "198.51.100.8", "X-Request-ID": "flask-stream"},
        environ_base={"REMOTE_ADDR": "10.9.9.9"},
    ) as response:
        assert response.get_data(as_text=True) == "line 0\nline 1\nline 2\n"
    chunks = [r for r in logged.of("flask-stream") if r.getMessage().startswith("sending chunk")]
    assert len(chunks) == 3
    assert_fields(chunks, ip="198.51.100.8", user="bob", request_id="flask-stream")
    assert logged.access("flask-stream").size == len("line 0\nline 1\nline 2\n")


def test_flask_configure_logging(flask_example, logged):
    """The example's own logging set-up writes the request fields in its format."""
    stream = io.StringIO()
    handler = flask_example.configure_logging(stream)
    try:
        client = flask_example.app.test_client()
        with client.get(
            "/account",
            auth=("alice", "wonderland"),
            headers={"X-Request-ID": "flask-fmt"},
            environ_base={"REMOTE_ADDR": "192.0.2.30"},
        ):
            pass
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue()
    assert " INFO 192.0.2.30 alice flask-fmt shop: account page\n" in output
    assert ' 192.0.2.30 alice flask-fmt ctxlog.access: 192.0.2.30 - alice "GET /account ' in output


# --- The Starlette example under a real uvicorn ----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the example exited early with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the example did not listen on port {port} within {timeout}s")


def test_starlette_example_under_uvicorn(tmp_path):
    """The Starlette example, run as a script under uvicorn, logs the fields of real requests."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "TRUSTED_PROXIES": "127.0.0.1",  # the test plays the proxy
        "PYTHONUNBUFFERED": "1",
    }
    output = tmp_path / "server.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "starlette_app.py")],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
        try:
            wait_for_port(process, port, timeout=30)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=10) as client:
                paid = client.get(
                    "/pay?amount=5",
                    auth=("alice", "wonderland"),
                    headers={"X-Request-ID": "uv-1", "X-Forwarded-For": "203.0.113.50"},
                )
                streamed = client.get("/stream", headers={"X-Request-ID": "uv-2"})
            assert paid.json() == {"paid": 5}
            assert paid.headers["X-Request-ID"] == "uv-1"
            assert streamed.headers["X-Request-ID"] == "uv-2"
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
    lines = output.read_text(encoding="utf-8", errors="replace").splitlines()
    text = "\n".join(lines)
    assert " INFO 203.0.113.50 alice uv-1 shop: paid 5 EUR" in text, text
    assert (
        ' 203.0.113.50 alice uv-1 ctxlog.access: 203.0.113.50 - alice "GET /pay HTTP/1.1" 200 '
        in text
    ), text
    assert sum(" INFO 127.0.0.1 - uv-2 shop: sending chunk" in line for line in lines) == 3, text
    assert ' 127.0.0.1 - uv-2 ctxlog.access: 127.0.0.1 - - "GET /stream HTTP/1.1" 200 ' in text, (
        text
    )
    # Outside any request, the same format shows "-" for every field.
    assert any(" - - - uvicorn.error: " in line for line in lines), text


def test_no_request_state_left_in_test_thread(flask_example, logged):
    """A WSGI request served in the test's own thread leaves no context behind in it."""
    with flask_example.app.test_client().get("/account", auth=("alice", "wonderland")):
        pass
    assert logged.messages("shop")[-1].user == "alice"
    assert ctxlog.get_context() == {}


# --- nonblocking_smtp.py: errors e-mailed through ctxlog.nonblocking() -----------------------

SMTP_CLIENT = ("192.0.2.44", 5000)  # the peer address TestClient reports; no proxies trusted


@pytest.fixture(scope="module")
def smtp_example():
    return load_example("nonblocking_smtp.py")


@pytest.fixture
def mail_log(smtp_example, smtp_server):
    """The example's logging pointed at the test's SMTP server: (handler, mail, console text)."""
    root = logging.getLogger()
    level = root.level
    console = io.StringIO()
    handler = smtp_example.configure_logging("127.0.0.1", smtp_server.port, stream=console)
    (mail, _) = targets = [worker.target for worker in handler.workers]
    try:
        yield handler, mail, console
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
        for target in targets:
            target.close()


def mail_body(message) -> str:
    return message.get_content().replace("\r\n", "\n")


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def test_smtp_error_is_mailed_without_slowing_the_request(smtp_example, smtp_server, mail_log):
    """A slow mail server delays neither the response nor the console; the mail names the request."""
    handler, _, console = mail_log
    smtp_server.delay = 1.5  # every e-mail takes 1.5 s to be accepted
    with TestClient(smtp_example.app, client=SMTP_CLIENT) as client:
        started = time.monotonic()
        response = client.get(
            "/checkout", auth=("alice", "wonderland"), headers={"X-Request-ID": "mail-1"}
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 502
        assert response.headers["X-Request-ID"] == "mail-1"
        assert elapsed < 1.0, elapsed
        # The console has its own thread: its line is out while the e-mail is still on its way.
        assert wait_until(lambda: "alice mail-1 shop: checkout failed" in console.getvalue())
        assert smtp_server.messages == []
        (message,) = smtp_server.wait_for(1)

    assert message["Subject"] == "shop: errors"
    assert message["To"] == "ops@localhost"
    body = mail_body(message)
    assert (
        "ERROR client=192.0.2.44 user=alice request_id=mail-1 GET /checkout shop: checkout failed\n"
        in body
    )
    assert "PaymentGatewayError: payment gateway timed out charging 12 EUR to alice" in body
    assert "checking out" not in body  # INFO records never reach the ERROR-level mail queue
    assert " INFO 192.0.2.44 alice mail-1 shop: checking out 12 EUR\n" in console.getvalue()
    stats = handler.stats()
    assert stats["dropped"] == stats["failed"] == 0


def test_smtp_unhandled_error_then_digest_sent_at_shutdown(smtp_example, smtp_server, mail_log):
    """The first error is mailed at once; later ones wait for the digest, sent at app shutdown."""
    handler, mail, _ = mail_log
    with TestClient(smtp_example.app, client=SMTP_CLIENT, raise_server_exceptions=False) as client:
        failed = client.get("/boom", headers={"X-Request-ID": "boom-1"})
        assert failed.status_code == 500
        assert failed.headers["X-Request-ID"] == "boom-1"
        (first,) = smtp_server.wait_for(1)
        for number in (1, 2):
            response = client.get(
                "/checkout", auth=("bob", "builder"), headers={"X-Request-ID": f"later-{number}"}
            )
            assert response.headers["X-Request-ID"] == f"later-{number}"
        # Both were handed to the mail handler, which keeps them for the next digest.
        assert wait_until(lambda: handler.stats()["targets"][0]["delivered"] == 3)
        assert len(smtp_server.messages) == 1
    # Leaving the TestClient ran the app's lifespan shutdown, which flushed the handler.
    first_body = mail_body(first)
    assert (
        "ERROR client=192.0.2.44 user=- request_id=boom-1 GET /boom shop: unhandled error\n"
        in first_body
    )
    assert "RuntimeError: something broke" in first_body
    (_, digest) = smtp_server.wait_for(2)
    assert digest["Subject"] == "shop: errors (2 records)"
    body = mail_body(digest)
    for number in (1, 2):
        assert f"client=192.0.2.44 user=bob request_id=later-{number} GET /checkout shop: " in body
    assert mail.sent == 2


def test_smtp_server_down_costs_the_request_nothing(smtp_example, smtp_server, mail_log, capfd):
    """With the mail server down the request is as fast; the report is kept and sent later."""
    handler, mail, console = mail_log
    smtp_server.stop()
    with TestClient(smtp_example.app, client=SMTP_CLIENT) as client:
        started = time.monotonic()
        response = client.get(
            "/checkout", auth=("alice", "wonderland"), headers={"X-Request-ID": "down-1"}
        )
        assert time.monotonic() - started < 1.0
        assert response.status_code == 502
        assert wait_until(lambda: mail.failures == 1)
        # The console has a delivery thread of its own: wait for it too, not just the mail's.
        assert wait_until(lambda: "alice down-1 shop: checkout failed" in console.getvalue())
        smtp_server.start()
        assert handler.flush(timeout=10)  # also flushes the mail handler: it tries again now
        (message,) = smtp_server.wait_for(1)
    assert "user=alice request_id=down-1" in mail_body(message)
    err = capfd.readouterr().err
    assert err.count("DigestSMTPHandler could not send") == 1
    assert "reaches 127.0.0.1:" in err


def test_smtp_example_under_uvicorn(tmp_path, smtp_server):
    """Run as a script: errors are mailed, and the digest still pending goes out on SIGTERM."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "SMTP_PORT": str(smtp_server.port),
        "PYTHONUNBUFFERED": "1",
    }
    output = tmp_path / "server.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "nonblocking_smtp.py")],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
        try:
            wait_for_port(process, port, timeout=30)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for number in (1, 2, 3):
                    response = client.get(
                        "/checkout",
                        auth=("alice", "wonderland"),
                        headers={"X-Request-ID": f"uv-mail-{number}"},
                    )
                    assert response.status_code == 502
                    assert response.headers["X-Request-ID"] == f"uv-mail-{number}"
            assert len(smtp_server.wait_for(1)) == 1
        finally:
            process.terminate()  # SIGTERM: uvicorn shuts down gracefully
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
    text = output.read_text(encoding="utf-8", errors="replace")
    first, digest = smtp_server.wait_for(2)
    assert "user=alice request_id=uv-mail-1 GET /checkout" in mail_body(first)
    assert digest["Subject"] == "shop: errors (2 records)", text
    assert "request_id=uv-mail-2 " in mail_body(digest)
    assert "request_id=uv-mail-3 " in mail_body(digest)
    assert " ERROR 127.0.0.1 alice uv-mail-1 shop: checkout failed\n" in text, text
    assert "Traceback (most recent call last):" in text


# --- many workers, one file (examples/many_workers.py) -----------------------------------------


def test_many_workers_example_under_gunicorn(tmp_path):
    """Four gunicorn workers of the example send to one ctxlog receive; one file has it all."""
    log_file = tmp_path / "shop.log"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "ctxlog", "receive", "--listen", "127.0.0.1:0",
         "--file", str(log_file), "--max-bytes", "1MB", "--backup-count", "3"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    port = free_port()
    gunicorn = None
    try:
        first = receiver.stderr.readline()
        receiver_port = re.search(r"listening on 127\.0\.0\.1:(\d+)", first).group(1)
        env = {
            **os.environ,
            "RECEIVER": f"127.0.0.1:{receiver_port}",
            "TRUSTED_PROXIES": "127.0.0.1",
        }
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "4", "-b", f"127.0.0.1:{port}",
             "--chdir", str(EXAMPLES), "many_workers:app"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(gunicorn, port, timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for n in range(40):
                response = client.get(
                    f"/pay?amount={n}",
                    headers={
                        "X-User": f"user{n}",
                        "X-Request-ID": f"many-{n}",
                        "X-Forwarded-For": f"203.0.113.{n}",
                    },
                )
                assert 200 == response.status_code
        gunicorn.terminate()  # graceful: the workers deliver what they queued on the way out
        assert 0 == gunicorn.wait(timeout=30)
    finally:
        if gunicorn is not None and gunicorn.poll() is None:
            gunicorn.kill()
            gunicorn.wait(timeout=10)
        receiver.terminate()
        _, err = receiver.communicate(timeout=30)
    assert 0 == receiver.returncode, err
    lines = log_file.read_text(encoding="utf-8").splitlines()
    for n in range(40):
        mine = [line for line in lines if f" 203.0.113.{n} user{n} many-{n} " in line]
        assert 2 == len(mine), (n, mine)  # the payment and the access line, once each
        assert any(f"shop paid {n} EUR" in line for line in mine), mine
        assert any("ctxlog.access" in line for line in mine)


def test_flask_work_handed_to_a_pool(flask_example, logged):
    """Records of the tasks a view hands to the example's pool carry that request's fields."""
    client = flask_example.app.test_client()
    with client.get(
        "/report",
        auth=("bob", "builder"),
        headers={"X-Forwarded-For": "198.51.100.23", "X-Request-ID": "flask-pool"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    ) as response:
        assert response.get_json() == {"sections": ["orders: ok", "payments: ok", "refunds: ok"]}
    tasks = [r for r in logged.of("flask-pool") if r.getMessage().startswith("summarizing")]
    assert sorted(r.getMessage() for r in tasks) == [
        "summarizing orders",
        "summarizing payments",
        "summarizing refunds",
    ]
    assert all(r.threadName.startswith("report") for r in tasks)
    assert_fields(tasks, ip="198.51.100.23", user="bob", request_id="flask-pool")
    # Outside any request, the same pool's tasks log "-".
    assert flask_example.pool.submit(flask_example.summarize, "idle").result() == "idle: ok"
    assert_fields(
        [r for r in logged.records if r.getMessage() == "summarizing idle"],
        ip="-",
        user="-",
        request_id="-",
    )


# --- Django (examples/django_app.py) -----------------------------------------------------------


def test_django_example(tmp_path):
    """The Django example passes `check`; its demo's lines name the client, user and request."""
    # A subprocess: Django's settings are global to a process, and the example configures them.
    env = {**os.environ, "DJANGO_APP_DB": str(tmp_path / "db.sqlite3")}
    env.pop("TRUSTED_PROXIES", None)
    script = str(EXAMPLES / "django_app.py")
    run = {"env": env, "capture_output": True, "text": True, "timeout": 60}
    check = subprocess.run([sys.executable, script, "check"], check=False, **run)
    assert 0 == check.returncode, check.stderr
    assert "System check identified no issues" in check.stdout
    demo = subprocess.run([sys.executable, script, "demo"], check=False, **run)
    assert 0 == demo.returncode, demo.stderr
    lines = [line.split(" ", 3)[3] for line in demo.stderr.splitlines() if line[:2] == "20"]
    # The view that never reads request.user leaves the session alone: "-" even when logged in.
    assert "127.0.0.1 - demo-3 shop: home page" in lines
    assert "127.0.0.1 alice demo-2 shop: logged in" in lines  # named from login() on
    assert "127.0.0.1 alice demo-4 shop: account page" in lines
    assert "203.0.113.7 alice demo-5 shop: listing orders of alice" in lines  # async view
    assert "127.0.0.1 - demo-6 django.request: Internal Server Error: /boom" in lines
    assert "RuntimeError: something broke" in demo.stderr
    access = [line for line in lines if " ctxlog.access: " in line]
    assert 6 == len(access), lines
    assert any(
        line.startswith('203.0.113.7 alice demo-5 ctxlog.access: 203.0.113.7 - alice "GET /orders ')
        for line in access
    ), access


def test_flask_init_app_names_the_user_on_every_route(flask_example, logged):
    """init_app picks up g.user from the example's before_request, on routes that never bind."""
    assert flask_example.app.extensions["ctxlog"] is flask_example.app.wsgi_app
    client = flask_example.app.test_client()
    with client.get(
        "/",
        auth=("alice", "wonderland"),
        headers={"X-Request-ID": "flask-home"},
        environ_base={"REMOTE_ADDR": "192.0.2.31"},
    ) as response:
        assert response.get_json() == {"request_id": "flask-home"}
    home = [r for r in logged.of("flask-home") if r.name == "shop"]
    assert [r.getMessage() for r in home] == ["home page"]
    assert_fields(
        [*home, logged.access("flask-home")], ip="192.0.2.31", user="alice", request_id="flask-home"
    )


# --- follow_request.py: a request id through a Celery task into a second service ---------------


def test_follow_request_joins_web_task_and_service_lines_by_one_id(tmp_path):
    """The example prints four lines, from three parts, all with the request's id."""
    from redis_server import redis_server

    with redis_server(tmp_path) as url:
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "follow_request.py"), "--broker", url],
            capture_output=True,
            text=True,
            timeout=90,
            env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
            check=False,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout + result.stderr
    ids = {line.split()[0] for line in lines}
    assert len(ids) == 1 and HEX_ID.fullmatch(ids.pop())
    assert [line.split(None, 1)[1] for line in lines] == [
        "alice  -          shop: order 7 received",
        "alice  shop.price shop.tasks: pricing order 7",
        "-      -          pricing: price asked for order 7",
        "alice  shop.price shop.tasks: order 7 costs 12 EUR",
    ]
    assert "Traceback" not in result.stderr
