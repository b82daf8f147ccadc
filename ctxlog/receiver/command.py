"""
The ``ctxlog receive`` command: its options, the logging it sets up, and the run until a signal.

:func:`add_arguments` adds the options to the ``receive`` sub-command of ``ctxlog``
(:mod:`ctxlog.cli`), and :func:`main` runs it: it reads the key and the TLS files, sets up the
output (:mod:`~ctxlog.receiver.configure`: a rotating file or standard output with
:class:`~ctxlog.receiver.LineFormatter` or JSON lines, or the user's own dictConfig), serves
until SIGTERM or SIGINT, then stops in order and says what it received and what it refused.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import ssl
import sys
from pathlib import Path
from typing import Final

from ctxlog.receiver.configure import configure
from ctxlog.receiver.report import log
from ctxlog.receiver.server import Receiver
from ctxlog.record.schemas import gcp_trace_prefix
from ctxlog.wire import MAX_BODY

__all__ = [
    "add_arguments",
    "main",
    "parse_gcp_project",
    "parse_listen",
    "parse_size",
    "read_secret",
]

_SIZE: Final = re.compile(r"(?i)\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*")
_UNITS: Final = dict(
    zip(
        ("", "b", "k", "kb", "kib", "m", "mb", "mib", "g", "gb", "gib"),
        (1, 1, 1024, 1000, 1024, 1024**2, 1000**2, 1024**2, 1024**3, 1000**3, 1024**3),
        strict=True,
    )
)

#: A project id (6 to 30 characters), after an optional domain for the older domain-scoped ids.


def parse_size(text: str) -> int:
    """
    Return a size given as ``10MB``, ``512KiB``, ``1G`` or plain bytes, in bytes.

    ``K``, ``M``, ``G``, ``KiB``, ``MiB`` and ``GiB`` are powers of 1024; ``KB``, ``MB`` and
    ``GB`` powers of 1000.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        msg = f"{text!r} is not a size (examples: 10MB, 512KiB, 1048576)"
        raise argparse.ArgumentTypeError(msg)
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def parse_listen(text: str) -> tuple[str, int]:
    """Return ``(host, port)`` from ``HOST:PORT``, ``[IPv6]:PORT`` or ``PORT``."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        msg = f"{text!r} is not HOST:PORT (example: 127.0.0.1:9020)"
        raise argparse.ArgumentTypeError(msg)
    return host, int(port)


def parse_gcp_project(text: str) -> str:
    """Return ``text`` if it is a Google Cloud project id (``my-shop``, ``example.com:shop``)."""
    try:
        gcp_trace_prefix(text)  # JSONFormatter's own check: one rule for both
    except ValueError as error:
        said = str(error).removeprefix("JSONFormatter: gcp_project=")
        raise argparse.ArgumentTypeError(said) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``ctxlog receive`` to ``parser``."""
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 9020),
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:9020; port 0 picks a free one)",
    )
    _add_output_options(parser)
    _add_security_options(parser)
    _add_limit_options(parser)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    """Add where records are written, and how: ``--file`` or ``--config``, rotation, format."""
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--file", help="write to this file (default: standard output)")
    out.add_argument(
        "--config",
        help="a logging dictConfig as JSON (.json) or TOML (.toml) to write through instead",
    )
    parser.add_argument(
        "--max-bytes",
        type=parse_size,
        default=0,
        metavar="SIZE",
        help="with --file: rotate when the file would grow past SIZE (e.g. 10MB)",
    )
    parser.add_argument(
        "--backup-count",
        type=int,
        default=None,
        metavar="N",
        help="with --file and --max-bytes: rotated files to keep (default 5)",
    )
    parser.add_argument(
        "--format",
        default=None,
        help="a %%-style line format (default shows the fields), or json: one JSON object a line",
    )
    parser.add_argument(
        "--schema",
        choices=("ecs", "otel", "gcp"),
        default=None,
        help="with --format json: the field names of Elastic (ecs), OpenTelemetry (otel) or "
        "Google Cloud Logging (gcp); default ctxlog's own",
    )
    parser.add_argument(
        "--gcp-project",
        type=parse_gcp_project,
        default=None,
        metavar="ID",
        help="with --format json --schema gcp: the Cloud project, so that traces are written "
        "as projects/ID/traces/TRACE_ID, which Cloud Logging links to Cloud Trace",
    )


