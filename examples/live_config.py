"""
Change the log levels of a running app without restarting it: ctxlog.config_server().

The app below logs a DEBUG, an INFO and a WARNING line on the logger "shop" every second, at
level INFO, so the DEBUG lines are not shown. It listens on 127.0.0.1:9030 for signed
configurations. Make a secret and start it:

    python -c "import secrets; print(secrets.token_hex(32))" > secret.txt
    CTXLOG_CONFIG_SECRET_FILE=secret.txt python examples/live_config.py

In another terminal, turn on the DEBUG lines:

    echo '{"version": 1, "loggers": {"shop": {"level": "DEBUG"}}}' > debug.json
    ctxlog config push debug.json --secret-file secret.txt

and off again, from a TOML file this time:

    printf 'version = 1\\n[loggers.shop]\\nlevel = "INFO"\\n' > quiet.toml
    ctxlog config push quiet.toml --secret-file secret.txt

The app logs "configuration applied from <address>: <changes>" on the logger ctxlog.config
after each change, or "configuration rejected from <address>: <reason>" if the secret is wrong,
the message is too old or replayed, or it asks for more than level changes. The secret can also
come from the environment variable CTXLOG_CONFIG_SECRET (16 characters or more).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import ctxlog

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def secret_from_environment() -> bytes | str | Path:
    path = os.environ.get("CTXLOG_CONFIG_SECRET_FILE")
    if path:
        return Path(path)  # read like --secret-file: one trailing newline removed
    secret = os.environ.get("CTXLOG_CONFIG_SECRET")
    if secret:
        return secret
    sys.exit("set CTXLOG_CONFIG_SECRET_FILE (a file) or CTXLOG_CONFIG_SECRET (the secret)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9030, help="0 picks a free port")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format=FORMAT, stream=sys.stdout)
    log = logging.getLogger("shop")
    with ctxlog.config_server(args.port, secret=secret_from_environment()) as server:
        print(f"listening on 127.0.0.1:{server.port}", flush=True)
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        tick = 0
        try:
            while deadline is None or time.monotonic() < deadline:
                tick += 1
                log.debug("tick %d: cache hit ratio 0.93", tick)
                log.info("tick %d: 12 orders open", tick)
                log.warning("tick %d: payment provider slow (1.8 s)", tick)
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
