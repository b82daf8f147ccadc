"""
A WSGI app whose records go to syslog as RFC 5424 messages, the request's context as structured data.

Start rsyslog with a TCP input (see docs/syslog.md), then the app, then make a request::

    python examples/syslog_app.py 127.0.0.1:514 tcp      # or SYSLOG_ADDRESS / SYSLOG_TRANSPORT
    curl -H 'X-Request-ID: order-1' 'http://127.0.0.1:8000/order?item=book'

Every record, including the access log line, arrives with
``[ctx@32473 ip="127.0.0.1" request_id="order-1" method="GET" path="/order"]``. The
SyslogHandler sits behind ``ctxlog.nonblocking()``, so a slow or absent syslog server never
delays a response; the console gets the same records.
"""

from __future__ import annotations

import logging
import os
import sys
from wsgiref.simple_server import make_server

import ctxlog
from ctxlog.handlers import SyslogHandler

LOG_FORMAT = "%(asctime)s %(levelname)s %(ip)s %(user)s %(request_id)s %(name)s: %(message)s"

log = ctxlog.get_logger("shop")


def configure_logging(address: str, transport: str, *, stream=None):
    """Send every record to syslog at ``address`` ("host:port") and to ``stream`` (stderr)."""
    host, _, port = address.rpartition(":")
    syslog = SyslogHandler((host, int(port)), transport=transport, app_name="shop")
    # syslog gets the bare message (and traceback): time, host and context are in the header
    # and the structured data. The default Formatter does exactly that.
    console = logging.StreamHandler(stream or sys.stderr)
    console.setFormatter(ctxlog.Formatter(LOG_FORMAT))
    handler = ctxlog.nonblocking([syslog, console])
    handler.addFilter(ctxlog.RedactFilter())  # secrets masked before a record is queued
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def shop(environ, start_response):
    if environ.get("PATH_INFO") == "/order":
        log.info("order placed")
        body = b"ordered\n"
    else:
        body = b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


application = ctxlog.WSGIMiddleware(shop, access_log=True)


if __name__ == "__main__":
    address = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SYSLOG_ADDRESS", "127.0.0.1:514")
    transport = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("SYSLOG_TRANSPORT", "tcp")
    configure_logging(address, transport)
    with make_server("127.0.0.1", int(os.environ.get("PORT", "8000")), application) as server:
        server.serve_forever()
