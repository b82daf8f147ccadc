"""The ``ctxlog`` command line (also ``python -m ctxlog``)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _request_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 100:
        msg = f"{text!r} is not a number of requests from 1 to 100"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        msg = f"{text!r} is not a positive number of seconds"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctxlog", description="Contextual logging for web apps.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    demo = commands.add_parser(
        "demo",
        help="serve an example app on 127.0.0.1 with an embedded slow SMTP server and "
        "ctxlog receive, send requests from several users through a trusted proxy, and "
        "report the log lines, the latency with and without nonblocking(), and what arrived",
    )
    demo.add_argument(
        "--requests",
        type=_request_count,
        default=9,
        metavar="N",
        help="failing checkouts in each of the two timed bursts (1-100, default 9)",
    )
    from ctxlog.receiver import add_arguments  # noqa: PLC0415 - stdlib only, kept out of import ctxlog

    add_arguments(
        commands.add_parser(
            "receive",
            help="receive records from JSONSocketHandler senders and write them to one place",
            description="Receive records sent by ctxlog.handlers.JSONSocketHandler (length-"
            "prefixed JSON frames, never pickle) from any number of processes and write them "
            "through one logging configuration: a rotating file, or your own dictConfig.",
        )
    )
    config = commands.add_parser(
        "config", help="change the logging configuration of a running app (see config push)"
    )
    config_commands = config.add_subparsers(dest="config_command", metavar="COMMAND")
    config_commands.required = True
    push = config_commands.add_parser(
        "push",
        help="send a signed logging configuration to an app running ctxlog.config_server()",
    )
    push.add_argument("file", help="a dictConfig as JSON (.json) or TOML (.toml)")
    push.add_argument("--host", default="127.0.0.1", help="the app's host (default 127.0.0.1)")
    push.add_argument("--port", type=int, default=9030, help="the app's port (default 9030)")
    push.add_argument(
        "--secret-file", required=True, help="a file holding the secret shared with the app"
    )
    push.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="give up (exit status 1) if connecting, sending and the app closing the connection "
        "take longer than this in all (default 5)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from ctxlog.demo import run  # noqa: PLC0415 - only the demo needs its imports

        return run(sys.stdout, requests=args.requests)
    if args.command == "receive":
        from ctxlog.receiver import main as receive  # noqa: PLC0415

        return receive(args)
    if args.command == "config":
        from ctxlog.liveconfig import push_main  # noqa: PLC0415

        return push_main(args)
    return 2  # pragma: no cover - argparse rejects unknown commands
