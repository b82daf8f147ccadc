"""
The measuring loop shared by the ctxlog benchmarks (see docs/benchmarks.md for the method).

A contestant is a function ``run(n) -> ns``: it performs the operation ``n`` times and returns
the nanoseconds spent, measured with ``time.perf_counter_ns()`` around the loop only, so that
per-batch set-up (resetting a buffer, entering an event loop) stays out of the figure.

Every round runs each contestant once, in a fresh random order, after ``gc.collect()`` (the
collector stays on). One sample is the mean time per operation of a batch sized to ~30 ms. The
result of a contestant is the median of its per-round ratios to its baseline of the same round,
with the interquartile range of that ratio: the machines are shared and drift, and a ratio taken
in the same minute survives the drift where an absolute time does not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Runner = Callable[[int], int]

#: Target length of one batch, in nanoseconds.
BATCH_NS = 30_000_000


@dataclass
class Contestant:
    """One thing to time, and the contestant its ratio is taken against."""

    name: str
    run: Runner
    baseline: str | None = None  # None: this contestant is a baseline (ratio 1.0)
    group: str = ""
    n: int = 0
    ns_per_op: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    deltas: list[float] = field(default_factory=list)


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options every benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run (a few seconds)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="time budget for the measured rounds (default 90, or 4 with --quick)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--seed", type=int, default=None, help="seed of the round order")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 4.0 if args.quick else 90.0
    return args


def _calibrate(run: Runner) -> int:
    """Return a batch size that takes about BATCH_NS."""
    n = 1
    while True:
        gc.collect()
        ns = max(run(n), 1)
        if ns >= BATCH_NS // 8 or n >= 1 << 24:
            return max(1, round(n * BATCH_NS / ns))
        n *= max(2, min(64, (BATCH_NS // 8) // ns))


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v, v
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def measure(
    contestants: list[Contestant],
    seconds: float,
    *,
    min_rounds: int = 5,
    seed: int | None = None,
    warmup_rounds: int = 2,
) -> int:
    """Run interleaved rounds for ``seconds`` (at least ``min_rounds``); return the round count."""
    by_name = {c.name: c for c in contestants}
    for c in contestants:
        if c.baseline is not None and c.baseline not in by_name:
            msg = f"{c.name}: unknown baseline {c.baseline!r}"
            raise ValueError(msg)
    rng = random.Random(seed)
    for c in contestants:
        c.run(1000)  # first warm-up, before sizing the batches
        c.n = _calibrate(c.run)
    order = list(contestants)
    for _ in range(warmup_rounds):
        rng.shuffle(order)
        for c in order:
            gc.collect()
            c.run(c.n)
    rounds = 0
    deadline = time.monotonic() + seconds
    while rounds < min_rounds or time.monotonic() < deadline:
        rng.shuffle(order)
        sample: dict[str, float] = {}
        for c in order:
            gc.collect()
            sample[c.name] = c.run(c.n) / c.n
        for c in contestants:
            c.ns_per_op.append(sample[c.name])
            base = sample[c.baseline] if c.baseline is not None else sample[c.name]
            c.ratios.append(sample[c.name] / base)
            c.deltas.append(sample[c.name] - base)
        rounds += 1
    return rounds


def summary(c: Contestant) -> dict[str, Any]:
    """Return the statistics of one contestant."""
    q1, med, q3 = _quartiles(c.ratios)
    return {
        "name": c.name,
        "group": c.group,
        "baseline": c.baseline,
        "batch_ops": c.n,
        "rounds": len(c.ratios),
        "ratio_median": med,
        "ratio_q1": q1,
        "ratio_q3": q3,
        "ns_per_op_median": statistics.median(c.ns_per_op),
        "added_ns_median": statistics.median(c.deltas),
    }


def environment() -> dict[str, Any]:
    """Describe where the numbers come from."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "processor": _cpu_model(),
        "ctxlog": _ctxlog_version(),
    }


def _ctxlog_version() -> dict[str, Any]:
    """Which ctxlog was measured: version, location and, in a git checkout, the commit."""
    import subprocess

    try:
        import ctxlog
    except ImportError:
        return {}
    info: dict[str, Any] = {
        "version": ctxlog.__version__,
        "path": str(Path(ctxlog.__file__).parent),
    }
    try:
        where = info["path"]
        commit = subprocess.run(
            ["git", "-C", where, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.split("\n")
        info["commit"] = commit
        info["uncommitted"] = sorted(line[3:] for line in dirty if line.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _cpu_model() -> str:
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def report(
    title: str,
    contestants: list[Contestant],
    rounds: int,
    args: argparse.Namespace,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Print the table and write the JSON file if asked; return the summaries."""
    rows = [summary(c) for c in contestants]
    env = environment()
    print()
    print(f"{title}")
    print(
        f"{env['date']}, Python {env['python']}, {env['cpus']} CPUs ({env['processor']}), "
        f"{rounds} rounds of ~{BATCH_NS // 1_000_000} ms batches"
    )
    lib = env["ctxlog"]
    if lib:
        changed = f", uncommitted: {' '.join(lib['uncommitted'])}" if lib.get("uncommitted") else ""
        print(f"ctxlog {lib['version']} at {lib.get('commit', lib['path'])}{changed}")
    width = max(len(r["name"]) for r in rows)
    group = None
    header = f"{'contestant':<{width}}  {'ratio':>6}  {'IQR':>13}  {'ns/op':>9}  {'added ns':>9}"
    for r in rows:
        if r["group"] != group:
            group = r["group"]
            print()
            if group:
                print(f"[{group}]")
            print(header)
            print("-" * len(header))
        iqr = f"{r['ratio_q1']:.3f}-{r['ratio_q3']:.3f}"
        added = "" if r["baseline"] is None else f"{r['added_ns_median']:+9.0f}"
        print(
            f"{r['name']:<{width}}  {r['ratio_median']:>5.3f}x  {iqr:>13}  "
            f"{r['ns_per_op_median']:>9.0f}  {added:>9}"
        )
    print()
    if args.json:
        doc = {
            "benchmark": title,
            "environment": env,
            "rounds": rounds,
            "seconds": args.seconds,
            "batch_ns": BATCH_NS,
            "argv": sys.argv,
            "results": rows,
            "raw": {c.name: {"ns_per_op": c.ns_per_op, "ratios": c.ratios} for c in contestants},
            **(extra or {}),
        }
        with Path(args.json).open("w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")
    return rows


def check(condition: object, message: str) -> None:
    """Stop the benchmark when a contestant does not do its job."""
    if not condition:
        print(f"CORRECTNESS CHECK FAILED: {message}", file=sys.stderr)
        raise SystemExit(2)
