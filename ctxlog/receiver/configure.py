"""
The logging ``ctxlog receive`` sets up: the output options checked, then a file or ``--config``.

:func:`configure` refuses an output option that would have no effect, naming the option to drop
and, with ``--config``, what to write in the configuration file instead: ``--config`` sets up
the output itself, so ``--format``, ``--schema``, ``--gcp-project``, ``--max-bytes`` and
``--backup-count`` belong in that file. Then it applies the file, or opens ``--file`` or
standard output with the line or JSON formatter the options name.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import sys
import tomllib
from pathlib import Path
from typing import Any

from ctxlog.receiver.output import (
    DEFAULT_FORMAT,
    LineFile,
    LineFormatter,
    LineStream,
    json_formatter,
)

__all__ = ["configure"]


def configure(args: argparse.Namespace) -> list[logging.Handler]:
    """
    Set up the receiver's logging from its options; return the handlers to flush after a read.

    Raises:
        ValueError: An option that would have no effect, or a file that cannot be read or
            opened; the message is the line to show.
    """
    own = logging.getLogger("ctxlog.receiver")
    own.propagate = False
    own.setLevel(logging.INFO)
    report = logging.StreamHandler(sys.stderr)
    report.setFormatter(logging.Formatter("ctxlog receive: %(message)s"))
    own.addHandler(report)
    if args.config:
        _refuse_beside_config(args)
        _apply_config(args.config)
        return []
    _check_output_options(args)
    if args.format == "json":
        formatter: logging.Formatter = json_formatter(args.schema, gcp_project=args.gcp_project)
    else:
        formatter = LineFormatter(args.format or DEFAULT_FORMAT)
    handler = _open_file(args) if args.file else LineStream(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    # Received records skip logger levels (Logger.handle); this level only keeps the
    # receiver's own libraries (asyncio's debug lines) out of the file.
    root.setLevel(logging.WARNING)
    return [handler]


def _check_output_options(args: argparse.Namespace) -> None:
    """Refuse, without ``--config``, an output option that another one leaves without effect."""
    if args.max_bytes and not args.file:
        msg = "--max-bytes needs --file"
        raise ValueError(msg)
    if args.backup_count is not None and not args.max_bytes:
        msg = "--backup-count needs --file and --max-bytes (without them no file rotates)"
        raise ValueError(msg)
    if args.schema and args.format != "json":
        msg = "--schema needs --format json"
        raise ValueError(msg)
    if args.gcp_project is not None and (args.format != "json" or args.schema != "gcp"):
        msg = "--gcp-project needs --format json --schema gcp"
        raise ValueError(msg)


def _refuse_beside_config(args: argparse.Namespace) -> None:
    """Refuse the output options ``--config`` leaves without effect, saying where they go."""
    given = {
        "--format": args.format,
        "--schema": args.schema,
        "--gcp-project": args.gcp_project,
        "--max-bytes": args.max_bytes or None,
        "--backup-count": args.backup_count,
    }
    names = [name for name, value in given.items() if value is not None]
    if not names:
        return
    toml = Path(args.config).suffix == ".toml"
    moves = []
    formatter: dict[str, Any] = {}
    if args.format == "json" or args.schema or args.gcp_project is not None:
        formatter["()"] = "ctxlog.receiver.json_formatter"
        formatter.update(
            (key, value)
            for key, value in (("schema", args.schema), ("gcp_project", args.gcp_project))
            if value is not None
        )
    elif args.format is not None:
        formatter = {"()": "ctxlog.receiver.LineFormatter", "fmt": args.format}
    if formatter:
        moves.append(f"a formatter {_table(formatter, toml=toml)}")
    handler = {"maxBytes": args.max_bytes or None, "backupCount": args.backup_count}
    if any(value is not None for value in handler.values()):
        rotating = {"class": "logging.handlers.RotatingFileHandler"}
        rotating.update((key, value) for key, value in handler.items() if value is not None)
        moves.append(f"a handler {_table(rotating, toml=toml)}")
    listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
    msg = (
        f"{listed} {'have' if len(names) > 1 else 'has'} no effect with --config, which sets "
        f"up the output: drop {'them' if len(names) > 1 else 'it'} and give {args.config} "
        + " and ".join(moves)
    )
    raise ValueError(msg)


def _table(items: dict[str, Any], *, toml: bool) -> str:
    """Return ``items`` as a JSON object, or as a TOML inline table."""
    if not toml:
        return json.dumps(items)
    pairs = (
        f"{key if key.isidentifier() else json.dumps(key)} = {json.dumps(value)}"
        for key, value in items.items()
    )
    return "{ " + ", ".join(pairs) + " }"


def _apply_config(name: str) -> None:
    """Apply the dictConfig in the file ``name`` (``--config``), JSON or TOML."""
    path = Path(name)
    try:
        text = path.read_text(encoding="utf-8")
        config = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as error:
        msg = f"cannot read --config {name!r}: {error}"
        raise ValueError(msg) from None
    if not isinstance(config, dict):
        msg = f"--config {name!r} does not hold a dictConfig object"
        raise ValueError(msg)  # noqa: TRY004 - main() turns a ValueError into exit status 2
    config.setdefault("version", 1)
    config.setdefault("disable_existing_loggers", False)
    try:
        logging.config.dictConfig(config)
    except (ValueError, TypeError, AttributeError, ImportError) as error:
        msg = f"--config {name!r} is not a valid logging configuration: {error}"
        raise ValueError(msg) from None


def _open_file(args: argparse.Namespace) -> LineFile:
    """Open ``--file``, rotating at ``--max-bytes`` with ``--backup-count`` files kept (5)."""
    backup_count = 5 if args.backup_count is None else args.backup_count
    if args.max_bytes < 0 or backup_count < 0:
        msg = "--max-bytes and --backup-count must not be negative"
        raise ValueError(msg)
    if args.max_bytes and not backup_count:
        # RotatingFileHandler's own rule: without a backup it never rotates, and the file
        # grows past the limit, reopened for every record.
        msg = "--max-bytes needs --backup-count of 1 or more (rotated files to keep)"
        raise ValueError(msg)
    try:
        return LineFile(
            args.file, maxBytes=args.max_bytes, backupCount=backup_count, encoding="utf-8"
        )
    except OSError as error:
        msg = f"cannot open --file {args.file!r}: {error.strerror or error}"
        raise ValueError(msg) from None
