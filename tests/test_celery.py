"""
ctxlog.celery: a task runs with the context of the request that published it.

The end-to-end tests run real parts: redis-server (started here on 127.0.0.1) as the broker, a
``celery worker`` subprocess with the prefork, threads or solo pool, and the publishing web app
under uvicorn, driven by 200 concurrent requests. The apps are in tests/apps/celery_shop.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import redis_server

import ctxlog
import ctxlog.celery
from ctxlog.celery import HEADER_PREFIX, task_fields
from ctxlog.testing import request

celery = pytest.importorskip("celery") if os.environ.get("CI") != "true" else __import__("celery")

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
WAIT = 60.0
LINE = re.compile(
    r"(?P<rid>[^|]*)\|(?P<user>[^|]*)\|(?P<ip>[^|]*)\|(?P<tenant>[^|]*)\|(?P<task>[^|]*)\|"
    r"(?P<task_id>[^|]*)\|(?P<parent>[^|]*)\|(?P<message>.*)"
)


@pytest.fixture(autouse=True)
def _uninstalled() -> Iterator[None]:
    ctxlog.celery.uninstall()
    yield
    ctxlog.celery.uninstall()


def wait_for(predicate: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- install() and the headers, without a broker ------------------------------------------------


class FakeApp:
    """What install() checks of a Celery app (its signals are Celery's own, global ones)."""

    conf: dict[str, Any] = {}

    def send_task(self, *args: Any, **kwargs: Any) -> None: ...


def test_install_refuses_what_is_not_a_celery_app() -> None:
    with pytest.raises(TypeError, match="needs a Celery application"):
        ctxlog.celery.install(object())


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ("tenant", TypeError, "not the string 'tenant'"),
        (["not a name"], ValueError, "must be identifiers"),
        (["msg"], ValueError, "reserved"),
        (["request_id"], ValueError, "sends or sets"),
        (["task_id"], ValueError, "sends or sets"),
    ],
)
def test_install_refuses_bad_fields(fields: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        ctxlog.celery.install(celery.Celery("t"), fields=fields)


def test_install_twice_with_other_fields_says_what_to_change() -> None:
    app = celery.Celery("t")
    ctxlog.celery.install(app, fields=("tenant",))
    ctxlog.celery.install(app, fields=["tenant"])  # the same: nothing happens
    with pytest.raises(ValueError, match=r"called before with fields=\('tenant',\)"):
        ctxlog.celery.install(app, fields=("order",))


def test_headers_carry_the_request_and_the_named_bound_fields() -> None:
    ctxlog.celery.install(celery.Celery("t"), fields=("tenant",))
    assert ctxlog.celery.message_headers() == {}  # outside a request: nothing to carry
    with request(ip="203.0.113.9", user="alice", request_id="rid-1", tenant="acme", other="x"):
        assert ctxlog.celery.message_headers() == {
            "ctxlog_request_id": "rid-1",
            "ctxlog_user": "alice",
            "ctxlog_ip": "203.0.113.9",
            "ctxlog_tenant": "acme",
        }
        with ctxlog.scope(tenant="globex"):
            assert ctxlog.celery.message_headers()["ctxlog_tenant"] == "globex"


def test_task_fields_outside_tasks_are_dashes_in_formats(capture: Any) -> None:
    ctxlog.celery.install(celery.Celery("t"))
    handler = capture
    handler.setFormatter(ctxlog.Formatter("%(task_id)s %(task_name)s %(parent_task_id)s %(message)s"))
    ctxlog.get_logger("t").info("hello")
    assert handler.lines[-1] == "- - - hello"


def test_hostile_header_values_cannot_forge_a_line() -> None:
    ctxlog.celery.install(celery.Celery("t"), fields=("tenant",))
    message = {
        HEADER_PREFIX + "request_id": "r1\nINFO forged",
        HEADER_PREFIX + "user": "bob\r\n2026-01-01 INFO admin logged in",
        HEADER_PREFIX + "ip": "1.2.3.4\x1b[2J",
        HEADER_PREFIX + "tenant": "\u202eevil" + "x" * 5000,
        HEADER_PREFIX + "parent_task_id": "p\n",
    }
    fields = task_fields(message, "id\n1", "shop.work", None)
    assert re.fullmatch("[0-9a-f]{32}", fields["request_id"])  # an invalid id is replaced
    assert fields["user"] == "bob\\r\\n2026-01-01 INFO admin logged in"
    assert fields["ip"] == "1.2.3.4\\x1b[2J"
    assert fields["tenant"].startswith("\\u202eevil") and fields["tenant"].endswith("...")
    assert fields["task_id"] == "id\\n1" and fields["parent_task_id"] == "p\\n"
    assert all("\n" not in str(v) and "\r" not in str(v) for v in fields.values())


def test_a_value_of_another_type_from_another_producer_is_text() -> None:
    ctxlog.celery.install(celery.Celery("t"))
    fields = task_fields({HEADER_PREFIX + "user": 42}, "t1", "shop.work", None)
    assert fields["user"] == "42"
    assert fields["ip"] == "-"


# --- real parts: redis-server, celery worker, uvicorn -------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of its own on 127.0.0.1; yields its URL."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


class Worker:
    """A ``celery worker`` subprocess for tests/apps/celery_shop.py, on a queue of its own."""

    count = 0

    def __init__(self, tmp_path: Path, broker: str, pool: str, **env: str) -> None:
        Worker.count += 1
        self.queue = f"q{os.getpid()}-{Worker.count}"
        self.log_path = tmp_path / f"tasks{Worker.count}.log"
        self.err_path = tmp_path / f"worker{Worker.count}.err"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(APPS), str(ROOT)]),
            "CTXLOG_BROKER": broker,
            "CTXLOG_QUEUE": self.queue,
            "CTXLOG_TASK_LOG": str(self.log_path),
            **env,
        }
        concurrency = {"prefork": "2", "threads": "4", "solo": "1"}[pool]
        with self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_shop:celery", "worker",
                 "--pool", pool, "--concurrency", concurrency, "--queues", self.queue,
                 "--loglevel", "warning", "--without-heartbeat", "--without-gossip",
                 "--without-mingle"],
                cwd=tmp_path,
                env=self.env,
                stdout=err,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def lines(self) -> list[str]:
        if not self.log_path.exists():
            return []
        return self.log_path.read_text(encoding="utf-8").splitlines()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(WAIT)


