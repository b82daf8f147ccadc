"""
Delivery to slow destinations: what a log call costs, how fast a listener drains, what overload costs.

Three benchmarks, each printing a table (``--only`` picks some):

``latency``
    One ``log.error(...)`` inside a request, with a mail server behind that takes 200 ms per
    DATA (aiosmtpd in a child process, see ``_smtp.py``). Contestants, all with the same
    Formatter: ``memory`` (the reference: a handler appending the formatted line to a list),
    ``smtp-direct`` (stdlib ``SMTPHandler`` on the logger; only a few calls, 200 ms each),
    ``stdlib-queue-smtp`` (stdlib ``QueueHandler(queue.Queue(-1))`` + ``QueueListener`` in
    front of ``SMTPHandler``), ``nb-digest`` (``ctxlog.nonblocking([DigestSMTPHandler(...,
    interval=1.0)])``) and ``nb-smtp`` (``ctxlog.nonblocking([SMTPHandler])``). Each round calls
    every contestant once, in a fresh random order, with a 2-5 ms pause before each call (errors
    are sporadic); every call is timed alone with ``perf_counter_ns``. Reported: p50 and p99 per
    contestant and their ratios to ``memory``'s. Then every handler is closed and the server is
    asked what arrived: one e-mail per record for SMTPHandler, every record inside the digests
    for DigestSMTPHandler.

``throughput``
    Records/s through one listener to a handler that only counts, from the first ``log.info``
    to the last record handled, N records per contestant per round, interleaved rounds:
    stdlib ``QueueHandler`` + ``QueueListener`` on a ``queue.SimpleQueue`` and on a
    ``queue.Queue``, ``ctxlog.nonblocking([counter], maxsize=N+...)`` and ctxlog's
    ``QueueHandler`` + ``QueueListener`` on a ``queue.Queue``. A round that lost a record is
    reported and not counted.

``memory``
    10x overload: a target that takes 1 ms per record, two producer threads logging 5,000
    records/s each, for 30 s; once behind ``nonblocking(maxsize=10_000,
    overflow="drop_oldest")``, once behind the stdlib unbounded ``QueueHandler`` +
    ``QueueListener``; each in a fresh child process (tracemalloc off). RSS from
    ``/proc/self/statm`` and the queue length every second, the longest queue seen (sampled every
    5 ms), and the accounting: produced == delivered + dropped + still queued, exactly, once the
    producers stopped and the queue was drained (the target is made fast for the drain).

Run: python benchmarks/bench_delivery.py [--quick] [--json PATH] [--only latency,throughput,memory]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import logging.handlers
import os
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import ctxlog
from ctxlog.context import request_var
from ctxlog.handlers import DigestSMTPHandler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _smtp import SlowSMTPServer

FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
FROM, TO = "app@example.com", ["ops@example.com"]
SMTP_DELAY = 0.2


# --- common -------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    try:
        from _harness import environment as harness_environment

        return harness_environment()
    except Exception:
        import platform

        return {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        }


def percentile(values: list[float], p: float) -> float:
    """Linear-interpolated percentile, ``p`` in 0..100."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    return percentile(values, 25), percentile(values, 50), percentile(values, 75)


def request_state() -> Any:
    """The RequestState of a real request through ctxlog.ASGIMiddleware (with a bound user)."""
    captured: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ctxlog.bind(user="alice")
        captured.append(request_var.get())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/checkout",
        "raw_path": b"/checkout",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"example.com"),
            (b"x-forwarded-for", b"203.0.113.7, 10.0.0.2"),
            (b"x-request-id", b"4bf92f3577b34da6a3ce929d0e0e4736"),
        ],
        "client": ("10.1.2.3", 54321),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(ctxlog.ASGIMiddleware(app, trusted_proxies=["10.0.0.0/8"])(scope, receive, send))
    return captured[0]


def make_logger(name: str, handler: logging.Handler, level: int = logging.DEBUG) -> logging.Logger:
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    return log


# --- 1. latency behind a 200 ms SMTP server -----------------------------------------------------


