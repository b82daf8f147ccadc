"""
Cost of ctxlog.celery per task published and per task run, and of ctxlog.outgoing_headers().

Publishing: ``task.apply_async()`` to Celery's in-memory transport, inside a request, with and
without ``ctxlog.celery.install()`` (installed and uninstalled around each batch, outside the
timed loop). Running: ``task.apply()`` of a task that does nothing (Celery's own tracer, with
its prerun and postrun signals), with and without. ``outgoing_headers()``: per call inside a
request, beside the floor, a dict of one header read from one ContextVar.
"""

from __future__ import annotations

import sys
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Contestant, measure, parse_args, report
from celery import Celery

import ctxlog
import ctxlog.celery
from ctxlog.testing import request

app = Celery("bench", broker="memory://")
app.conf.update(broker_connection_retry_on_startup=True)


@app.task(name="bench.noop")
def noop(n: Any) -> None:
    return None


def publisher(installed: bool) -> Any:
    def run(n: int) -> int:
        if installed:
            ctxlog.celery.install(app, fields=("tenant",))
        else:
            ctxlog.celery.uninstall()
        with request(ip="203.0.113.7", user="alice", request_id="rid-1", tenant="acme"):
            start = time.perf_counter_ns()
            for _ in range(n):
                noop.apply_async((1,))
            elapsed = time.perf_counter_ns() - start
        ctxlog.celery.uninstall()
        with app.connection_for_write() as connection:  # empty the in-memory queue
            connection.default_channel.queue_purge("celery")
        return elapsed

    return run


HEADERS = {
    "ctxlog_request_id": "rid-1",
    "ctxlog_user": "alice",
    "ctxlog_ip": "203.0.113.7",
    "ctxlog_tenant": "acme",
}


def runner(installed: bool) -> Any:
    def run(n: int) -> int:
        if installed:
            ctxlog.celery.install(app, fields=("tenant",))
        else:
            ctxlog.celery.uninstall()
        start = time.perf_counter_ns()
        for _ in range(n):
            noop.apply((1,), headers=HEADERS)
        elapsed = time.perf_counter_ns() - start
        ctxlog.celery.uninstall()
        return elapsed

    return run


floor_id: ContextVar[str | None] = ContextVar("floor_id", default=None)


def floor_headers() -> dict[str, str]:
    request_id = floor_id.get()
    return {} if request_id is None else {"X-Request-ID": request_id}


def calls(function: Any) -> Any:
    def run(n: int) -> int:
        token = floor_id.set("rid-1")
        with request(request_id="rid-1"):
            start = time.perf_counter_ns()
            for _ in range(n):
                function()
            elapsed = time.perf_counter_ns() - start
        floor_id.reset(token)
        return elapsed

    return run


def verify() -> None:
    ctxlog.celery.install(app, fields=("tenant",))
    with request(ip="203.0.113.7", user="alice", request_id="rid-1", tenant="acme"):
        assert ctxlog.celery.message_headers() == HEADERS, ctxlog.celery.message_headers()
        assert ctxlog.outgoing_headers() == {"X-Request-ID": "rid-1"}
    ctxlog.celery.uninstall()
    token = floor_id.set("rid-1")
    assert floor_headers() == {"X-Request-ID": "rid-1"}
    floor_id.reset(token)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.strip().splitlines()[0], argv)
    verify()
    contestants = [
        Contestant("publish, no ctxlog", publisher(installed=False), group="publish"),
        Contestant("publish, install()", publisher(installed=True), "publish, no ctxlog", "publish"),
        Contestant("run, no ctxlog", runner(installed=False), group="run"),
        Contestant("run, install()", runner(installed=True), "run, no ctxlog", "run"),
        Contestant("floor: one ContextVar", calls(floor_headers), group="outgoing"),
        Contestant(
            "outgoing_headers()", calls(ctxlog.outgoing_headers), "floor: one ContextVar", "outgoing"
        ),
    ]
    rounds = measure(contestants, args.seconds, seed=args.seed)
    report("ctxlog.celery per task, outgoing_headers() per call", contestants, rounds, args)


if __name__ == "__main__":
    main()
