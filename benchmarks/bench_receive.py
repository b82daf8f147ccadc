"""
Records/s from 4 processes into one receiver writing one file: ``ctxlog receive`` beside the stdlib.

Contestants, each a fresh receiver process per round, and 4 fresh sender processes:

``ctxlog``
    Each sender logs through ``ctxlog.nonblocking([JSONSocketHandler(...)], maxsize=N+...,
    overflow="block")`` (nothing can be dropped) to ``python -m ctxlog receive --file F``.

``stdlib``
    Each sender has a ``logging.handlers.SocketHandler`` attached directly, as the Logging
    Cookbook does ("Sending and receiving logging events across a network"), with a
    ``ctxlog.ContextFilter`` on it so the records carry the same fields; the receiver is the
    Cookbook's: ``socketserver.ThreadingTCPServer``, a 4-byte length, ``pickle.loads``,
    ``logging.makeLogRecord``, ``logger.handle`` to a ``FileHandler`` with the same line format
    as ``ctxlog receive`` (the peer address is set on each record, as ctxlog's receiver does).
    One change: the 4-byte header is read exactly. The Cookbook's single ``recv(4)`` takes a
    header split across two reads for the end of the stream and drops the rest of the
    connection (PITFALLS 28); verbatim, it lost records in every receiver-only round.
    ``pickle.loads`` on network input runs code (PITFALLS 27): this is the baseline, not advice.

``ctxlog-signed`` (only with ``--only``)
    ``ctxlog`` with a shared secret: every frame signed when it is sent (sender id, sequence,
    time, HMAC-SHA256), and ``ctxlog receive --secret-file`` checking each tag and each frame
    against its replay memory.

``ctxlog-receiver-only``, ``stdlib-receiver-only``
    What each receiver alone can take: every sender encodes its N records first (a
    ``JSONSocketHandler`` frame or a ``SocketHandler`` pickle of the same record), then writes
    them in 256-record chunks on one connection. The ratio is to the stdlib receiver's.

Each sender imports and configures logging, says it is ready, and waits; the clock starts when
all four are told to go and stops when the receiver's file holds all 4 x N lines (polled every
10 ms). A sender logs N records inside ``ctxlog.scope(ip=..., user=..., request_id=...)`` (a new
request id every 5 records) with its index and a sequence number in the message. After each
round the file is checked line by line: exactly 4 x N lines, each sender's sequence complete and
in order, each line with its sender's ip, user and request id. A round that lost a record is
reported with its loss and not counted. Rounds run both contestants in a fresh random order;
the result is the median records/s of each and the median of the per-round ratios
ctxlog / stdlib, with its interquartile range.

Run: python benchmarks/bench_receive.py [--quick] [--records N] [--rounds R] [--json PATH]
                                        [--only NAME,...] [--profile-receiver PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import logging.handlers
import os
import pickle
import random
import re
import signal
import socketserver
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ctxlog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import environment

SENDERS = 4
#: The line format of ``ctxlog receive`` (ctxlog.receiver.DEFAULT_FORMAT), used on both sides.
FORMAT = (
    "%(asctime)s %(levelname)s %(ip)s %(user)s %(request_id)s %(name)s %(message)s "
    "[pid %(process)s from %(peer)s]"
)
LINE = re.compile(
    rb"\S+ \S+ INFO (?P<ip>\S+) (?P<user>\S+) (?P<rid>\S+) bench\.sender "
    rb"order (?P<seq>\d+) from sender (?P<idx>\d+) \[pid \d+ from 127\.0\.0\.1:\d+\]"
)
PER_REQUEST = 5
POLL = 0.01
#: The key of the ``ctxlog-signed`` contestant.
KEY = b"bench-receive-shared-secret-0123"
#: A round ends as lost when the file has not grown for this long.
STALL = 30.0
#: ... or when every sender has exited and the file has not grown for this long.
QUIET = 2.0


# --- senders (child processes) ------------------------------------------------------------------


def raw_sender(kind: str, port: int, index: int, count: int) -> None:
    """Encode ``count`` frames first, then send them as fast as the receiver takes them."""
    import socket

    from ctxlog import wire as _wire
    from ctxlog.record.stamp import stamp

    pickler = logging.handlers.SocketHandler("127.0.0.1", port)
    log = logging.getLogger("bench.sender")
    frames = []
    ip, user = f"198.18.{index}.1", f"user{index}"
    for seq in range(count):
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, "order %d from sender %d",
                                (seq, index), None)  # fmt: skip
        with ctxlog.scope(ip=ip, user=user, request_id=f"s{index}-{seq // PER_REQUEST}"):
            stamp(record)
        frames.append(_wire.encode(record) if kind == "ctxlog" else pickler.makePickle(record))
    chunks = []
    for start in range(0, count, 256):
        chunks.append(b"".join(frames[start : start + 256]))
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
        logged = time.perf_counter()
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # wait until the receiver has closed its side
    print(json.dumps({"logged_at": logged, "cpu_s": time.process_time() - cpu}), flush=True)


def sender(kind: str, port: int, index: int, count: int) -> None:
    """Configure logging, say ready, wait for go, log ``count`` records, report, exit."""
    if kind.startswith("raw-"):
        raw_sender(kind.removeprefix("raw-"), port, index, count)
        return
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    socket_handler: Any
    if kind in {"ctxlog", "ctxlog-signed"}:
        from ctxlog.handlers import JSONSocketHandler

        socket_handler = JSONSocketHandler(
            "127.0.0.1",
            port,
            buffer=count + 1000,
            buffer_bytes=1 << 30,
            secret=KEY if kind == "ctxlog-signed" else None,
        )
        front = ctxlog.nonblocking([socket_handler], maxsize=count + 1000, overflow="block")
        root.addHandler(front)
    else:
        front = None
        socket_handler = logging.handlers.SocketHandler("127.0.0.1", port)
        socket_handler.addFilter(ctxlog.ContextFilter())
        root.addHandler(socket_handler)
    log = logging.getLogger("bench.sender")
    ip, user = f"198.18.{index}.1", f"user{index}"
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    for start in range(0, count, PER_REQUEST):
        with ctxlog.scope(ip=ip, user=user, request_id=f"s{index}-{start // PER_REQUEST}"):
            for seq in range(start, min(start + PER_REQUEST, count)):
                log.info("order %d from sender %d", seq, index)
    logged = time.perf_counter()
    stats: dict[str, Any] = {}
    if front is not None:
        front.close()
        queue_stats = front.stats()
        stats = {
            "queue_dropped": queue_stats["dropped"],
            "queue_failed": queue_stats["failed"],
            **{f"socket_{k}": v for k, v in socket_handler.stats().items()},
        }
    root.handlers.clear()
    socket_handler.close()
    stats["logged_at"] = logged
    stats["cpu_s"] = time.process_time() - cpu
    print(json.dumps(stats), flush=True)


# --- the Cookbook's pickle receiver (child process) ---------------------------------------------


class LogRecordStreamHandler(socketserver.StreamRequestHandler):
    """The Cookbook's handler: a 4-byte length, a pickled dict, makeLogRecord, logger.handle."""

    def handle(self) -> None:
        host, port = self.client_address[:2]
        peer = f"{host}:{port}"
        while True:
            # The Cookbook reads recv(4) once and stops when it gets fewer bytes: a header split
            # across two reads (common at this rate) then ends the connection and loses the rest
            # of the stream (PITFALLS 28). Read exactly 4 bytes instead; nothing else changes.
            chunk = self.connection.recv(4)
            while 0 < len(chunk) < 4:
                more = self.connection.recv(4 - len(chunk))
                if not more:
                    break
                chunk += more
            if len(chunk) < 4:
                break
            slen = struct.unpack(">L", chunk)[0]
            chunk = self.connection.recv(slen)
            while len(chunk) < slen:
                more = self.connection.recv(slen - len(chunk))
                if not more:  # the Cookbook's loop spins here on EOF
                    return
                chunk = chunk + more
            obj = pickle.loads(chunk)  # the Cookbook's; unsafe on a reachable port
            record = logging.makeLogRecord(obj)
            record.peer = peer
            logging.getLogger(record.name).handle(record)


