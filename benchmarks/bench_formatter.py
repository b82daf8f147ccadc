"""
Cost of ``ctxlog.Formatter`` per record, against ``logging.Formatter`` on the same format and record.

Each pair formats the same ``LogRecord`` with the same format, ``FORMAT`` below (the README's,
with ctxlog's fields on the record as its filter puts them there); the ratio is ctxlog's time
over the standard library's, taken in the same round. Records:

- **plain**: ``log.info("paid %s EUR", 42)``, all printable ASCII: the common case, the fast path;
- **non-ASCII**: ``log.info("paid %s", "42 €")``: nothing to escape, but not ASCII either;
- **hostile arg**: ``log.info("search for %s", "x\\r\\n<forged line>\\x1b[2J")``: the escaping way;
- **traceback**: ``log.exception("failed")`` with a four-frame ``ValueError``. ``exc_text`` is
  cleared before every call for both contestants, so each call formats the traceback as a fresh
  record's first handler does;
- **no ctxlog fields**: the plain record without ``ip``, ``user`` and ``request_id`` (a library's
  record reaching a handler without ctxlog's filter); here the standard library's formatter is
  given ``defaults=`` for the three, which ctxlog's has by itself.

Correctness is checked before measuring: the standard library's line and ctxlog's are equal for
the plain and non-ASCII records, and ctxlog's has one line (plus ``"  | "`` lines) for the others.

Run: python benchmarks/bench_formatter.py [--quick] [--json PATH]
"""

from __future__ import annotations

import logging
import sys
from time import perf_counter_ns
from typing import Any

from _harness import Contestant, check, measure, parse_args, report

import ctxlog

FORMAT = "%(asctime)s %(ip)s %(user)s %(request_id)s %(levelname)s %(name)s %(message)s"
FIELDS = {"ip": "203.0.113.7", "user": "alice", "request_id": "4bf92f3577b34da6a3ce929d0e0e4736"}


def make_record(
    msg: str, args: tuple[Any, ...], exc_info: Any = None, *, fields: bool = True
) -> logging.LogRecord:
    record = logging.LogRecord("shop.views", logging.INFO, __file__, 42, msg, args, exc_info)
    if fields:
        record.__dict__.update(FIELDS)
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
        return make_record("failed", (), sys.exc_info())
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


def build() -> list[Contestant]:
    """Return a stdlib and a ctxlog contestant for each record, after checking their output."""
    escaping = ctxlog.Formatter(FORMAT)
    records = {
        "plain": make_record("paid %s EUR", (42,)),
        "non-ASCII": make_record("paid %s", ("42 \u20ac",)),
        "hostile arg": make_record("search for %s", ("x\r\n2026-01-05 INFO forged\x1b[2J",)),
        "traceback": traceback_record(),
        "no ctxlog fields": make_record("paid %s EUR", (42,), fields=False),
    }
    contestants = []
    for label, record in records.items():
        defaults = dict.fromkeys(FIELDS, "-") if label == "no ctxlog fields" else None
        stdlib = logging.Formatter(FORMAT, defaults=defaults)
        plain_line = stdlib.format(record)
        record.exc_text = None
        line = escaping.format(record)
        record.exc_text = None
        if label in {"plain", "non-ASCII", "no ctxlog fields"}:
            check(line == plain_line, f"{label}: {line!r} != {plain_line!r}")
        else:
            first, *rest = line.split("\n")
            check("\r" not in first and "\x1b" not in first, f"{label}: {first!r} not escaped")
            check(all(part.startswith("  | ") for part in rest), f"{label}: {rest!r}")
            expected = plain_line.count("\n") if label == "traceback" else 0
            check(len(rest) == expected, f"{label}: {len(rest)} lines, not {expected}")
        base = f"logging.Formatter, {label}"
        contestants += [
            Contestant(name=base, run=runner(stdlib, record), group=label),
            Contestant(
                name=f"ctxlog.Formatter, {label}",
                run=runner(escaping, record),
                baseline=base,
                group=label,
            ),
        ]
    return contestants


def main() -> None:
    args = parse_args(__doc__.splitlines()[1])
    contestants = build()
    print("correctness checks passed; measuring", flush=True)
    rounds = measure(contestants, args.seconds, seed=args.seed)
    report("Per record: ctxlog.Formatter / logging.Formatter", contestants, rounds, args)


if __name__ == "__main__":
    main()
