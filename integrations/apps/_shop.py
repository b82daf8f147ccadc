"""
What the Starlette and the FastAPI integration apps share: ctxlog's set-up, lifespan, view bodies.

The views log the query parameter ``seq`` the test client numbers its requests with, so
that the test can tell which request a record is about without trusting its fields.

Each app names its user its framework's way (Starlette: ``AuthenticationMiddleware``, FastAPI:
``ctxlog.fastapi.bind_user``) and routes the requests here. ``CTXLOG_INTEGRATION_TRUSTED`` (by
default ``127.0.0.1``, the test client) lists the trusted proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import _gate
from _applog import delivery_stats

import ctxlog

#: The logger of the views.
log = logging.getLogger("shop.views")

TRUSTED_PROXIES = os.environ.get("CTXLOG_INTEGRATION_TRUSTED", "127.0.0.1").split(",")


def wrap(app: Any) -> ctxlog.ASGIMiddleware:
    """
    Put ctxlog outside everything else, Starlette's error middleware included.

    So the 500 that Starlette sends for an unhandled exception carries X-Request-ID too
    (``app.add_middleware(ctxlog.ASGIMiddleware)`` would sit inside that error middleware).
    """
    return ctxlog.ASGIMiddleware(app, trusted_proxies=TRUSTED_PROXIES, access_log=True)


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """
    Log start and stop.

    No ``ctxlog.flush()`` here: ``ctxlog.ASGIMiddleware`` delivers what is queued once this
    returns and before uvicorn hears the shutdown is complete (and re-raises SIGTERM); the
    uvicorn pairings' SIGTERM tests depend on it.
    """
    log.info("app started pid=%d", os.getpid())
    yield
    log.info("app stopping pid=%d", os.getpid())


def fields() -> dict[str, Any]:
    """Return the request's fields as the app sees them (the response body of most views)."""
    return {name: ctxlog.get_context().get(name) for name in ("ip", "user", "request_id")}


async def visit(kind: str, seq: str | None) -> dict[str, Any]:
    """Log twice with other requests' tasks running in between."""
    log.info("visit %s start seq=%s", kind, seq)
    await asyncio.sleep(0.001)
    log.info("visit %s done seq=%s", kind, seq)
    return fields()


def visit_sync(seq: str | None) -> dict[str, Any]:
    """Log from a sync view (the framework's thread pool)."""
    log.info("visit sync seq=%s", seq)
    return fields()


def after_response(seq: str | None) -> None:
    """Log from a background task, after the response was sent."""
    log.info("background task seq=%s", seq)


class ShopError(RuntimeError):
    """The exception the failing view raises."""


def fail(seq: str | None) -> None:
    """Log, then raise an exception the app does not handle."""
    log.info("about to fail seq=%s", seq)
    msg = f"no price for {ctxlog.get_context().get('request_id')}"
    raise ShopError(msg)


async def chunks(count: int, seq: str | None) -> AsyncIterator[bytes]:
    """Yield ``count`` lines of a streamed body, logging each, with pauses between them."""
    for number in range(count):
        log.info("chunk %d seq=%s", number, seq)
        yield f"chunk {number} {ctxlog.get_context().get('request_id')}\n".encode()
        await asyncio.sleep(0.01)
    log.info("stream done seq=%s", seq)


async def websocket_session(receive_text: Any, send_text: Any) -> None:
    """Echo text messages until the client sends ``bye``, logging each."""
    while True:
        text = await receive_text()
        log.info("ws got %s", text)
        await asyncio.sleep(0.001)
        await send_text(f"{text} {ctxlog.get_context().get('request_id')}")
        if text == "bye":
            return


async def slow() -> AsyncIterator[bytes]:
    """Stream a line, wait until the test opens the gate (``_gate``), stream another."""
    log.info("slow start")
    yield b"started\n"
    opened = await _gate.wait_async()
    log.info("slow done")
    yield b"done\n" if opened else b"the gate never opened\n"


def burst(count: int) -> dict[str, Any]:
    """Log ``count`` records at once; return the delivery counters right after."""
    for number in range(count):
        log.info("burst %d", number)
    return {**fields(), **delivery_stats()}
