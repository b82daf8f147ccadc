"""
The Flask app tests/test_gunicorn.py serves under real gunicorn masters.

Logging is configured when the module is imported, as an app does: the root logger sends every
record through ``ctxlog.nonblocking([JSONSocketHandler(...)])`` to the ``ctxlog receive`` whose
port is in ``CTXLOG_TEST_RECEIVER_PORT``. ``CTXLOG_TEST_KIND`` names the server in the messages.

The module logs once when it is imported (in the master with ``--preload``, before it forks) and
once from an exit handler in every process that imported it (a forked worker inherits the
handler), so records logged while a process starts and ends are checked too.
"""

from __future__ import annotations

import atexit
import logging
import os
import time

import gunicorn_pricing
from flask import Flask, Response, request

import ctxlog
from ctxlog.handlers import JSONSocketHandler

KIND = os.environ["CTXLOG_TEST_KIND"]
RECEIVER_PORT = int(os.environ["CTXLOG_TEST_RECEIVER_PORT"])

root = logging.getLogger()
root.addHandler(ctxlog.nonblocking([JSONSocketHandler("127.0.0.1", RECEIVER_PORT)]))
root.setLevel(logging.INFO)

log = logging.getLogger("shop")

app = Flask(__name__)
app.wsgi_app = ctxlog.WSGIMiddleware(app.wsgi_app, trusted_proxies=["127.0.0.1"])


def _exiting() -> None:
    # Registered after nonblocking(): exit handlers run last-in first-out, so this record is
    # queued before ctxlog drains its queues.
    log.info("process exiting kind=%s pid=%d", KIND, os.getpid())


atexit.register(_exiting)
log.info("app loaded kind=%s pid=%d", KIND, os.getpid())


@app.get("/order")
def order() -> Response | dict[str, int]:
    """Price one order; ``?fail=1`` makes the pricing fail and the error is logged."""
    seq = int(request.headers["X-Seq"])
    ctxlog.bind(user=request.headers["X-User"])
    log.info("order seq=%d start kind=%s", seq, KIND)
    try:
        total = gunicorn_pricing.price(seq, fail=request.args.get("fail") == "1")
    except ValueError:
        log.exception("order seq=%d failed", seq)
        return Response("failed\n", 500)
    log.info("order seq=%d done total=%d", seq, total)
    return {"seq": seq, "total": total}


@app.get("/slow")
def slow() -> dict[str, int]:
    """Take ``?seconds=`` to answer: the request is still running when the server is stopped."""
    seq = int(request.headers["X-Seq"])
    ctxlog.bind(user=request.headers["X-User"])
    log.info("slow seq=%d start kind=%s", seq, KIND)
    time.sleep(float(request.args.get("seconds", "2")))
    log.info("slow seq=%d done", seq)
    return {"seq": seq}
