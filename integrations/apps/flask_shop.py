"""
The Flask app of the integration suites: ``ctxlog.flask.init_app`` and the app's own log-in.

Served by gunicorn (``flask_shop:app``, with ``gunicorn_conf.py``) and by waitress
(``waitress_serve.py flask_shop:app``). Logging is configured by the server's process from
``_applog`` before this module is imported; the app itself only logs.

The app authenticates as a Flask app does, in a ``before_request`` function that sets ``g.user``
(here from HTTP basic auth: any ``user-<n>`` whose password is ``secret``); ctxlog's
``init_app`` names that user on the records. Its only trusted proxy is 127.0.0.1, or those in
``CTXLOG_INTEGRATION_TRUSTED`` (comma-separated; empty: none, when waitress decides).

Routes (the Django project has the same ones):

``/health``
    Readiness; logs nothing.
``/view``
    Logs on ``shop.views`` and on Flask's own ``app.logger``; answers the request's fields. The
    test's request number (``?seq=N``) is in the view's message.
``/boom``
    Logs, then raises: Flask logs "Exception on /boom [GET]" with the traceback and answers 500.
``/stream``
    A streamed body (a plain generator, run by the server after the view returned) that logs
    before each chunk and after the last.
``/stream-boom``
    A streamed body that fails after its first chunk: the server logs the error, after ctxlog's
    middleware has left the request.
``/slow``
    Logs, waits until the test opens its gate (``_gate``), logs again: a request in flight
    when the server is told to stop.
``/burst?count=N``
    Logs N records, answers the delivery counters of this process (``_applog.delivery_stats``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import _gate
from _applog import delivery_stats
from flask import Flask, Response, current_app, g, request

import ctxlog.flask

#: The password of every user of this app.
PASSWORD = "secret"
#: Chunks of /stream.
CHUNKS = 3

log = logging.getLogger("shop.views")

app = Flask("flask_shop")
TRUSTED_PROXIES = [
    p for p in os.environ.get("CTXLOG_INTEGRATION_TRUSTED", "127.0.0.1").split(",") if p
]
ctxlog.flask.init_app(app, trusted_proxies=TRUSTED_PROXIES, access_log=True)


@app.before_request
def authenticate() -> None:
    """Log the user in from HTTP basic auth, the app's own way: ``g.user``, or None."""
    auth = request.authorization
    g.user = None
    if (
        auth is not None
        and auth.type == "basic"
        and (auth.username or "").startswith("user-")
        and auth.password == PASSWORD
    ):
        g.user = auth.username


def fields() -> dict[str, Any]:
    """Return the request's fields as the view sees them."""
    return {name: ctxlog.get_context().get(name) for name in ("ip", "user", "request_id")}


@app.get("/health")
def health() -> str:
    return "ok\n"


@app.get("/view")
def view() -> dict[str, Any]:
    log.info("view for %s seq=%s", g.user or "anonymous", request.args.get("seq", "-"))
    current_app.logger.info("flask's app logger in the view")
    return fields()


@app.get("/boom")
def boom() -> str:
    log.info("about to fail")
    msg = "the view failed"
    raise RuntimeError(msg)


@app.get("/stream")
def stream() -> Response:
    def body() -> Iterator[str]:
        # Runs while the server sends the body, after the view and Flask's request context.
        for number in range(CHUNKS):
            log.info("chunk %d", number)
            yield f"chunk {number}\n"
        log.info("stream done")

    return Response(body(), mimetype="text/plain")


@app.get("/stream-boom")
def stream_boom() -> Response:
    def body() -> Iterator[str]:
        log.info("chunk 0")
        yield "chunk 0\n"
        msg = "the stream failed"
        raise RuntimeError(msg)

    return Response(body(), mimetype="text/plain")


@app.get("/slow")
def slow() -> str:
    log.info("slow start")
    opened = _gate.wait()
    log.info("slow done")
    return "done\n" if opened else "the gate never opened\n"


@app.get("/burst")
def burst() -> dict[str, int]:
    for number in range(int(request.args.get("count", "0"))):
        log.info("burst %d", number)
    return delivery_stats()
