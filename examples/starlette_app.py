"""
A small Starlette shop whose every log line names the client, the user and the request.

Run it with ``python examples/starlette_app.py`` (see examples/README.md), then::

    curl -u alice:wonderland http://127.0.0.1:8000/pay?amount=12

What it shows:

* ``ctxlog.ASGIMiddleware`` wraps the whole application, so it is the outermost layer: even the
  500 page of Starlette's error middleware carries the ``X-Request-ID`` header.
* Starlette's ``AuthenticationMiddleware`` runs *inside* it; ctxlog still logs the user it
  authenticates, because the user is looked up lazily until it is known.
* Records made in an async view, a sync view (run in a thread pool), a streaming body and a
  background task all carry the same request fields.
* Logging is set up with ``logging.config.dictConfig`` and ``"()": "ctxlog.ContextFilter"``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging.config
import os

import uvicorn
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

import ctxlog

#: The format every handler uses; ip, user and request_id come from ctxlog.ContextFilter.
LOG_FORMAT = "%(asctime)s %(levelname)s %(ip)s %(user)s %(request_id)s %(name)s: %(message)s"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "ctxlog.RedactFilter"},  # passwords, tokens, cookies masked first
        "context": {"()": "ctxlog.ContextFilter"},
    },
    "formatters": {"plain": {"class": "ctxlog.Formatter", "format": LOG_FORMAT}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "plain",
            # On the handler, so records of every logger (uvicorn's too) get the fields.
            "filters": ["redact", "context"],
        },
    },
    "root": {"level": "INFO", "handlers": ["console"]},
    # uvicorn's own loggers propagate to the root handler instead of printing on their own.
    "loggers": {
        "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
        "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
    },
}

# Demo accounts. A real app checks a password hash in a database.
USERS = {"alice": "wonderland", "bob": "builder"}

log = ctxlog.get_logger("shop")


class BasicAuthBackend(AuthenticationBackend):
    """Accept HTTP basic credentials for the demo accounts."""

    async def authenticate(self, conn):
        header = conn.headers.get("Authorization")
        if header is None:
            return None  # anonymous: scope["user"] is an UnauthenticatedUser, logged as "-"
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            msg = "malformed basic credentials"
            raise AuthenticationError(msg) from None
        expected = USERS.get(name)
        if expected is None or not hmac.compare_digest(expected, password):
            # %r: the name comes from the client, and message arguments are not escaped.
            log.warning("failed login for %r", name)
            msg = "wrong user name or password"
            raise AuthenticationError(msg)
        return AuthCredentials(["authenticated"]), SimpleUser(name)


async def home(request):
    log.info("home page")
    return JSONResponse(ctxlog.get_context())


async def pay(request):
    amount = int(request.query_params.get("amount", "0"))
    ctxlog.bind(amount=amount)  # on every later record of this request, the access line too
    log.info("paid %s EUR", amount)
    return JSONResponse({"paid": amount})


def report(request):
    # A plain function: Starlette runs it in a worker thread. The request's fields follow it
    # there, and a bind() made there is seen by the access log line written afterwards.
    ctxlog.bind(report="daily")
    log.info("report built")
    return JSONResponse({"report": "daily"})


async def stream(request):
    async def lines():
        for number in range(3):
            log.info("sending chunk %d", number)
            yield f"line {number}\n"
            await asyncio.sleep(0)

    return StreamingResponse(lines(), media_type="text/plain")


def send_welcome_mail(name):
    # Runs after the response has been sent, still with the request's fields.
    log.info("welcome mail queued for %s", name)


async def signup(request):
    name = request.query_params.get("name", "guest")
    log.info("signing up")
    return JSONResponse({"ok": True}, background=BackgroundTask(send_welcome_mail, name))


async def boom(request):
    msg = "something broke"
    raise RuntimeError(msg)


def create_app(trusted_proxies="10.0.0.0/8"):
    """Build the Starlette app wrapped in ctxlog.ASGIMiddleware."""
    shop = Starlette(
        routes=[
            Route("/", home),
            Route("/pay", pay),
            Route("/report", report),
            Route("/stream", stream),
            Route("/signup", signup),
            Route("/boom", boom),
        ],
        middleware=[Middleware(AuthenticationMiddleware, backend=BasicAuthBackend())],
    )
    # Wrapping the app (instead of shop.add_middleware) puts ctxlog outside Starlette's own
    # error middleware too.
    return ctxlog.ASGIMiddleware(shop, trusted_proxies=trusted_proxies, access_log=True)


# The proxies in front of the app: an address, a network or a comma-separated list.
app = create_app(os.environ.get("TRUSTED_PROXIES", "10.0.0.0/8"))


if __name__ == "__main__":
    logging.config.dictConfig(LOGGING)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8000")),
        log_config=LOGGING,
        # ctxlog writes the access log and works out the client address itself.
        access_log=False,
        proxy_headers=False,
    )
