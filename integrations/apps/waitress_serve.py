"""
Serve a WSGI app with waitress, stopping cleanly on SIGTERM: what a deployment's launcher does.

::

    python waitress_serve.py flask_shop:app --listen=127.0.0.1:8080 [--threads=8]

``waitress-serve`` and :func:`waitress.serve` leave SIGTERM (what systemd, Docker and
Kubernetes send) to its default action, which ends the process on the spot: no ``atexit`` hook
runs, so the records ``ctxlog.nonblocking()`` still holds are lost. Only Ctrl-C (SIGINT) stops
waitress in order. This launcher makes SIGTERM do what Ctrl-C does: waitress's main loop ends,
its worker threads finish the requests they are running (waitress waits 5 s for them), and the
interpreter exits normally, so ctxlog's exit hook delivers everything queued.

waitress also removes ``X-Forwarded-For`` (and every other proxy header) from the environ
unless it trusts the peer itself (its ``trusted_proxy`` option), so ctxlog's
``trusted_proxies`` would never see the header. ``clear_untrusted_proxy_headers=False`` leaves
the header to the app, where ctxlog believes it only from the proxies the app trusts. (The other
way: give waitress ``trusted_proxy`` and ``trusted_proxy_headers="x-forwarded-for"``; then
``REMOTE_ADDR`` is already the client and ctxlog needs no ``trusted_proxies``.)

Logging is configured from ``_applog`` (``CTXLOG_INTEGRATION_LOG``) before the app is imported.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from types import FrameType

import _applog
import waitress


def stop(signum: int, frame: FrameType | None) -> None:
    """End waitress's main loop as Ctrl-C would; the process then exits normally."""
    raise KeyboardInterrupt


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("app", help="module:attribute of the WSGI application")
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--threads", type=int, default=8)
    options = parser.parse_args(argv)
    _applog.configure_from_env()
    module, _, name = options.app.partition(":")
    app = getattr(importlib.import_module(module), name)
    signal.signal(signal.SIGTERM, stop)
    # ctxlog, not waitress, decides whom to believe (see the module documentation).
    waitress.serve(
        app,
        listen=options.listen,
        threads=options.threads,
        clear_untrusted_proxy_headers=False,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