@pytest.fixture
def start_worker(tmp_path: Path, broker: str) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(pool: str = "threads", **env: str) -> Worker:
        worker = Worker(tmp_path, broker, pool, **env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def publisher(worker: Worker) -> Any:
    """The shop's tasks module imported here, publishing to ``worker``'s queue."""
    sys.path.insert(0, str(APPS))
    os.environ["CTXLOG_BROKER"] = worker.env["CTXLOG_BROKER"]
    try:
        import celery_shop
    finally:
        sys.path.remove(str(APPS))
    ctxlog.celery.install(celery_shop.celery, fields=("tenant",))
    return celery_shop


def parsed(lines: list[str]) -> list[dict[str, str]]:
    out = []
    for line in lines:
        match = LINE.fullmatch(line)
        assert match, f"not one record per line: {line!r}"
        out.append(match.groupdict())
    return out


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_nothing_leaks_from_one_task_to_the_next(start_worker: Callable[..., Worker], pool: str) -> None:
    """
    Tasks with a request's context and tasks without one alternate on each pool; a record made
    after each task ends, in the thread that ran it, carries no task's fields.
    """
    worker = start_worker(pool, CTXLOG_LOG_AFTER="1")
    shop = publisher(worker)
    for n in range(30):
        if n % 2:
            shop.work.apply_async((f"bare{n}",), queue=worker.queue)
        else:
            with request(ip="198.51.100.7", user=f"u{n}", request_id=f"rid-{n}", tenant=f"t{n}"):
                shop.work.apply_async((f"req{n}",), queue=worker.queue)
    wait_for(lambda: len(worker.lines()) >= 60, what=f"60 lines from the {pool} worker")
    records = parsed(worker.lines())
    after = [line for line in records if line["message"].startswith("after ")]
    assert len(after) == 30
    for line in after:
        assert set(line.values()) - {line["message"]} == {"-"}, line
    for line in records:
        if line in after:
            continue
        n = int(line["message"].split()[1][3:] if "req" in line["message"] else -1)
        if "bare" in line["message"]:
            assert (line["rid"], line["user"], line["ip"], line["tenant"]) == ("-", "-", "-", "-")
        else:
            assert (line["rid"], line["user"], line["ip"], line["tenant"]) == (
                f"rid-{n}", f"u{n}", "198.51.100.7", f"t{n}"
            )
        assert line["task"] == "shop.work" and line["task_id"] != "-"


def test_hostile_headers_from_another_producer_reach_the_worker_escaped(
    start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker("solo")
    shop = publisher(worker)
    shop.work.apply_async(
        ("hostile",),
        queue=worker.queue,
        headers={
            "ctxlog_request_id": "r1\nINFO forged",
            "ctxlog_user": "bob\nINFO forged",
            "ctxlog_ip": "10.0.0.1",
        },
    )
    wait_for(worker.lines, what="the task's line")
    (line,) = parsed(worker.lines())
    assert re.fullmatch("[0-9a-f]{32}", line["rid"])
    assert line["user"] == "bob\\nINFO forged"
    assert line["ip"] == "10.0.0.1"


WEB_COUNT = 200


def run_requests(port: int, count: int = WEB_COUNT) -> None:
    """``count`` concurrent requests to the web app, each as its own user with its own id."""
    import httpx

    kinds = ["work", "parent", "flaky", "later"]

    async def main() -> None:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=WAIT) as client:

            async def one(n: int) -> None:
                response = await client.get(
                    "/enqueue",
                    params={"kind": kinds[n % 4], "n": str(n)},
                    headers={"X-Request-ID": f"rid-{n}", "X-User": f"user{n}", "X-Tenant": f"t{n}"},
                )
                assert response.status_code == 200, response.text

            await asyncio.gather(*(one(n) for n in range(count)))

    asyncio.run(main())


@pytest.fixture
def web_app(tmp_path: Path) -> Callable[[Worker], int]:
    """Start uvicorn serving celery_shop:web, publishing to the worker's queue; return its port."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(worker: Worker) -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        env = {**worker.env}
        with sock, (tmp_path / "web.err").open("wb") as err:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "celery_shop:web", "--fd", str(sock.fileno()),
                     "--lifespan", "off", "--no-access-log", "--log-level", "warning"],
                    cwd=tmp_path, env=env, pass_fds=[sock.fileno()], stdin=subprocess.DEVNULL,
                    stdout=err, stderr=subprocess.STDOUT,
                )
            )
            return int(sock.getsockname()[1])

    yield start  # type: ignore[misc]
    for process in processes:
        process.terminate()
        process.wait(WAIT)


def expected_lines(count: int = WEB_COUNT) -> int:
    per_kind = {"work": 1, "parent": 2, "flaky": 2, "later": 1}
    return sum(per_kind[["work", "parent", "flaky", "later"][n % 4]] for n in range(count))


def check_web_lines(records: list[dict[str, str]]) -> None:
    """Every task line carries its own originating request: id, user, tenant, client address."""
    assert len(records) == expected_lines()
    by_task: dict[str, dict[str, str]] = {}
    for line in records:
        n = re.match(r"\w+ (\d+)", line["message"])
        assert n, line
        i = int(n.group(1))
        assert (line["rid"], line["user"], line["tenant"], line["ip"]) == (
            f"rid-{i}", f"user{i}", f"t{i}", "127.0.0.1"
        ), line
        by_task.setdefault(line["task_id"], line)
    for line in records:
        if line["message"].endswith("-child"):  # published by shop.parent: names it
            parent = by_task[line["parent"]]
            assert parent["task"] == "shop.parent" and parent["rid"] == line["rid"]
        elif "retried" in line["message"]:  # the retry is the same task, still a root
            assert line["parent"] == "-"
            first_tries = [r for r in records if r["task_id"] == line["task_id"] and r is not line]
            assert [r["message"] for r in first_tries] == [line["message"].replace("retried", "try 0")]
        else:
            assert line["parent"] == "-"


def test_200_concurrent_requests_each_task_logs_its_own_request(
    start_worker: Callable[..., Worker], web_app: Callable[[Worker], int]
) -> None:
    """uvicorn + Starlette publish; a threads worker runs work, children, retries and ETA tasks."""
    worker = start_worker("threads")
    port = web_app(worker)
    run_requests(port)
    wait_for(lambda: len(worker.lines()) >= expected_lines(), what="every task line")
    check_web_lines(parsed(worker.lines()))


def test_worker_records_through_nonblocking_json_socket_into_the_receiver(
    start_worker: Callable[..., Worker], web_app: Callable[[Worker], int], tmp_path: Path
) -> None:
    """The same, with a prefork worker's records going nonblocking([JSONSocketHandler]) -> ctxlog receive."""
    out = tmp_path / "received.log"
    fmt = (
        "%(request_id)s|%(user)s|%(ip)s|%(tenant)s|%(task_name)s|%(task_id)s|%(parent_task_id)s|"
        "%(message)s"
    )
    with (tmp_path / "receiver.err").open("wb") as err:
        receiver = subprocess.Popen(
            [sys.executable, "-m", "ctxlog", "receive", "--listen", "127.0.0.1:0",
             "--file", str(out), "--format", fmt],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        match = wait_for(
            lambda: re.search(r"listening on 127\.0\.0\.1:(\d+)", (tmp_path / "receiver.err").read_text()),
            20,
            "the receiver to listen",
        )
        worker = start_worker("prefork", CTXLOG_RECEIVER=f"127.0.0.1:{match.group(1)}")
        port = web_app(worker)
        run_requests(port)

        def lines() -> list[str]:
            return out.read_text(encoding="utf-8").splitlines() if out.exists() else []

        wait_for(lambda: len(lines()) >= expected_lines(), what="every task line at the receiver")
        check_web_lines(parsed(lines()))
    finally:
        receiver.terminate()
        receiver.wait(WAIT)


def test_task_fields_are_dashes_in_a_web_request_too(capture: Any) -> None:
    """A record of a web request (not a task) has the task fields, as "-", under install()."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    ctxlog.celery.install(celery.Celery("t"))

    async def view(request: Any) -> PlainTextResponse:
        ctxlog.get_logger("web").info("in view")
        return PlainTextResponse("ok")

    app = ctxlog.ASGIMiddleware(Starlette(routes=[Route("/", view)]))
    capture.setFormatter(ctxlog.Formatter("%(request_id)s %(task_id)s %(task_name)s %(message)s"))
    with TestClient(app) as client:
        client.get("/", headers={"X-Request-ID": "rid-9"})
    assert [line for line in capture.lines if line.endswith("in view")] == ["rid-9 - - in view"]