class MemoryHandler(logging.Handler):
    """The reference: keep the formatted line in a list."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def smtp_handler(port: int, subject: str) -> logging.handlers.SMTPHandler:
    handler = logging.handlers.SMTPHandler(("127.0.0.1", port), FROM, TO, subject, timeout=10.0)
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def bench_latency(args: argparse.Namespace) -> dict[str, Any]:
    rounds = args.rounds or (20 if args.quick else 1000)
    warmup = 3 if args.quick else 20
    direct_calls = 3 if args.quick else 20
    rng = random.Random(args.seed)
    server = SlowSMTPServer(SMTP_DELAY)
    server.start()
    try:
        return _run_latency(
            server, rounds=rounds, warmup=warmup, direct_calls=direct_calls, rng=rng
        )
    finally:
        server.stop()


def _run_latency(
    server: SlowSMTPServer, *, rounds: int, warmup: int, direct_calls: int, rng: random.Random
) -> dict[str, Any]:
    port = server.port
    memory = MemoryHandler()
    memory.setFormatter(logging.Formatter(FORMAT))
    direct = smtp_handler(port, "direct")
    stdlib_target = smtp_handler(port, "stdlib queue")
    stdlib_queue: queue.Queue[Any] = queue.Queue(-1)
    stdlib_qh = logging.handlers.QueueHandler(stdlib_queue)
    stdlib_ql = logging.handlers.QueueListener(stdlib_queue, stdlib_target)
    stdlib_ql.start()
    digest = DigestSMTPHandler(
        ("127.0.0.1", port), FROM, TO, "digest", interval=1.0, capacity=10_000, timeout=10.0
    )
    digest.setFormatter(logging.Formatter(FORMAT))
    nb_digest = ctxlog.nonblocking([digest])
    nb_smtp_target = smtp_handler(port, "nb smtp")
    nb_smtp = ctxlog.nonblocking([nb_smtp_target])

    handlers = {
        "memory": memory,
        "smtp-direct": direct,
        "stdlib-queue-smtp": stdlib_qh,
        "nb-digest": nb_digest,
        "nb-smtp": nb_smtp,
    }
    loggers = {name: make_logger(f"bench.latency.{name}", h) for name, h in handlers.items()}
    samples: dict[str, list[int]] = {name: [] for name in handlers}
    sent = dict.fromkeys(handlers, 0)
    direct_rounds = {round(i * rounds / direct_calls) for i in range(direct_calls)}

    def call(name: str, record: bool) -> None:
        log = loggers[name]
        seq = sent[name]
        time.sleep(rng.uniform(0.002, 0.005))
        t0 = perf_counter_ns()
        log.error("payment failed for order %s: contestant=%s seq=%d", "A-1042", name, seq)
        elapsed = perf_counter_ns() - t0
        sent[name] = seq + 1
        if record:
            samples[name].append(elapsed)

    token = request_var.set(request_state())
    started = time.monotonic()
    try:
        for r in range(warmup + rounds):
            measured = r >= warmup
            names = [n for n in handlers if n != "smtp-direct"]
            if (measured and (r - warmup) in direct_rounds) or r == 0:
                names.append("smtp-direct")
            rng.shuffle(names)
            gc.collect()
            for name in names:
                call(name, measured)
    finally:
        request_var.reset(token)
    measuring_s = time.monotonic() - started

    # Close everything and wait for delivery (the queued SMTP sends take 200 ms each).
    close_started = time.monotonic()
    nb_stats = {"nb-digest": None, "nb-smtp": None}
    nb_digest.close()
    left_in_digest = len(digest._buffer)
    digest.close()
    nb_stats["nb-digest"] = nb_digest.stats()
    nb_smtp.close()
    nb_stats["nb-smtp"] = nb_smtp.stats()
    stdlib_ql.stop()
    stdlib_target.close()
    direct.close()
    expected = {name: n for name, n in sent.items() if name != "memory"}
    stats = server.wait_for(expected, timeout=60.0)
    drain_s = time.monotonic() - close_started

    base = samples["memory"]
    base_p50, base_p99 = percentile(base, 50), percentile(base, 99)
    rows = []
    for name in handlers:
        values = samples[name]
        got = stats["contestants"].get(name, {})
        if name == "memory":
            delivered, messages = len(memory.lines), 0
        else:
            delivered, messages = got.get("unique", 0), got.get("messages", 0)
        p50, p99 = percentile(values, 50), percentile(values, 99)
        rows.append(
            {
                "name": name,
                "calls": len(values),
                "p50_us": p50 / 1e3,
                "p99_us": p99 / 1e3,
                "max_us": max(values) / 1e3,
                "p50_ratio": p50 / base_p50,
                "p99_ratio": p99 / base_p99,
                "sent": sent[name],
                "delivered": delivered,
                "duplicates": got.get("total", 0) - got.get("unique", 0),
                "emails": messages,
            }
        )

    print(
        f"\n[latency] one log.error() inside a request, SMTP server {SMTP_DELAY * 1000:.0f} ms "
        f"per DATA; {rounds} rounds (+{warmup} warm-up), 2-5 ms pause before each call"
    )
    header = (
        f"{'contestant':<18} {'calls':>5} {'p50 µs':>9} {'p99 µs':>10} {'p50 x':>7} "
        f"{'p99 x':>7} {'max µs':>10}  {'delivered/sent':>14} {'e-mails':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['name']:<18} {row['calls']:>5} {row['p50_us']:>9.1f} {row['p99_us']:>10.1f} "
            f"{row['p50_ratio']:>6.2f}x {row['p99_ratio']:>6.2f}x {row['max_us']:>10.1f}  "
            f"{row['delivered']:>6}/{row['sent']:<7} {row['emails']:>7}"
        )
    lost = [r["name"] for r in rows if r["delivered"] != r["sent"] or r["duplicates"]]
    print(
        f"measuring {measuring_s:.1f} s; close + delivery {drain_s:.1f} s; "
        f"nb-digest: {digest.sent} digests, {digest.records_sent} records, "
        f"omitted {digest.omitted}, left in digest buffer after nonblocking.close(): "
        f"{left_in_digest}"
    )
    for name, st in nb_stats.items():
        print(
            f"{name} stats: queued={st['queued']} delivered={st['delivered']} "
            f"dropped={st['dropped']} failed={st['failed']}"
        )
    print("ALL DELIVERED" if not lost else f"RECORDS LOST OR DUPLICATED: {lost} — not a result")
    return {
        "rounds": rounds,
        "warmup": warmup,
        "rows": rows,
        "server": stats,
        "nonblocking_stats": nb_stats,
        "left_in_digest_after_nb_close": left_in_digest,
        "digest": {
            "sent": digest.sent,
            "records_sent": digest.records_sent,
            "omitted": digest.omitted,
            "failures": digest.failures,
        },
        "all_delivered": not lost,
        "measuring_s": measuring_s,
        "drain_s": drain_s,
        "raw_ns": samples,
    }


# --- 2. throughput of one listener --------------------------------------------------------------


class Counter(logging.Handler):
    """Count records; note the time of the expected last one."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.expect = 0
        self.t_last = 0
        self.done = threading.Event()

    def reset(self, expect: int) -> None:
        self.count = 0
        self.expect = expect
        self.t_last = 0
        self.done.clear()

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.count == self.expect:
            self.t_last = perf_counter_ns()
            self.done.set()