def _add_security_options(parser: argparse.ArgumentParser) -> None:
    """Add the shared key and the TLS certificate."""
    parser.add_argument(
        "--secret-file", help="accept only frames signed with the key in this file (16+ bytes)"
    )
    parser.add_argument("--tls-cert", help="serve TLS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", help="the private key for --tls-cert (PEM)")


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    """Add the limits on what peers may send and hold: sizes, counts, times."""
    parser.add_argument(
        "--max-frame",
        type=parse_size,
        default=MAX_BODY,
        metavar="SIZE",
        help="largest frame accepted (default 1MiB)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=1024,
        metavar="N",
        help="connections served at once (default 1024)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="close a connection silent this long (default 300)",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="close a connection whose frame is not whole this long after it began, or that "
        "has sent no valid frame (TLS handshake included) this long after it opened (default 10)",
    )
    parser.add_argument(
        "--max-buffered",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="most bytes of unfinished frames held for all connections together; when over, "
        "the connection holding the most is closed (default 64MiB, at least --max-frame)",
    )
    parser.add_argument(
        "--replay-window",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="with --secret-file: refuse a frame signed further than this from the receiver's "
        "clock, and any frame seen before (default 300)",
    )


def read_secret(path: str) -> bytes:
    """Return the key in ``path`` (one trailing newline removed); it must be 16+ bytes."""
    try:
        secret = Path(path).read_bytes()
    except OSError as error:
        msg = f"cannot read the secret file {path!r}: {error.strerror or error}"
        raise ValueError(msg) from None
    secret = secret.removesuffix(b"\n").removesuffix(b"\r")
    if len(secret) < 16:
        msg = f"the secret in {path!r} is {len(secret)} bytes; use at least 16 random bytes"
        raise ValueError(msg)
    return secret


def main(args: argparse.Namespace) -> int:
    """Run ``ctxlog receive`` until SIGTERM or SIGINT; return the exit status."""
    try:
        secret = read_secret(args.secret_file) if args.secret_file else None
        tls = _server_tls(args.tls_cert, args.tls_key)
        host, port = args.listen
        receiver = Receiver(
            host,
            port,
            secret=secret,
            max_frame=args.max_frame,
            max_connections=args.max_connections,
            idle_timeout=args.idle_timeout,
            read_timeout=args.read_timeout,
            tls=tls,
            max_buffered=args.max_buffered,
            replay_window=args.replay_window,
        )
        receiver.flush_after_batch = configure(args)
    except ValueError as error:
        sys.stderr.write(f"ctxlog receive: {error}\n")
        return 2
    _raise_fd_limit()
    try:
        return asyncio.run(_serve(receiver))
    finally:
        logging.shutdown()


def _server_tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not (cert or key):
        return None
    if not (cert and key):
        msg = "--tls-cert and --tls-key go together"
        raise ValueError(msg)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        tls.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        msg = f"cannot load --tls-cert/--tls-key: {error}"
        raise ValueError(msg) from None
    return tls


def _raise_fd_limit() -> None:
    try:
        import resource  # noqa: PLC0415 - POSIX only

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX or not allowed
        pass


async def _serve(receiver: Receiver) -> int:
    # The handlers come first: a SIGTERM that arrives as soon as the port accepts must stop
    # the receiver in order (writing what it has), not end the process on the spot.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await receiver.start()
    except OSError as error:
        sys.stderr.write(
            f"ctxlog receive: cannot listen on {receiver.host}:{receiver.port}: "
            f"{error.strerror or error}\n"
        )
        return 1
    host = f"[{receiver.host}]" if ":" in receiver.host else receiver.host
    signed = ""
    if receiver.replay is not None:
        signed = f", signed frames only (replay window {receiver.replay.window:g} s)"
    log.info("listening on %s:%d%s", host, receiver.port, signed)
    await stop.wait()
    await receiver.stop()
    _say_stopped(receiver)
    return 0


def _say_stopped(receiver: Receiver) -> None:
    """Log the closing summary: what came in, and what was refused and why."""
    stats = receiver.stats()
    rejected = ", ".join(f"{k}: {v}" for k, v in sorted(stats["rejected"].items())) or "none"
    log.info(
        "stopped: %d records from %d connections; refused %d, closed idle %d, rejected: %s",
        stats["received"],
        stats["accepted"],
        stats["refused"],
        stats["idle_closed"],
        rejected,
    )
