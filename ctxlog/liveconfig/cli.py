"""
``ctxlog config push FILE``: the command line of the push client.

``ctxlog.cli`` parses the options and calls :func:`push_main`, which reads the secret file and
the configuration (a ``.json`` or ``.toml`` file), calls :func:`ctxlog.liveconfig.push`, and
turns what happened into a line on stdout or stderr and an exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from ctxlog.liveconfig.protocol import read_secret_file
from ctxlog.liveconfig.push import push

__all__ = ["push_main"]


def push_main(args: argparse.Namespace) -> int:
    """
    Run ``ctxlog config push``; return the exit status.

    0: sent and handled by the application (its log says whether it was applied); 1: the
    application could not be reached; 2: the file, the secret or an option is not usable.
    """
    try:
        secret = read_secret_file(args.secret_file)
        config = _read_config_file(args.file)
        push(config, secret=secret, host=args.host, port=args.port, timeout=args.timeout)
    except ValueError as error:
        sys.stderr.write(f"ctxlog config push: {error}\n")
        return 2
    except TimeoutError as error:
        sys.stderr.write(
            f"ctxlog config push: {error}; gave up (--timeout {args.timeout:g}). If the "
            "message was sent, the application's log says whether it was applied\n"
        )
        return 1
    except OSError as error:
        reason = error.strerror or str(error)
        sys.stderr.write(f"ctxlog config push: cannot send to {args.host}:{args.port}: {reason}\n")
        return 1
    sys.stdout.write(
        f"sent {args.file} to {args.host}:{args.port}; the application logs whether it "
        "applied it (logger ctxlog.config)\n"
    )
    return 0


def _read_config_file(path: str) -> dict[str, Any]:
    suffix = Path(path).suffix.lower()
    if suffix not in {".json", ".toml"}:
        msg = f"{path!r}: give a .json or a .toml file"
        raise ValueError(msg)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else error
        msg = f"cannot read {path!r}: {reason or error}"
        raise ValueError(msg) from None
    try:
        config = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except ValueError as error:
        msg = f"{path!r} is not valid {suffix[1:].upper()}: {error}"
        raise ValueError(msg) from None
    if not isinstance(config, dict):
        msg = f"{path!r} holds a {type(config).__name__}, not a dictConfig object"
        raise ValueError(msg)  # noqa: TRY004 - a file's content: a usage error, exit status 2
    return config