class Pipe:
    """One throughput contestant: a logger, the counting target, and how to stop it."""

    def __init__(
        self,
        name: str,
        counter: Counter,
        handler: logging.Handler,
        stop: Callable[[], None],
        dropped: Callable[[], int],
    ) -> None:
        self.name = name
        self.counter = counter
        self.log = make_logger(f"bench.throughput.{name}", handler, logging.INFO)
        self.stop = stop
        self.dropped = dropped
        self.rates: list[float] = []
        self.put_rates: list[float] = []
        self.lost = 0


def make_pipes(n: int) -> list[Pipe]:
    pipes = []
    for name, make_queue in (
        ("stdlib-SimpleQueue", queue.SimpleQueue),
        ("stdlib-Queue", lambda: queue.Queue(-1)),
    ):
        counter = Counter()
        q = make_queue()
        listener = logging.handlers.QueueListener(q, counter)
        listener.start()
        pipes.append(
            Pipe(name, counter, logging.handlers.QueueHandler(q), listener.stop, lambda: 0)
        )
    counter = Counter()
    nb = ctxlog.nonblocking([counter], maxsize=n + 10_000)
    pipes.append(
        Pipe("ctxlog-nonblocking", counter, nb, nb.close, lambda nb=nb: nb.stats()["dropped"])
    )
    counter = Counter()
    q2: queue.Queue[Any] = queue.Queue(-1)
    listener2 = ctxlog.QueueListener(q2, counter)
    listener2.start()
    pipes.append(
        Pipe("ctxlog-QH+QL-Queue", counter, ctxlog.QueueHandler(q2), listener2.stop, lambda: 0)
    )
    return pipes


