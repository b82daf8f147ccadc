"""
Cost of the syslog encoder per record: before and after the byte budgets, and the module split.

``SyslogHandler.encode(record)`` builds one RFC 5424 message: header, structured data, MSG.
The baseline is the encoder of commit 64810c4, which cut only the MSG to ``max_size`` (issue 10,
point 1). The encoder of commit 010f2b2 is the last one in a single module, before issue 11
split it into ``rfc5424``, ``structured_data`` and ``syslog``: the current encoder's ratio is
taken against it, to show the split costs nothing. Each old source is read with ``git show``
and run as a module of its own, so all encoders run interleaved in this process. No network:
``encode`` only.

Records (every field is on the record, as ctxlog's queue and filter put it there):

- typical: ip, user ``alice``, a 32-hex request id, ``POST``, ``/checkout``, a short message;
- typical at 480: the same with ``max_size=480``;
- attack, as captured: the values WSGIMiddleware stores for a request whose path is 1,024
  characters of U+202E and whose user name is 256 of them (already escaped to ``\\u202e``, 6
  characters each, 7 bytes on the wire): the old encoder sends 9 KB, past ``max_size``;
- attack, bound raw: the same characters bound by the application (``fields=``), unescaped, so
  the encoder escapes them itself.

Run: python benchmarks/bench_syslog.py [--quick] [--json PATH]
"""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from _harness import Contestant, check, measure, parse_args, report

from ctxlog.handlers import SyslogHandler
from ctxlog.record.escape import sanitize

ROOT = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "64810c4"
#: The last encoder in one module (ctxlog/handlers/syslog.py), before issue 11's split.
UNSPLIT_COMMIT = "010f2b2"


def load_old(commit: str, path: str) -> types.ModuleType:
    """Return ``path`` as it was at ``commit``, as a module of its own."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:{path}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    # A helper the baseline imported has moved since; the function is the same.
    source = source.replace(
        "from ctxlog._sanitize import _escape",
        "from ctxlog.record.escape import escape_match as _escape",
    )
    module = types.ModuleType(f"ctxlog_syslog_{commit}")
    module.__file__ = f"{commit}:{path}"
    sys.modules[module.__name__] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # our own source, from git
    return module


def make_record(**fields: Any) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": "shop.checkout",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "checkout failed for order %s",
            "args": (4242,),
            **fields,
        }
    )


TYPICAL = {
    "ip": "203.0.113.7",
    "user": "alice",
    "request_id": "4be1c0d2a9f34e6b8c27d5e0f1a3b6c9",
    "method": "POST",
    "path": "/checkout",
}
CAPTURED_ATTACK = {
    **TYPICAL,
    "method": "GET",
    "user": sanitize("\u202e" * 256, 256),
    "path": sanitize("/" + "\u202e" * 1023, 1024),
}
BOUND_ATTACK = {**TYPICAL, "cart": "\u202e" * 256, "note": "/" + "\u202e" * 1023}


def encoder(handler: logging.Handler, record: logging.LogRecord) -> Any:
    encode = handler.encode  # type: ignore[attr-defined]

    def run(n: int) -> int:
        start = perf_counter_ns()
        for _ in range(n):
            encode(record)
        return perf_counter_ns() - start

    return run


def build() -> list[Contestant]:
    old = load_old(BASELINE_COMMIT, "ctxlog/_syslog.py")
    unsplit = load_old(UNSPLIT_COMMIT, "ctxlog/handlers/syslog.py")
    cases = [
        ("typical", TYPICAL, {}, 8096),
        ("typical at 480", TYPICAL, {}, 480),
        ("attack, as captured", CAPTURED_ATTACK, {}, 8096),
        ("attack, bound raw", BOUND_ATTACK, {"fields": ["ip", "request_id", "cart", "note"]}, 8096),
    ]
    contestants = []
    for name, fields, extra, max_size in cases:
        record = make_record(**fields)
        options = {"app_name": "shop", "hostname": "web1", "max_size": max_size, **extra}
        before = old.SyslogHandler(("127.0.0.1", 514), **options)
        one_module = unsplit.SyslogHandler(("127.0.0.1", 514), **options)
        after = SyslogHandler(("127.0.0.1", 514), **options)
        new_data = after.encode(record)
        old_data = before.encode(record)
        check(new_data == one_module.encode(record), f"{name}: the split changed the bytes")
        check(len(new_data) <= max_size, f"{name}: {len(new_data)} bytes > max_size {max_size}")
        if name.startswith("typical"):
            check(new_data == old_data, f"{name}: the encoders differ: {old_data!r} {new_data!r}")
        else:
            check(len(old_data) > max_size, f"{name}: the old encoder fits ({len(old_data)})")
        contestants.append(
            Contestant(f"{name}: {BASELINE_COMMIT}", encoder(before, record), None, name)
        )
        contestants.append(
            Contestant(
                f"{name}: {UNSPLIT_COMMIT}",
                encoder(one_module, record),
                f"{name}: {BASELINE_COMMIT}",
                name,
            )
        )
        contestants.append(
            Contestant(f"{name}: split", encoder(after, record), f"{name}: {UNSPLIT_COMMIT}", name)
        )
    return contestants


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.strip().splitlines()[0], argv)
    contestants = build()
    print("correctness checks passed; measuring", flush=True)
    rounds = measure(contestants, args.seconds, seed=args.seed)
    report(
        "SyslogHandler.encode() per record: the byte budgets (vs 64810c4), the split (vs 010f2b2)",
        contestants,
        rounds,
        args,
    )


if __name__ == "__main__":
    main()
