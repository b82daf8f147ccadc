"""The ``ctxlog`` command line (also ``python -m ctxlog``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctxlog", description="Contextual logging for web apps.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    commands.add_parser(
        "demo",
        help="serve an example app on 127.0.0.1, send requests from several users "
        "through a trusted proxy and print the log lines it produced",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from ctxlog._demo import run  # noqa: PLC0415 - only the demo needs its imports

        return run(sys.stdout)
    return 2  # pragma: no cover - argparse rejects unknown commands