def run_pipe(pipe: Pipe, n: int, timeout: float) -> tuple[float, float, bool]:
    counter, info = pipe.counter, pipe.log.info
    counter.reset(n)
    dropped_before = pipe.dropped()
    gc.collect()
    t0 = perf_counter_ns()
    for i in range(n):
        info("record %d of the throughput run", i)
    t_put = perf_counter_ns()
    ok = counter.done.wait(timeout)
    if not ok or pipe.dropped() != dropped_before:
        deadline = time.monotonic() + 1.0
        while counter.count < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return 0.0, 0.0, False
    return n / (counter.t_last - t0) * 1e9, n / (t_put - t0) * 1e9, True


def bench_throughput(args: argparse.Namespace) -> dict[str, Any]:
    n = args.records or (10_000 if args.quick else 100_000)
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 60.0)
    min_rounds = 2 if args.quick else 5
    max_rounds = 1000
    rng = random.Random(args.seed)
    pipes = make_pipes(n)
    token = request_var.set(request_state())
    try:
        for pipe in pipes:  # warm-up
            run_pipe(pipe, max(1000, n // 10), 60.0)
        rounds = 0
        deadline = time.monotonic() + seconds
        while rounds < max_rounds and (rounds < min_rounds or time.monotonic() < deadline):
            order = list(pipes)
            rng.shuffle(order)
            results = {p.name: run_pipe(p, n, 120.0) for p in order}
            for pipe in pipes:
                rate, put_rate, ok = results[pipe.name]
                if ok:
                    pipe.rates.append(rate)
                    pipe.put_rates.append(put_rate)
                else:
                    pipe.lost += 1
            rounds += 1
    finally:
        request_var.reset(token)
        for pipe in pipes:
            pipe.stop()
    complete = all(not p.lost for p in pipes)
    by_name = {p.name: p for p in pipes}

    def ratios(name: str, base: str) -> list[float]:
        return [a / b for a, b in zip(by_name[name].rates, by_name[base].rates, strict=True)]

    print(
        f"\n[throughput] {n:,} log.info() records per contestant per round, to a handler that "
        f"only counts; {rounds} interleaved rounds; inside a request"
    )
    header = (
        f"{'contestant':<20} {'records/s':>10} {'caller rec/s':>12} "
        f"{'vs SimpleQueue (IQR)':>22} {'vs Queue (IQR)':>22} {'lost rounds':>11}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for pipe in pipes:
        row: dict[str, Any] = {
            "name": pipe.name,
            "lost_rounds": pipe.lost,
            "records_per_s": statistics.median(pipe.rates) if pipe.rates else 0,
            "caller_records_per_s": statistics.median(pipe.put_rates) if pipe.put_rates else 0,
        }
        cells = []
        for base in ("stdlib-SimpleQueue", "stdlib-Queue"):
            if complete:
                q1, med, q3 = quartiles(ratios(pipe.name, base))
                row[f"ratio_vs_{base}"] = [q1, med, q3]
                cells.append(f"{med:.3f}x ({q1:.2f}-{q3:.2f})")
            else:
                cells.append("n/a")
        rows.append(row)
        print(
            f"{pipe.name:<20} {row['records_per_s']:>10,.0f} {row['caller_records_per_s']:>12,.0f}"
            f" {cells[0]:>22} {cells[1]:>22} {pipe.lost:>11}"
        )
    print(
        "nothing dropped"
        if complete
        else "RECORDS LOST in some rounds — those rounds are no result"
    )
    return {
        "records_per_round": n,
        "rounds": rounds,
        "rows": rows,
        "complete": complete,
        "raw": {
            p.name: {"records_per_s": p.rates, "caller_records_per_s": p.put_rates} for p in pipes
        },
    }


# --- 3. memory under 10x overload ---------------------------------------------------------------


def rss_bytes() -> int:
    statm = Path("/proc/self/statm").read_text(encoding="ascii")
    return int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE")


class SlowTarget(logging.Handler):
    """About 1,000 records/s: sleeps 1 ms per record (until made fast for the final drain)."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = True
        self.count = 0
        self.other = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "bench.overload":
            self.count += 1
        else:  # ctxlog's drop report
            self.other += 1
        if self.slow:
            time.sleep(0.001)


def overload_child(variant: str, seconds: float, rate: int, producers: int) -> dict[str, Any]:
    """Run one overload variant in this process; return its series and counters."""
    target = SlowTarget()
    if variant == "ctxlog":
        nb = ctxlog.nonblocking([target], maxsize=10_000, overflow="drop_oldest")
        handler: logging.Handler = nb

        def counters() -> dict[str, int]:
            st = nb.stats()
            return {
                "queued": st["queued"],
                "delivered": st["delivered"],
                "dropped": st["dropped"],
                "failed": st["failed"],
                "in_flight": int(nb.workers[0].busy),
            }

        def finish() -> None:
            nb.close()
    else:
        q: queue.Queue[Any] = queue.Queue(-1)
        handler = logging.handlers.QueueHandler(q)
        listener = logging.handlers.QueueListener(q, target)
        listener.start()

        def counters() -> dict[str, int]:
            return {
                "queued": q.qsize(),
                "delivered": target.count,
                "dropped": 0,
                "failed": 0,
                "in_flight": 0,
            }

        def finish() -> None:
            listener.stop()

    log = make_logger("bench.overload", handler, logging.INFO)
    token = request_var.set(request_state())
    gc.collect()
    time.sleep(0.5)
    rss_start = rss_bytes()
    stop = threading.Event()
    produced = [0] * producers
    per_thread = rate / producers

    def produce(i: int) -> None:
        n = 0
        start = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * per_thread)
            for _ in range(min(due - n, 1000)):
                log.info("overload record %d from producer %d", n, i)
                n += 1
                produced[i] = n
            time.sleep(0.001)

    threads = [
        threading.Thread(target=produce, args=(i,), name=f"producer-{i}", daemon=True)
        for i in range(producers)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    series = []
    max_queued = 0
    next_sample = started + 1.0
    end = started + seconds
    while True:
        now = time.monotonic()
        max_queued = max(max_queued, counters()["queued"])
        if now >= next_sample:
            c = counters()
            series.append(
                {
                    "t": round(now - started, 2),
                    "rss_mb": rss_bytes() / 2**20,
                    "queued": c["queued"],
                    "produced": sum(produced),
                    "delivered": c["delivered"],
                    "dropped": c["dropped"],
                }
            )
            next_sample += 1.0
        if now >= end:
            break
        time.sleep(0.005)
    stop.set()
    for thread in threads:
        thread.join(10.0)
    at_stop = {"produced": sum(produced), **counters(), "rss_mb": rss_bytes() / 2**20}
    target.slow = False  # drain what is queued at full speed
    drain_started = time.monotonic()
    finish()
    drain_s = time.monotonic() - drain_started
    request_var.reset(token)
    final = {
        "produced": sum(produced),
        **counters(),
        "target_count": target.count,
        "drop_reports": target.other,
    }
    final["balanced"] = (
        final["produced"] == final["delivered"] + final["dropped"] + final["queued"]
        and final["target_count"] == final["delivered"]
    )
    return {
        "variant": variant,
        "seconds": seconds,
        "rate": rate,
        "producers": producers,
        "rss_start_mb": rss_start / 2**20,
        "series": series,
        "max_queued": max_queued,
        "at_stop": at_stop,
        "final": final,
        "drain_s": drain_s,
        "produced_per_s": at_stop["produced"] / seconds,
    }


def bench_memory(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.overload_seconds or (5.0 if args.quick else 30.0)
    results = {}
    for variant in ("ctxlog", "stdlib"):
        proc = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child-overload",
                variant,
                "--overload-seconds",
                str(seconds),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 300,
            check=False,
        )
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            msg = f"overload child {variant} failed with {proc.returncode}"
            raise RuntimeError(msg)
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b = results["ctxlog"], results["stdlib"]
    print(
        f"\n[memory] 10x overload for {seconds:g} s: 2 producers x 5,000 records/s, target "
        "1 ms/record; nonblocking(maxsize=10_000, drop_oldest) vs stdlib unbounded queue"
    )
    header = (
        f"{'t s':>4} | {'ctxlog RSS MB':>13} {'queued':>7} | {'stdlib RSS MB':>13} {'queued':>8}"
    )
    print(header)
    print("-" * len(header))
    for i in range(max(len(a["series"]), len(b["series"]))):
        sa = a["series"][i] if i < len(a["series"]) else None
        sb = b["series"][i] if i < len(b["series"]) else None
        t = (sa or sb)["t"]
        left = f"{sa['rss_mb']:>13.1f} {sa['queued']:>7}" if sa else " " * 21
        right = f"{sb['rss_mb']:>13.1f} {sb['queued']:>8}" if sb else ""
        print(f"{t:>4.0f} | {left} | {right}")
    for name, r in results.items():
        s, f = r["at_stop"], r["final"]
        print(
            f"{name}: RSS start {r['rss_start_mb']:.1f} MB, at stop {s['rss_mb']:.1f} MB; "
            f"max queued {r['max_queued']}; produced {r['produced_per_s']:,.0f}/s"
        )
        print(
            f"  at stop: produced {s['produced']} = delivered {s['delivered']} + dropped "
            f"{s['dropped']} + queued {s['queued']} + in flight {s['in_flight']} -> "
            f"{'exact' if s['produced'] == s['delivered'] + s['dropped'] + s['queued'] + s['in_flight'] else 'MISMATCH'}"
        )
        print(
            f"  after drain ({r['drain_s']:.1f} s, target made fast): produced {f['produced']} = "
            f"delivered {f['delivered']} + dropped {f['dropped']} + queued {f['queued']} "
            f"(target counted {f['target_count']}, drop reports {f['drop_reports']}) -> "
            f"{'EXACT' if f['balanced'] else 'MISMATCH'}"
        )
    return {"seconds": seconds, "results": results}


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds each")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument(
        "--only",
        default="latency,throughput,memory",
        help="comma-separated subset of latency,throughput,memory",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the round order")
    parser.add_argument("--rounds", type=int, default=None, help="latency rounds (default 1000)")
    parser.add_argument(
        "--records", type=int, default=None, help="throughput records per round (default 100,000)"
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="throughput measuring time (default 60)"
    )
    parser.add_argument(
        "--overload-seconds", type=float, default=None, help="memory overload duration (default 30)"
    )
    parser.add_argument("--child-overload", choices=("ctxlog", "stdlib"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_overload:
        result = overload_child(args.child_overload, args.overload_seconds, 10_000, 2)
        print(json.dumps(result))
        return 0
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    env = environment()
    print(
        f"bench_delivery: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"ctxlog {ctxlog.__version__}, argv {' '.join(sys.argv[1:])}"
    )
    doc: dict[str, Any] = {"benchmark": "delivery", "environment": env, "argv": sys.argv}
    benches = {"latency": bench_latency, "throughput": bench_throughput, "memory": bench_memory}
    for name in wanted:
        doc[name] = benches[name](args)
    if args.json:
        with Path(args.json).open("w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
