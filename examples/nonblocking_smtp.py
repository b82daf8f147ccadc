"""
A Starlette app that e-mails its errors without ever making a request wait for the mail server.

Start a local debugging mail server, then the app (see examples/README.md)::

    python -m aiosmtpd -n -l 127.0.0.1:8025
    python examples/nonblocking_smtp.py
    curl -u alice:wonderland http://127.0.0.1:8000/checkout

What it shows:

* ``ctxlog.nonblocking([mail, console])``: every record is put on one bounded queue per handler
  and the log call returns at once. A thread per handler delivers them, so a slow or unreachable
  mail server delays neither the response nor the console.
* ``ctxlog.handlers.DigestSMTPHandler`` at level ERROR: the first error is mailed at once, the
  ones that follow within ``SMTP_INTERVAL`` seconds arrive together in one digest.
* The e-mail body says which client, user and request the error belongs to, although it is sent
  from another thread: ctxlog's queue captures the request's fields when the record is logged.
* An exception handler that logs unhandled errors while the request's context is still set, so
  they are mailed with its fields too.
* Everything queued is handed to the mail server before uvicorn exits: ctxlog.ASGIMiddleware
  flushes at the lifespan shutdown (the app's own lifespan flush is optional).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import logging
import os
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import ctxlog
from ctxlog.handlers import DigestSMTPHandler

#: The console line; ip, user and request_id are put on every record by ctxlog's queue.
LOG_FORMAT = "%(asctime)s %(levelname)s %(ip)s %(user)s %(request_id)s %(name)s: %(message)s"

#: One line per record in the e-mail (ctxlog.Formatter); a traceback follows on "  | " lines.
MAIL_FORMAT = (
    "%(asctime)s %(levelname)s client=%(ip)s user=%(user)s request_id=%(request_id)s "
    "%(method)s %(path)s %(name)s: %(message)s"
)

# Demo accounts. A real app checks a password hash in a database.
USERS = {"alice": "wonderland", "bob": "builder"}

log = ctxlog.get_logger("shop")


def configure_logging(
    host: str | None = None,
    port: int | None = None,
    *,
    interval: float | None = None,
    stream=None,
) -> ctxlog.queue.NonBlockingHandler:
    """
    Send ERROR records by e-mail and every record to ``stream`` (stderr), without blocking.

    The mail server defaults to ``SMTP_HOST``:``SMTP_PORT`` (127.0.0.1:8025) and the time
    between e-mails to ``SMTP_INTERVAL`` seconds (60). Return the handler put on the root logger.
    """
    host = host or os.environ.get("SMTP_HOST", "127.0.0.1")
    port = port or int(os.environ.get("SMTP_PORT", "8025"))
    if interval is None:
        interval = float(os.environ.get("SMTP_INTERVAL", "60"))
    mail = DigestSMTPHandler(
        (host, port),
        "shop@localhost",
        ["ops@localhost"],
        "shop: errors",  # a fixed text: never put request data into a header
        timeout=5.0,
        interval=interval,
    )
    mail.setLevel(logging.ERROR)
    mail.setFormatter(ctxlog.Formatter(MAIL_FORMAT))
    console = logging.StreamHandler(stream or sys.stderr)
    console.setFormatter(ctxlog.Formatter(LOG_FORMAT))
    # No ContextFilter needed: the handler nonblocking() returns stamps the fields itself, in
    # the thread that logs. Records for the mail queue are only those at ERROR or above.
    handler = ctxlog.nonblocking([mail, console], maxsize=10_000, overflow="drop_newest")
    handler.addFilter(ctxlog.RedactFilter())  # secrets masked before a record is queued
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def authenticated_user(request) -> str | None:
    """Return the demo account named by the request's basic credentials, or None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    expected = USERS.get(name)
    if expected is None or not hmac.compare_digest(expected, password):
        log.warning("failed login for %r", name)  # %r: client text is not escaped
        return None
    return name


class PaymentGatewayError(Exception):
    """The (simulated) payment provider did not answer."""


def charge(user: str, amount: int) -> None:
    msg = f"payment gateway timed out charging {amount} EUR to {user}"
    raise PaymentGatewayError(msg)


async def home(request):
    log.info("home page")
    return JSONResponse(ctxlog.get_context())


async def checkout(request):
    user = authenticated_user(request)
    if user is None:
        return JSONResponse(
            {"error": "login required"}, 401, {"WWW-Authenticate": 'Basic realm="shop"'}
        )
    ctxlog.bind(user=user)  # every later record of this request names the user
    amount = int(request.query_params.get("amount", "12"))
    log.info("checking out %s EUR", amount)
    try:
        charge(user, amount)
    except PaymentGatewayError:
        # Returns at once: the record, traceback included, is only queued here.
        log.exception("checkout failed")
        return JSONResponse({"error": "payment failed, please retry"}, 502)
    return JSONResponse({"paid": amount})


async def boom(request):
    msg = "something broke"
    raise RuntimeError(msg)


async def server_error(request, exc):
    # Starlette calls this for any unhandled exception, still inside ctxlog.ASGIMiddleware, so
    # the record carries the request's fields (the server's own report of it does not).
    log.error("unhandled error", exc_info=exc)
    return JSONResponse({"error": "internal error"}, 500)


@contextlib.asynccontextmanager
async def lifespan(app):
    yield
    # uvicorn ends with the default SIGTERM action after a graceful shutdown, which skips
    # ctxlog's exit hook. ctxlog.ASGIMiddleware (below) already delivers what is queued, and
    # sends the collected digest, at the lifespan shutdown; this flush is not needed behind it
    # (it finds nothing left) and shows where an app without the middleware would flush.
    ctxlog.flush(timeout=10)


def create_app() -> ctxlog.ASGIMiddleware:
    """Build the Starlette app wrapped in ctxlog.ASGIMiddleware."""
    shop = Starlette(
        routes=[Route("/", home), Route("/checkout", checkout), Route("/boom", boom)],
        exception_handlers={Exception: server_error},
        lifespan=lifespan,
    )
    # Wrapping the whole app puts ctxlog outside Starlette's error middleware: the 500 page
    # carries the X-Request-ID header, and server_error() runs with the request's context.
    return ctxlog.ASGIMiddleware(shop, access_log=True)


app = create_app()


if __name__ == "__main__":
    configure_logging()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8000")),
        log_config=None,  # keep the logging set up above; uvicorn's loggers propagate to it
        access_log=False,  # ctxlog writes the access log
        proxy_headers=False,
    )
