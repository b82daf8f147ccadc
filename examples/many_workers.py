"""
Many gunicorn workers, one log file: every worker sends its records to one ``ctxlog receive``.

In one terminal, the receiver (the only process that writes the file)::

    ctxlog receive --listen 127.0.0.1:9020 --file shop.log --max-bytes 1MB --backup-count 3

In another, the app under gunicorn with four workers::

    gunicorn -w 4 --chdir examples many_workers:app

and then::

    curl -H 'X-User: alice' http://127.0.0.1:8000/pay?amount=12
    tail shop.log

What it shows:

* ``ctxlog.nonblocking([JSONSocketHandler(...)])`` set up at import, so in every worker: each
  worker opens its own connection, and a request never waits for the network.
* The receiver's line carries the request's fields and the worker that sent it.
* Stopping gunicorn (Ctrl-C or SIGTERM) delivers what the workers logged while shutting down.

``RECEIVER`` (default ``127.0.0.1:9020``) says where the receiver listens.
"""

from __future__ import annotations

import logging
import os

import ctxlog
from ctxlog.handlers import JSONSocketHandler

host, _, port = os.environ.get("RECEIVER", "127.0.0.1:9020").rpartition(":")
queue = ctxlog.nonblocking([JSONSocketHandler(host, int(port))])
queue.addFilter(ctxlog.RedactFilter())  # secrets masked before a record is queued and sent
logging.basicConfig(level=logging.INFO, handlers=[queue])
log = logging.getLogger("shop")


def shop(environ, start_response):
    """A two-route WSGI app: /pay logs a payment, anything else a page view."""
    # A real app authenticates here; the example trusts a header to stay short.
    user = environ.get("HTTP_X_USER")
    if user:
        ctxlog.bind(user=user)
    if environ["PATH_INFO"] == "/pay":
        log.info("paid %s EUR", environ.get("QUERY_STRING", "").removeprefix("amount=") or "0")
    else:
        log.info("page viewed")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]


app = ctxlog.WSGIMiddleware(
    shop,
    trusted_proxies=os.environ.get("TRUSTED_PROXIES", "10.0.0.0/8"),
    access_log=True,
)
