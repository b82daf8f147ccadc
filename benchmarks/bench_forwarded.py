"""
Cost of reading the client address from ``Forwarded``, beside ``X-Forwarded-For``, before and after.

One operation is one uncached walk, ``ClientIP._walk(peer, header)``: what ``resolve()`` does for
a header it has not seen (headers up to 256 characters are cached by ``resolve()``, longer ones
never are). Peer ``10.0.0.1``, ``trusted_proxies=["10.0.0.0/8"]``. A header of N elements is
N - 2 elements a client wrote (``for=198.51.100.x``), then the client's address as our outer
proxy saw it (``for=203.0.113.7``) and our inner proxy (``for=10.0.0.2``); the walk needs the last
two. N = 1 is the client alone. ``64KiB`` is as many elements as fit in 65,536 characters
(``MAX_FORWARDED``, so it is read, not refused).

Contestants for each size, in two groups: ``plain`` (IPv4, no quotes) and ``quoted`` (IPv6 in
quoted strings, ``for="[2001:db8::x]:4711"``, the form RFC 7239 requires for IPv6):

``xff-N``
    the baseline: ``X-Forwarded-For`` with the same addresses (ctxlog's walk, unchanged).
``fwd-before-N``
    ``proxy_header="Forwarded"`` with ``ctxlog/_proxy.py`` as it was at commit 64810c4 (loaded
    from ``git show`` as a module of its own): the whole header parsed from the left.
``fwd-after-N``
    the same with the current ``ctxlog/_proxy.py``: read from the right.

Each contestant's answer is checked (the client address) before and after the run.

Run: python benchmarks/bench_forwarded.py [--quick] [--json PATH]
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter_ns
from types import ModuleType
from typing import Any

from _harness import Contestant, check, measure, parse_args, report

from ctxlog.web import proxies as _proxy

BEFORE = "64810c4"
PEER = "10.0.0.1"
TRUSTED = ["10.0.0.0/8", "2001:db8:ffff::/48"]
ROOT = Path(__file__).resolve().parent.parent


def load_before() -> ModuleType:
    """Return ctxlog/_proxy.py as it was at BEFORE, as a module named _proxy_before."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:ctxlog/_proxy.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "_proxy_before.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location("_proxy_before", path)
        if spec is None or spec.loader is None:
            msg = f"cannot load {path}"
            raise ImportError(msg)
        module = importlib.util.module_from_spec(spec)
        sys.modules["_proxy_before"] = module
        spec.loader.exec_module(module)
    return module


def chain(count: int, quoted: bool) -> tuple[list[str], str]:
    """Return ``count`` hops (client-written ones, the client, our proxy) and the client."""
    if quoted:
        client = "2001:db8::7"
        junk = [f"[2001:db8:1::{i % 4096:x}]:4711" for i in range(max(count - 2, 0))]
        ours = [f"[{client}]:4711", "[2001:db8:ffff::2]:443"]
    else:
        client = "203.0.113.7"
        junk = [f"198.51.100.{i % 250}" for i in range(max(count - 2, 0))]
        ours = [client, "10.0.0.2"]
    return ([*junk, *ours] if count > 1 else ours[:1]), client


def headers(size: int | str, quoted: bool) -> tuple[str, str, str]:
    """Return the X-Forwarded-For and Forwarded headers of one size, and the client address."""
    if size == "64KiB":
        count = 1
        while True:
            hops, _ = chain(count * 2, quoted)
            if len(forwarded(hops, quoted)) > _proxy.MAX_FORWARDED:
                break
            count *= 2
        low, high = count, count * 2
        while high - low > 1:
            middle = (low + high) // 2
            hops, _ = chain(middle, quoted)
            if len(forwarded(hops, quoted)) <= _proxy.MAX_FORWARDED:
                low = middle
            else:
                high = middle
        size = low
    check(isinstance(size, int), f"size {size!r}")
    hops, client = chain(int(size), quoted)
    return ", ".join(hops), forwarded(hops, quoted), client


def forwarded(hops: list[str], quoted: bool) -> str:
    return ", ".join(f'for="{hop}"' if quoted else f"for={hop}" for hop in hops)


def walker(client_ip: Any, header: str) -> Any:
    walk = client_ip._walk  # the uncached walk is what is measured

    def run(n: int) -> int:
        started = perf_counter_ns()
        for _ in range(n):
            walk(PEER, header)
        return perf_counter_ns() - started

    return run


def build() -> tuple[list[Contestant], list[tuple[str, Any, str, str]]]:
    before = load_before()
    contestants: list[Contestant] = []
    expectations: list[tuple[str, Any, str, str]] = []
    for quoted in (False, True):
        kind = "quoted" if quoted else "plain"
        xff_ip = _proxy.ClientIP(TRUSTED, "X-Forwarded-For")
        old_ip = before.ClientIP(TRUSTED, "Forwarded")
        new_ip = _proxy.ClientIP(TRUSTED, "Forwarded")
        for size in (1, 10, 1000, "64KiB"):
            xff, fwd, client = headers(size, quoted)
            group = f"{kind}, {size} elements, Forwarded {len(fwd):,} chars"
            base = f"{kind}-xff-{size}"
            contestants.append(Contestant(base, walker(xff_ip, xff), None, group))
            for when, client_ip in (("before", old_ip), ("after", new_ip)):
                name = f"{kind}-fwd-{when}-{size}"
                contestants.append(Contestant(name, walker(client_ip, fwd), base, group))
                expectations.append((name, client_ip, fwd, client))
            expectations.append((base, xff_ip, xff, client))
    return contestants, expectations


def verify(expectations: list[tuple[str, Any, str, str]]) -> None:
    for name, client_ip, header, client in expectations:
        actual = client_ip._walk(PEER, header)
        check(actual == client, f"{name}: {actual!r}, expected {client!r}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.strip().splitlines()[0], argv)
    contestants, expectations = build()
    verify(expectations)
    print("correctness checks passed; measuring", flush=True)
    rounds = measure(contestants, args.seconds, seed=args.seed)
    report(
        "Per request: one uncached client-address walk, Forwarded vs X-Forwarded-For",
        contestants,
        rounds,
        args,
    )
    verify(expectations)


if __name__ == "__main__":
    main()
