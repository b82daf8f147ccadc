"""
JSON lines for a log store: a small WSGI shop logging through ``ctxlog.JSONFormatter``.

    python examples/json_logs.py
    python examples/json_logs.py | jq -c '{level: ."log.level", message, user: .user.name}'
    python examples/json_logs.py | jq 'select(."log.level" == "error") | .error'

It serves three requests in-process (no server, nothing to install beyond ctxlog) and prints
every record they log as one JSON object a line, with Elastic Common Schema names
(``schema="ecs"``): the request's address, user, id, method and path under ``client``, ``user``,
``http`` and ``url``; a field bound with ``ctxlog.bind()`` and an ``extra=`` value under their
own names; a traceback under ``error``; and ctxlog's access line for each request.

``ctxlog.RedactFilter`` comes first on the handler, so a password in an ``extra=``, a token in a
message and a password in an exception's message are ``***`` before the formatter reads them.
Ship the lines with any agent that reads JSON (Filebeat, Fluent Bit, Vector, the OpenTelemetry
collector's ``filelog`` receiver). ``ctxlog receive --format json --schema ecs`` writes the same
lines for records sent from many processes (``docs/network.md``).
"""

from __future__ import annotations

import io
import logging
import sys
from urllib.parse import parse_qs
from wsgiref.util import setup_testing_defaults

import ctxlog

log = logging.getLogger("shop")


def configure_logging(stream=None):
    """Write every record to ``stream`` (stdout) as one JSON line, secrets masked first."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.addFilter(ctxlog.RedactFilter())  # first: nothing after it sees a secret
    handler.addFilter(ctxlog.ContextFilter())
    handler.setFormatter(ctxlog.JSONFormatter(schema="ecs", static={"service.name": "shop"}))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


class GatewayError(Exception):
    """The payment gateway refused a call."""


def refund(order):
    gateway = "https://shop:s3cr3t-gw-pass@pay.example.com/refunds"
    msg = f"{gateway} answered 503 for order {order}"
    raise GatewayError(msg)


def shop(environ, start_response):
    query = {key: values[0] for key, values in parse_qs(environ["QUERY_STRING"]).items()}
    path = environ["PATH_INFO"]
    status = "200 OK"
    if path == "/login":
        ctxlog.bind(user=query["user"])  # what your authentication does
        log.info("login", extra={"password": query["password"], "remember_me": True})
    elif path == "/pay":
        ctxlog.bind(user=query["user"], order_id=int(query["order"]))  # on every later line
        log.info("paid %s EUR with token=%s", query["amount"], "tok_4242", extra={"amount": 12})
    elif path == "/refund":
        ctxlog.bind(user=query["user"], order_id=int(query["order"]))
        try:
            refund(query["order"])
        except GatewayError:
            log.exception("refund failed")
            status = "502 Bad Gateway"
    start_response(status, [("Content-Type", "text/plain")])
    return [status.encode() + b"\n"]


app = ctxlog.WSGIMiddleware(shop, access_log=True)


def call(method, path, query="", *, ip="203.0.113.7"):
    """Call the app as a WSGI server would, for one request; return the status."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REMOTE_ADDR": ip,
        "wsgi.input": io.BytesIO(),
    }
    setup_testing_defaults(environ)
    answer = {}
    body = app(environ, lambda status, headers, exc_info=None: answer.update(status=status))
    try:
        b"".join(body)
    finally:
        if hasattr(body, "close"):
            body.close()  # where the middleware ends the request and writes the access line
    return answer["status"]


def main():
    configure_logging()
    call("POST", "/login", "user=alice&password=wonderland")
    call("POST", "/pay", "user=alice&order=7&amount=12")
    call("POST", "/refund", "user=bob&order=8", ip="198.51.100.4")


if __name__ == "__main__":
    main()
