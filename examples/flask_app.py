"""
A small Flask app whose every log line names the client, the user and the request.

Run it with ``python examples/flask_app.py`` (see examples/README.md), then::

    curl -u alice:wonderland http://127.0.0.1:5000/account

What it shows:

* ``ctxlog.flask.init_app(app, ...)``: the request's context around ``app.wsgi_app``; the Flask
  app object stays the same.
* Authentication in a ``before_request`` function that sets ``g.user``, as in the Flask tutorial;
  ctxlog picks the user up from there, for the view's records and for the access log line.
* A streaming response: the generator runs after the view has returned, and its records still
  carry the request's fields (no ``stream_with_context`` needed for them).
* Work handed to a thread pool through ``ctxlog.ContextExecutor``: its records carry the fields
  of the request that handed it over.
* A plain ``logging.getLogger`` logger; ``ctxlog.ContextFilter`` on the handler adds the fields.
"""

from __future__ import annotations

import hmac
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from flask import Flask, Response, g, request

import ctxlog
import ctxlog.flask

LOG_FORMAT = "%(asctime)s %(levelname)s %(ip)s %(user)s %(request_id)s %(name)s: %(message)s"

# Demo accounts. A real app checks a password hash in a database.
USERS = {"alice": "wonderland", "bob": "builder"}

log = logging.getLogger("shop")

app = Flask(__name__)
ctxlog.flask.init_app(
    app,
    # The proxies in front of the app: an address, a network or a comma-separated list.
    trusted_proxies=os.environ.get("TRUSTED_PROXIES", "10.0.0.0/8"),
    access_log=True,
)

# One pool for the whole app. Each task runs in a copy of the Context of the code that submitted
# it, so what it logs names the request; a bare ThreadPoolExecutor would log "-".
pool = ctxlog.ContextExecutor(ThreadPoolExecutor(max_workers=4, thread_name_prefix="report"))


def configure_logging(stream=None):
    """Log to ``stream`` (default stderr) with the request fields; return the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    # On the handler, not on a logger: it then sees the records of every logger.
    handler.addFilter(ctxlog.RedactFilter())  # passwords, tokens, cookies masked first
    handler.addFilter(ctxlog.ContextFilter())
    handler.setFormatter(ctxlog.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def authenticated_user():
    """Return the name of the user whose basic credentials came with the request, or None."""
    auth = request.authorization
    if auth is None or auth.type != "basic" or auth.username is None:
        return None
    expected = USERS.get(auth.username)
    if expected is None or not hmac.compare_digest(expected, auth.password or ""):
        log.warning("failed login for %r", auth.username)  # %r: client text is not escaped
        return None
    return auth.username


@app.before_request
def load_user():
    """Authenticate every request; ctxlog names g.user on the records made from here on."""
    g.user = authenticated_user()


@app.get("/")
def home():
    log.info("home page")
    return {"request_id": ctxlog.get_context()["request_id"]}


@app.get("/account")
def account():
    if g.user is None:
        return Response("login required\n", 401, {"WWW-Authenticate": 'Basic realm="shop"'})
    log.info("account page")
    return {"user": g.user}


@app.get("/stream")
def stream():
    def lines():
        for number in range(3):
            log.info("sending chunk %d", number)
            yield f"line {number}\n"

    return Response(lines(), mimetype="text/plain")


def summarize(section):
    """Build one section of a report; runs in a pool thread."""
    log.info("summarizing %s", section)
    return f"{section}: ok"


@app.get("/report")
def report():
    # The pool's tasks run in copies of this request's context: they see g.user too.
    return {"sections": list(pool.map(summarize, ["orders", "payments", "refunds"]))}


if __name__ == "__main__":
    configure_logging()
    # Werkzeug logs its own request line outside the request's context; ctxlog's access log
    # (logger ctxlog.access) replaces it.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    print("serving on http://127.0.0.1:5000 (Ctrl-C to stop)")
    app.run(host="127.0.0.1")
