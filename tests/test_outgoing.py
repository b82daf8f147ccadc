"""
ctxlog.outgoing_headers() and its httpx/requests glue: the request id crosses to another service.

The end-to-end test runs two real services under uvicorn (tests/apps/outgoing_services.py): 200
concurrent requests reach the first, which calls the second with httpx (async and sync clients)
or requests; every line the second writes carries the first's request id and trace.
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

import httpx
import pytest
import requests

import ctxlog
import ctxlog.outgoing
from ctxlog.testing import request

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
WAIT = 60.0
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01")


def test_outside_a_request_there_is_nothing_to_send() -> None:
    assert ctxlog.outgoing_headers() == {}


def test_inside_a_request_the_id_goes_under_the_named_header() -> None:
    with request(request_id="rid-1"):
        assert ctxlog.outgoing_headers() == {"X-Request-ID": "rid-1"}
        assert ctxlog.outgoing_headers(request_id_header="X-Correlation-ID") == {
            "X-Correlation-ID": "rid-1"
        }


def test_a_request_in_a_trace_sends_a_child_traceparent() -> None:
    with request(request_id="rid-1", trace_id=TRACE, span_id="00f067aa0ba902b7"):
        first = TRACEPARENT.fullmatch(ctxlog.outgoing_headers()["traceparent"])
        second = TRACEPARENT.fullmatch(ctxlog.outgoing_headers()["traceparent"])
    assert first and second
    assert first.group(1) == second.group(1) == TRACE  # the same trace
    assert first.group(2) != "00f067aa0ba902b7"  # a new span, child of the request's
    assert first.group(2) != second.group(2)  # one per call


def test_a_trace_id_that_is_not_one_is_not_sent() -> None:
    with request(request_id="rid-1", trace_id="not-a-trace"):
        assert "traceparent" not in ctxlog.outgoing_headers()


def test_httpx_hooks_add_the_headers_and_keep_the_callers() -> None:
    seen: list[httpx.Headers] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.headers)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(handler), event_hooks=ctxlog.outgoing.httpx_hooks())
    with request(request_id="rid-1"):
        client.get("http://service.test/")
        client.get("http://service.test/", headers={"x-request-id": "mine"})
    client.get("http://service.test/")
    assert seen[0]["x-request-id"] == "rid-1"
    assert seen[1].get_list("x-request-id") == ["mine"]
    assert "x-request-id" not in seen[2]


def test_httpx_async_hooks_see_the_task_that_sends() -> None:
    seen: dict[str, str] = {}

    async def handler(req: httpx.Request) -> httpx.Response:
        seen[req.url.path] = req.headers.get("x-request-id", "")
        return httpx.Response(200)

    async def main() -> None:
        hooks = ctxlog.outgoing.httpx_async_hooks()
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), event_hooks=hooks) as client:

            async def call(n: int) -> None:
                with request(request_id=f"rid-{n}"):
                    await asyncio.sleep(0)
                    await client.get(f"http://service.test/{n}")

            await asyncio.gather(*(call(n) for n in range(20)))

    asyncio.run(main())
    assert seen == {f"/{n}": f"rid-{n}" for n in range(20)}


def test_requests_session_adds_the_headers() -> None:
    session = ctxlog.outgoing.Session()
    assert isinstance(session, requests.Session)
    with request(request_id="rid-1"):
        prepared = session.prepare_request(requests.Request("GET", "http://service.test/"))
        mine = session.prepare_request(
            requests.Request("GET", "http://service.test/", headers={"X-Request-ID": "mine"})
        )
    outside = session.prepare_request(requests.Request("GET", "http://service.test/"))
    assert prepared.headers["X-Request-ID"] == "rid-1"
    assert mine.headers["X-Request-ID"] == "mine"
    assert "X-Request-ID" not in outside.headers


def test_import_ctxlog_outgoing_imports_no_client_library() -> None:
    code = "import sys, ctxlog, ctxlog.outgoing; print('requests' in sys.modules, 'httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]


# --- two real services under uvicorn ------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., int]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(app: str, **env: str) -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(APPS), str(ROOT)]), **env}
        with sock, (tmp_path / f"{app}.err").open("wb") as err:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", f"outgoing_services:{app}", "--fd",
                     str(sock.fileno()), "--lifespan", "off", "--no-access-log", "--log-level",
                     "warning"],
                    cwd=tmp_path, env=environment, pass_fds=[sock.fileno()],
                    stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                )
            )
            return int(sock.getsockname()[1])

    yield start
    for process in processes:
        process.terminate()
        process.wait(WAIT)


def test_200_concurrent_calls_reach_the_second_service_with_their_own_id(
    serve: Callable[..., int], tmp_path: Path
) -> None:
    log_path = tmp_path / "downstream.log"
    downstream = serve("downstream", DOWNSTREAM_LOG=str(log_path))
    upstream = serve("upstream", DOWNSTREAM_PORT=str(downstream))
    routes = ["/httpx-async", "/httpx-sync", "/requests"]
    count = 200

    async def main() -> None:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{upstream}", limits=limits, timeout=WAIT) as client:

            async def one(n: int) -> None:
                trace = f"{n:032x}".replace("0", "a")
                response = await client.get(
                    routes[n % 3],
                    params={"n": str(n)},
                    headers={"X-Request-ID": f"rid-{n}", "traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
                )
                assert response.text == "done"

            await asyncio.gather(*(one(n) for n in range(count)))

    asyncio.run(main())

    def lines() -> list[str]:
        return log_path.read_text(encoding="utf-8").splitlines() if log_path.exists() else []

    wait_for(lambda: len(lines()) >= count, what="a line per call at the second service")
    seen = {}
    for line in lines():
        request_id, trace_id, span_id, message = line.split("|")
        n = int(message.split()[1])
        seen[n] = (request_id, trace_id)
        assert span_id != "00f067aa0ba902b7"  # a span of the first service, not its caller's
    assert seen == {n: (f"rid-{n}", f"{n:032x}".replace("0", "a")) for n in range(count)}
