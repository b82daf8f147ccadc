"""
Cost of ``ctxlog.JSONFormatter`` per record, against python-json-logger on the same record and fields.

Each pair formats the same ``LogRecord`` into the same keys: the time (ISO 8601, UTC), the level,
the message with its argument merged, the logger, ctxlog's five fields as its filter puts them
on a record, and the record's extra fields. python-json-logger is given the same field list
(``JsonFormatter([...], rename_fields=..., timestamp="time")``); the ratio is ctxlog's time
over python-json-logger's, taken in the same round. Contestants:

- ``JsonFormatter`` (standard library ``json``) against ``ctxlog.JSONFormatter(use_orjson=False)``;
- python-json-logger's ``OrjsonFormatter`` against ``ctxlog.JSONFormatter`` with orjson;
- ``schema="ecs"`` (nested objects) against ``JsonFormatter``, the worst case of ctxlog's.

Records:

- **plain**: ``log.info("paid %s EUR", 42)`` with ctxlog's fields;
- **extras**: the same with ``extra={"order_id": 1234, "amount": 42.5, "sku": "A-17"}``;
- **traceback**: ``log.exception("failed")`` with a four-frame ``ValueError``; ``exc_text`` is
  cleared before every call for both, so each formats the traceback as a fresh record's first
  handler does.

Correctness is checked before measuring: both lines parse as JSON to the same keys and values
(the time compared to the millisecond), and ctxlog's two encoders give the same bytes.

Run: python benchmarks/bench_json.py [--quick] [--json PATH]
"""

from __future__ import annotations

import json
import logging
import sys
from time import perf_counter_ns
from typing import Any

from _harness import Contestant, check, measure, parse_args, report
from pythonjsonlogger.json import JsonFormatter
from pythonjsonlogger.orjson import OrjsonFormatter

from ctxlog.record.jsonformat import JSONFormatter

FIELDS = {
    "ip": "203.0.113.7",
    "user": "alice",
    "request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "method": "POST",
    "path": "/orders/1234/pay",
}
EXTRA = {"order_id": 1234, "amount": 42.5, "sku": "A-17"}
PJL_FIELDS = ["levelname", "message", "name", *FIELDS]
PJL_RENAME = {"levelname": "level", "name": "logger"}


def make_record(extra: dict[str, Any] | None = None, exc_info: Any = None) -> logging.LogRecord:
    msg, args = ("failed", ()) if exc_info else ("paid %s EUR", (42,))
    level = logging.ERROR if exc_info else logging.INFO
    record = logging.LogRecord("shop.views", level, __file__, 42, msg, args, exc_info)
    record.__dict__.update(FIELDS)
    record.__dict__.update(extra or {})
    record._ctxlog_stamped = True  # as ctxlog's filter leaves a record
    return record


def failing(depth: int) -> None:
    if depth:
        failing(depth - 1)
    msg = "card declined"
    raise ValueError(msg)


def traceback_record() -> logging.LogRecord:
    try:
        failing(2)
    except ValueError:
        return make_record(exc_info=sys.exc_info())
    msg = "unreachable"
    raise AssertionError(msg)


def runner(formatter: logging.Formatter, record: logging.LogRecord) -> Any:
    fmt = formatter.format
    if record.exc_info is None:

        def run(n: int) -> int:
            start = perf_counter_ns()
            for _ in range(n):
                fmt(record)
            return perf_counter_ns() - start

    else:

        def run(n: int) -> int:
            start = perf_counter_ns()
            for _ in range(n):
                record.exc_text = None
                fmt(record)
            return perf_counter_ns() - start

    return run


def same(label: str, theirs: str, ours: str) -> None:
    """Check that two lines hold the same keys and values (time to the millisecond)."""
    a, b = json.loads(theirs), json.loads(ours)
    a.pop("_ctxlog_stamped", None)  # python-json-logger writes underscore attributes
    check(a.pop("time")[:23] == b.pop("time")[:23], f"{label}: times differ")
    if "exc_info" in a:
        a["exception"] = a.pop("exc_info")
        b.pop("exception_type")
        b.pop("exception_message")
    check(a == b, f"{label}: {a!r} != {b!r}")


def build() -> list[Contestant]:
    """Return the contestants for each record, after checking their output."""
    stdlib = JSONFormatter(use_orjson=False)
    fast = JSONFormatter()
    ecs = JSONFormatter(schema="ecs")
    check(fast.uses_orjson, "orjson is not installed: pip install ctxlog[orjson]")
    pjl = JsonFormatter(PJL_FIELDS, rename_fields=PJL_RENAME, timestamp="time")
    pjl_orjson = OrjsonFormatter(PJL_FIELDS, rename_fields=PJL_RENAME, timestamp="time")
    records = {
        "plain": make_record(),
        "extras": make_record(EXTRA),
        "traceback": traceback_record(),
    }
    contestants = []
    for label, record in records.items():
        lines = {}
        for name, formatter in (("pjl", pjl), ("ctxlog", stdlib), ("orjson", fast)):
            record.exc_text = None
            lines[name] = formatter.format(record)
        record.exc_text = None
        check(lines["ctxlog"] == lines["orjson"], f"{label}: the two encoders differ")
        same(label, lines["pjl"], lines["ctxlog"])
        base, base_orjson = f"python-json-logger, {label}", f"python-json-logger orjson, {label}"
        contestants += [
            Contestant(name=base, run=runner(pjl, record), group=label),
            Contestant(
                name=f"ctxlog json, {label}", run=runner(stdlib, record), baseline=base, group=label
            ),
            Contestant(
                name=f"ctxlog ecs, {label}", run=runner(ecs, record), baseline=base, group=label
            ),
            Contestant(name=base_orjson, run=runner(pjl_orjson, record), group=label),
            Contestant(
                name=f"ctxlog orjson, {label}",
                run=runner(fast, record),
                baseline=base_orjson,
                group=label,
            ),
        ]
    return contestants


def main() -> None:
    args = parse_args(__doc__.splitlines()[1])
    contestants = build()
    print("correctness checks passed; measuring", flush=True)
    rounds = measure(contestants, args.seconds, seed=args.seed)
    report(
        "Per record: ctxlog.JSONFormatter / python-json-logger", contestants, rounds, args
    )


if __name__ == "__main__":
    main()
