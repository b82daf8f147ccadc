"""
Cost of ``ctxlog.RedactFilter`` (default keys and patterns) per log call, against no filter.

Each pair makes the same ``logger.info`` call through a handler with ``ContextFilter`` and
``ctxlog.Formatter`` (the README's format) writing to a stream that drops what it is given; the
contestant's handler also has a ``RedactFilter`` with its defaults, first. A log call makes a
fresh record each time, so every call is redacted (a record is redacted once per filter). The
ratio is the time with the filter over the time without, taken in the same round. Calls:

- **plain**: ``log.info("paid %s EUR", 42)``, outside a request: nothing to mask;
- **extras**: the same with ``extra={"order_id": "A-1042", "amount": 42, "items": [...],
  "customer": {"id": 7, "email": "a@example.com"}}`` and a bound ``tenant``: nothing to mask,
  but keys, nested values and strings to check;
- **secrets**: ``log.info("login %s password=%s", ...)`` with ``extra={"api_key": ..., "form":
  {"username": ..., "password": ...}}``: three secrets masked, the merged message replacing
  ``msg``.

Correctness is checked before measuring: the lines are equal with and without the filter for
the first two, and the filter's line holds no secret for the third.

Run: python benchmarks/bench_redact.py [--quick] [--json PATH]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from _harness import Contestant, check, measure, parse_args, report

import ctxlog

FORMAT = "%(asctime)s %(ip)s %(user)s %(request_id)s %(levelname)s %(name)s %(message)s"
SECRET = "hunter2-Zq9"


class Drop:
    """A stream that keeps the last line written, and nothing else."""

    last = ""

    def write(self, text: str) -> int:
        self.last = text
        return len(text)

    def flush(self) -> None:
        pass


def make_logger(name: str, *, redact: bool) -> tuple[logging.Logger, Drop]:
    """Return a logger whose one handler formats to a :class:`Drop`, with or without the filter."""
    stream = Drop()
    handler = logging.StreamHandler(stream)  # type: ignore[arg-type]
    if redact:
        handler.addFilter(ctxlog.RedactFilter())
    handler.addFilter(ctxlog.ContextFilter())
    handler.setFormatter(ctxlog.Formatter(FORMAT, datefmt="%H:%M:%S"))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def plain(log: logging.Logger) -> None:
    log.info("paid %s EUR", 42)


EXTRAS = {
    "order_id": "A-1042",
    "amount": 42,
    "items": [{"sku": "X-1", "qty": 2}, {"sku": "Y-7", "qty": 1}],
    "customer": {"id": 7, "email": "a@example.com"},
}


def extras(log: logging.Logger) -> None:
    log.info("paid %s EUR", 42, extra=EXTRAS)


def secrets(log: logging.Logger) -> None:
    log.info(
        "login %s password=%s",
        "bob",
        SECRET,
        extra={"api_key": SECRET, "form": {"username": "bob", "password": SECRET}},
    )


def runner(call: Callable[[logging.Logger], None], log: logging.Logger) -> Any:
    def run(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            call(log)
        return perf_counter_ns() - start

    return run


def build() -> list[Contestant]:
    """Return a contestant without and one with the filter for each call, after checking them."""
    calls = {"plain": plain, "extras": extras, "secrets": secrets}
    contestants = []
    for label, call in calls.items():
        bare, bare_out = make_logger(f"bench.{label}.bare", redact=False)
        masked, masked_out = make_logger(f"bench.{label}.redact", redact=True)
        with ctxlog.scope(tenant="acme"):
            call(bare)
            call(masked)
        if label == "secrets":
            check(SECRET not in masked_out.last, f"{label}: {masked_out.last!r}")
            check(SECRET in bare_out.last, f"{label}: {bare_out.last!r}")
        else:
            # The time stamp may differ by a second: compare the rest of the line.
            line = masked_out.last.replace(".redact ", ".bare ")
            same = bare_out.last.split(" ", 1)[1] == line.split(" ", 1)[1]
            check(same, f"{label}: {masked_out.last!r} != {bare_out.last!r}")
        base = f"no filter, {label}"
        contestants += [
            Contestant(name=base, run=runner(call, bare), group=label),
            Contestant(
                name=f"RedactFilter, {label}",
                run=runner(call, masked),
                baseline=base,
                group=label,
            ),
        ]
    return contestants


def main() -> None:
    args = parse_args(__doc__.splitlines()[1])
    contestants = build()
    print("correctness checks passed; measuring", flush=True)
    with ctxlog.scope(tenant="acme"):
        rounds = measure(contestants, args.seconds, seed=args.seed)
    report("Per log call: with RedactFilter / without", contestants, rounds, args)


if __name__ == "__main__":
    main()
