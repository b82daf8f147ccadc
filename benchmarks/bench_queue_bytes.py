"""
Cost of the byte cap of nonblocking(): the queue as it is beside the queue before ``max_bytes``.

``ctxlog/queue.py`` as it was at commit 64810c4 is loaded from ``git show`` as a module of its own
(``_queue_before``) and runs beside the current one, interleaved, in the same process. Each has
a ``nonblocking([counter], maxsize=1_000_000)`` handler in front of a target that only counts,
on a logger of its own, inside the same request context (ip, user, request id bound).

``call-*``
    One operation is one ``log.info("record %d of the run", i)`` (``call-extra-*``: with
    ``extra=`` three short fields): the producer's side only, what the request pays. The
    listener drains the queue after each batch, outside the timed loop.
``through-*``
    One operation is a burst of 1,000 records from the first ``log.info()`` until the target
    has counted the last (records/s through the queue and its thread; a burst of that size
    wakes an idle listener at once, so its 5-100 ms poll is not measured).

Each contestant's target is checked to have received every record (nothing dropped).

Run: python benchmarks/bench_queue_bytes.py [--quick] [--json PATH]
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from time import perf_counter_ns
from types import ModuleType
from typing import Any

from _harness import Contestant, check, measure, parse_args, report

from ctxlog import queue as queue_after
from ctxlog.context import RequestState, request_var

BEFORE = "64810c4"
BURST = 1000
ROOT = Path(__file__).resolve().parent.parent


def load_before() -> ModuleType:
    """Return ctxlog/queue.py as it was at BEFORE, as a module named _queue_before."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:ctxlog/queue.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # The stamp moved since (ctxlog.filters -> ctxlog.record.stamp); both sides use today's.
    source = source.replace(
        "from ctxlog.filters import stamp", "from ctxlog.record.stamp import stamp"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "_queue_before.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location("_queue_before", path)
        if spec is None or spec.loader is None:
            msg = f"cannot load {path}"
            raise ImportError(msg)
        module = importlib.util.module_from_spec(spec)
        sys.modules["_queue_before"] = module
        spec.loader.exec_module(module)
    return module


class Counter(logging.Handler):
    """Count records; set ``done`` when the expected count is reached."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.expect = -1
        self.done = threading.Event()

    def reset(self, expect: int) -> None:
        self.done.clear()
        self.count = 0
        self.expect = expect

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.count == self.expect:
            self.done.set()


class Pipe:
    """A logger, a nonblocking() handler of one queue module, and its counting target."""

    def __init__(self, name: str, module: Any) -> None:
        self.counter = Counter()
        self.handler = module.nonblocking([self.counter], maxsize=1_000_000)
        self.log = logging.getLogger(f"bench.queue_bytes.{name}")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)
        self.log.addHandler(self.handler)
        self.delivered = 0

    def settle(self) -> None:
        """Wait until the target has everything logged so far."""
        check(self.counter.done.wait(60), f"{self.log.name}: records were not delivered")

    def calls(self, extra: dict[str, str] | None) -> Any:
        info, counter = self.log.info, self.counter

        def run(n: int) -> int:
            counter.reset(n)
            started = perf_counter_ns()
            for i in range(n):
                info("record %d of the run", i, extra=extra)
            elapsed = perf_counter_ns() - started
            self.settle()
            return elapsed

        return run

    def through(self) -> Any:
        info, counter = self.log.info, self.counter

        def run(n: int) -> int:
            counter.reset(n * BURST)
            started = perf_counter_ns()
            for i in range(n * BURST):
                info("record %d of the run", i)
            self.settle()
            return perf_counter_ns() - started

        return run


def build() -> tuple[list[Contestant], list[Pipe]]:
    before = load_before()
    pipes = {"before": Pipe("before", before), "after": Pipe("after", queue_after)}
    extra = {"order": "A-1042", "tenant": "shop", "step": "payment"}
    contestants: list[Contestant] = []
    for kind, make in (
        ("call", lambda pipe: pipe.calls(None)),
        ("call-extra", lambda pipe: pipe.calls(extra)),
        ("through", lambda pipe: pipe.through()),
    ):
        base = f"{kind}-before"
        contestants.append(Contestant(base, make(pipes["before"]), None, kind))
        contestants.append(Contestant(f"{kind}-after", make(pipes["after"]), base, kind))
    return contestants, list(pipes.values())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.strip().splitlines()[0], argv)
    state = RequestState(
        {
            "ip": "203.0.113.7",
            "user": "alice",
            "request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "method": "GET",
            "path": "/checkout",
        }
    )
    token = request_var.set(state)
    pipes: list[Pipe] = []
    try:
        contestants, pipes = build()
        rounds = measure(contestants, args.seconds, seed=args.seed)
        for pipe in pipes:
            stats = pipe.handler.stats()
            check(stats["dropped"] == 0, f"{pipe.log.name}: dropped {stats['dropped']}")
        report("nonblocking(): the queue with max_bytes vs before", contestants, rounds, args)
    finally:
        request_var.reset(token)
        for pipe in pipes:
            pipe.handler.close()


if __name__ == "__main__":
    main()
