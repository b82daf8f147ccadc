"""
Serve a WSGI app with waitress, stopping cleanly on SIGTERM: what a deployment's launcher does.

::

    python waitress_serve.py flask_shop:app --listen=127.0.0.1:8080 [--threads=8] [--trusted-proxy=IP]

``waitress-serve`` and :func:`waitress.serve` leave SIGTERM (what systemd, Docker and
Kubernetes send) to its default action, which ends the process on the spot: no ``atexit`` hook
runs, so the records ``ctxlog.nonblocking()`` still holds are lost. Only Ctrl-C (SIGINT) stops
waitress in order. This launcher makes SIGTERM do what Ctrl-C does: waitress's main loop ends,
its worker threads finish the requests they are running (waitress waits 5 s for them), and the
interpreter exits normally, so ctxlog's exit hook delivers everything queued.

waitress also removes ``X-Forwarded-For`` (and every other proxy header) from the environ
unless it trusts the peer itself (its ``trusted_proxy`` option), so ctxlog's
``trusted_proxies`` would never see the header. Two ways, both tested:

- Without ``--trusted-proxy``, ``clear_untrusted_proxy_headers=False``: ctxlog decides, from the
  proxies the app trusts. This is what the suite tests by default, because it is ctxlog's own
  trust decision under waitress. It is not the safer set-up for a deployment: the option makes
  waitress keep *every* proxy header from *every* peer (``Forwarded``,
  ``X-Forwarded-Proto``/``-Host``/``-Port``/``-By`` too), and anything else that reads them
  (Werkzeug's ``ProxyFix``, Django's ``SECURE_PROXY_SSL_HEADER``, a framework building URLs)
  believes what a client wrote. The apps here read none of them.
- ``--trusted-proxy=IP``: waitress decides. It gets ``trusted_proxy=IP`` and
  ``trusted_proxy_headers="x-forwarded-for"``, takes the right-most ``X-Forwarded-For`` entry as
  ``REMOTE_ADDR`` for requests from ``IP`` and removes the proxy headers of everyone else; the app
  runs with ``CTXLOG_INTEGRATION_TRUSTED=""`` (ctxlog trusts no proxy and logs ``REMOTE_ADDR``).

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
    parser.add_argument("--trusted-proxy", help="let waitress, not ctxlog, read X-Forwarded-For")
    options = parser.parse_args(argv)
    _applog.configure_from_env()
    module, _, name = options.app.partition(":")
    app = getattr(importlib.import_module(module), name)
    signal.signal(signal.SIGTERM, stop)
    trust: dict[str, object]
    if options.trusted_proxy:
        # waitress decides whom to believe, and removes every other proxy header.
        trust = {"trusted_proxy": options.trusted_proxy, "trusted_proxy_headers": "x-forwarded-for"}
    else:
        # ctxlog decides whom to believe; waitress keeps all proxy headers (see above).
        trust = {"clear_untrusted_proxy_headers": False}
    waitress.serve(app, listen=options.listen, threads=options.threads, **trust)


if __name__ == "__main__":
    main(sys.argv[1:])