class LogRecordSocketReceiver(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), LogRecordStreamHandler)
        self.abort = False
        self.timeout = 1

    def serve_until_stopped(self) -> None:
        import select

        while not self.abort:
            rd, _, _ = select.select([self.socket.fileno()], [], [], self.timeout)
            if rd:
                self.handle_request()


def pickle_receiver(path: str) -> None:
    """Serve until SIGTERM, writing every record to ``path``; print the port first."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    server = LogRecordSocketReceiver()

    def stop(*_: object) -> None:
        server.abort = True

    signal.signal(signal.SIGTERM, stop)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_until_stopped()
    server.server_close()
    logging.shutdown()


# --- one round ----------------------------------------------------------------------------------

#: name: (receiver, sender mode, baseline for the ratio)
CONTESTANTS: dict[str, tuple[str, str, str]] = {
    "ctxlog": ("ctxlog", "ctxlog", "stdlib"),
    "stdlib": ("stdlib", "stdlib", "stdlib"),
    "ctxlog-receiver-only": ("ctxlog", "raw-ctxlog", "stdlib-receiver-only"),
    "stdlib-receiver-only": ("stdlib", "raw-stdlib", "stdlib-receiver-only"),
    "ctxlog-signed": ("ctxlog-signed", "ctxlog-signed", "stdlib"),
}
#: What runs unless --only says otherwise.
DEFAULT = ("ctxlog", "stdlib", "ctxlog-receiver-only", "stdlib-receiver-only")


def start_receiver(
    kind: str, path: Path, profile: Path | None
) -> tuple[subprocess.Popen[str], int]:
    if kind.startswith("ctxlog"):
        command = [sys.executable, "-m", "ctxlog", "receive", "--listen", "127.0.0.1:0",
                   "--file", str(path)]  # fmt: skip
        if kind == "ctxlog-signed":
            secret = path.with_suffix(".key")
            secret.write_bytes(KEY)
            command += ["--secret-file", str(secret)]
        if profile is not None:
            command[1:1] = ["-m", "cProfile", "-o", str(profile)]
    else:
        command = [sys.executable, __file__, "--child-receiver", str(path)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    line = process.stderr.readline()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if match is None:
        process.kill()
        msg = f"{kind} receiver did not start: {line}{process.stderr.read()}"
        raise SystemExit(msg)
    return process, int(match.group(1))


def start_senders(mode: str, port: int, count: int) -> list[subprocess.Popen[str]]:
    senders = []
    for index in range(SENDERS):
        child = [sys.executable, __file__, "--child-sender", mode, "--port", str(port),
                 "--index", str(index), "--records", str(count)]  # fmt: skip
        senders.append(
            subprocess.Popen(child, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
    for process in senders:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            msg = f"a {mode} sender did not start"
            raise SystemExit(msg)
    return senders


def wait_for_lines(
    path: Path, expected: int, senders: list[subprocess.Popen[str]]
) -> tuple[int, float]:
    """Poll ``path`` until it holds ``expected`` lines; return (lines, when the last came)."""
    lines = 0
    last_growth = time.perf_counter()
    while not path.exists():
        time.sleep(POLL)
    with path.open("rb") as f:
        while True:
            chunk = f.read()
            now = time.perf_counter()
            if chunk:
                lines += chunk.count(b"\n")
                last_growth = now
                if lines >= expected:
                    return lines, now
            elif now - last_growth > STALL or (
                now - last_growth > QUIET and all(p.poll() is not None for p in senders)
            ):
                return lines, last_growth  # records were lost: the time is not a result
            time.sleep(POLL)


def verify(path: Path, count: int) -> dict[str, Any]:
    """Check every line of the file; return the loss and what else was wrong."""
    next_seq = [0] * SENDERS
    lines = bad = gaps = 0
    with path.open("rb") as f:
        for line in f:
            lines += 1
            match = LINE.fullmatch(line.rstrip(b"\n"))
            if match is None:
                bad += 1
                continue
            index, seq = int(match["idx"]), int(match["seq"])
            fields = (match["ip"], match["user"], match["rid"])
            request = f"s{index}-{seq // PER_REQUEST}"
            if fields != (f"198.18.{index}.1".encode(), f"user{index}".encode(), request.encode()):
                bad += 1
            if seq != next_seq[index]:
                gaps += 1
            next_seq[index] = max(next_seq[index], seq + 1)
    return {
        "lines": lines,
        "lost": max(SENDERS * count - lines + bad, 0),
        "bad_lines": bad,
        "gaps": gaps,
        "complete": lines == SENDERS * count and not bad and not gaps,
    }


def run_round(
    name: str, count: int, directory: Path, profile: Path | None = None
) -> dict[str, Any]:
    receiver_kind, mode, _ = CONTESTANTS[name]
    path = directory / f"{name}.log"
    path.unlink(missing_ok=True)
    receiver, port = start_receiver(receiver_kind, path, profile)
    senders: list[subprocess.Popen[str]] = []
    try:
        senders = start_senders(mode, port, count)
        started = time.perf_counter()
        for process in senders:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        receiver_cpu = cpu_seconds(receiver.pid)
        lines, finished = wait_for_lines(path, SENDERS * count, senders)
        receiver_cpu = cpu_seconds(receiver.pid) - receiver_cpu
        reports = []
        for process in senders:
            out, _ = process.communicate(timeout=120)
            reports.append(json.loads(out.strip().splitlines()[-1]) if out.strip() else {})
        receiver.send_signal(signal.SIGTERM)
        receiver.communicate(timeout=60)
    finally:
        for process in [*senders, receiver]:
            if process.poll() is None:
                process.kill()
                process.wait()
    check = verify(path, count)
    path.unlink()
    elapsed = finished - started
    logged = max(r.get("logged_at", started) for r in reports) - started
    drops = sum(r.get("queue_dropped", 0) + r.get("socket_dropped", 0) for r in reports)
    return {
        "name": name,
        "records": SENDERS * count,
        "seconds": elapsed,
        "records_per_s": lines / elapsed,
        "senders_done_s": logged,
        "sender_drops": drops,
        # CPU per record: on 2 cores the senders and the receiver share the machine.
        "sender_cpu_us": sum(r.get("cpu_s", 0.0) for r in reports) / (SENDERS * count) * 1e6,
        "receiver_cpu_us": receiver_cpu / max(lines, 1) * 1e6,
        **check,
    }


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time of a running process (Linux), else NaN."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- main -------------------------------------------------------------------------------------


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v, v
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 5,000 records each")
    parser.add_argument("--records", type=int, default=None, help="records per sender (50,000)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 7)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--seed", type=int, default=None, help="seed of the round order")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help=f"contestants (default {','.join(DEFAULT)}; also: ctxlog-signed)",
    )
    parser.add_argument(
        "--profile-receiver",
        metavar="PATH",
        help="afterwards, one more ctxlog round with the receiver under cProfile; stats to PATH",
    )
    parser.add_argument("--child-sender", help=argparse.SUPPRESS)
    parser.add_argument("--child-receiver", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_sender:
        sender(args.child_sender, args.port, args.index, args.records)
        return 0
    if args.child_receiver:
        pickle_receiver(args.child_receiver)
        return 0
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in CONTESTANTS]
    if unknown:
        parser.error(f"unknown contestants {unknown}; choose from {list(CONTESTANTS)}")
    count = args.records or (5_000 if args.quick else 50_000)
    rounds = args.rounds or (3 if args.quick else 7)
    rng = random.Random(args.seed)
    env = environment()
    print(f"receive: {SENDERS} senders x {count:,} records, {rounds} rounds, "
          f"Python {env['python']}, {env['cpus']} CPUs ({env['processor']})")  # fmt: skip
    lib = env.get("ctxlog") or {}
    changed = f", uncommitted: {' '.join(lib['uncommitted'])}" if lib.get("uncommitted") else ""
    print(f"ctxlog {lib.get('version')} at {lib.get('commit', lib.get('path'))}{changed}")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench_receive-") as tmp:
        directory = Path(tmp)
        for name in names:  # warm-up: disk cache, imports, bytecode
            run_round(name, min(count, 2_000), directory)
        for number in range(1, rounds + 1):
            order = list(names)
            rng.shuffle(order)
            sample = {}
            for name in order:
                result = run_round(name, count, directory)
                results[name].append(result)
                sample[name] = result
                status = "ok" if result["complete"] else (
                    f"LOST {result['lost']} (gaps {result['gaps']}, bad {result['bad_lines']})"
                )  # fmt: skip
                print(f"  round {number} {name:<20} {result['records_per_s']:>9,.0f} records/s "
                      f"({result['seconds']:5.2f} s; senders done at "
                      f"{result['senders_done_s']:5.2f} s; CPU/record: senders "
                      f"{result['sender_cpu_us']:4.1f} us, receiver {result['receiver_cpu_us']:4.1f} us)"
                      f" {status}", flush=True)  # fmt: skip
            for name in names:
                base = CONTESTANTS[name][2]
                if base in sample and sample[name]["complete"] and sample[base]["complete"]:
                    rate = sample[name]["records_per_s"]
                    ratios[name].append(rate / sample[base]["records_per_s"])
        profile_top = None
        if args.profile_receiver:
            run_round("ctxlog-receiver-only", count, directory, Path(args.profile_receiver))
            profile_top = summarize_profile(args.profile_receiver)
    summary: dict[str, Any] = {}
    for name, rows in results.items():
        good = [r["records_per_s"] for r in rows if r["complete"]]
        q1, med, q3 = quartiles(ratios[name])
        summary[name] = {
            "baseline": CONTESTANTS[name][2],
            "records_per_s_median": statistics.median(good) if good else None,
            "rounds_complete": len(good),
            "rounds": len(rows),
            "ratio_median": med if ratios[name] else None,
            "ratio_q1": q1 if ratios[name] else None,
            "ratio_q3": q3 if ratios[name] else None,
            "ratio_rounds": len(ratios[name]),
            "lost_total": sum(r["lost"] for r in rows),
            "rounds_with_loss": sum(1 for r in rows if r["lost"]),
            "sender_drops_total": sum(r["sender_drops"] for r in rows),
            "senders_done_s_median": statistics.median(r["senders_done_s"] for r in rows),
            "sender_cpu_us_median": statistics.median(r["sender_cpu_us"] for r in rows),
            "receiver_cpu_us_median": statistics.median(r["receiver_cpu_us"] for r in rows),
        }
    print()
    header = (f"{'contestant':<21} {'records/s':>9} {'ratio':>7} {'IQR':>13} {'rounds ok':>10} "
              f"{'lost (rounds)':>14} {'CPU us/record: senders':>22} {'receiver':>8}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for name, s in summary.items():
        rate = f"{s['records_per_s_median']:,.0f}" if s["records_per_s_median"] else "-"
        ratio = iqr = "-"
        if s["ratio_median"] is not None:
            ratio = f"{s['ratio_median']:.3f}x"
            iqr = f"{s['ratio_q1']:.3f}-{s['ratio_q3']:.3f}"
        lost = f"{s['lost_total']} ({s['rounds_with_loss']})"
        print(f"{name:<21} {rate:>9} {ratio:>7} {iqr:>13} {s['rounds_complete']:>4} of {s['rounds']:<3} "
              f"{lost:>14} {s['sender_cpu_us_median']:>22.1f} {s['receiver_cpu_us_median']:>8.1f}")  # fmt: skip
    print("\nratio: records/s over the baseline's of the same round (stdlib, or the stdlib")
    print("receiver for the receiver-only rows), median of the rounds where neither lost a record")
    if profile_top:
        print(f"\nreceiver profile ({args.profile_receiver}), top by own time:\n{profile_top}")
    if args.json:
        doc = {
            "benchmark": "bench_receive",
            "environment": env,
            "argv": sys.argv,
            "senders": SENDERS,
            "records_per_sender": count,
            "summary": summary,
            "ratios": ratios,
            "rounds": results,
        }
        with Path(args.json).open("w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        print(f"wrote {args.json}")
    return 0


def summarize_profile(path: str) -> str:
    import io
    import pstats

    out = io.StringIO()
    with contextlib.suppress(OSError):
        pstats.Stats(path, stream=out).sort_stats("tottime").print_stats(15)
    return "\n".join(out.getvalue().splitlines()[6:])


if __name__ == "__main__":
    sys.exit(main())
