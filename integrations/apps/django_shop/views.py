"""
The views of the integration suites' Django project; the routes match the Flask app's.

``/view`` and ``/aview`` (sync and async) log and answer the user's request fields, or 401 for
an anonymous request (Django logs that on ``django.request``), with the test's request number
(``?seq=N``) in their messages; ``/boom`` and ``/aboom`` raise
(Django logs the traceback on ``django.request`` and answers 500); ``/stream`` and
``/astream`` stream a body from a sync and an async iterator; ``/stream-boom`` fails after its
first chunk (the server logs it); ``/slow`` logs, waits until the test opens its gate
(``_gate``) and logs again; ``/burst?count=N`` logs N records and answers the delivery
counters of this process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import _gate
from _applog import delivery_stats
from asgiref.sync import sync_to_async
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

import ctxlog

#: Chunks of /stream and /astream.
CHUNKS = 3

log = logging.getLogger("shop.views")


def fields() -> dict[str, Any]:
    """Return the request's fields as the view sees them."""
    return {name: ctxlog.get_context().get(name) for name in ("ip", "user", "request_id")}


def health(request: Any) -> HttpResponse:
    return HttpResponse("ok\n")


def view(request: Any) -> HttpResponse:
    user = request.user
    log.info("view for %s seq=%s", user.get_username() or "anonymous", request.GET.get("seq", "-"))
    if not user.is_authenticated:
        return HttpResponse("login required\n", status=401)
    return JsonResponse(fields())


async def aview(request: Any) -> HttpResponse:
    user = await request.auser()
    name = user.get_username() or "anonymous"
    log.info("async view for %s seq=%s", name, request.GET.get("seq", "-"))
    await asyncio.sleep(0.001)  # other requests' tasks run in between
    if not user.is_authenticated:
        return HttpResponse("login required\n", status=401)
    log.info("async view done seq=%s", request.GET.get("seq", "-"))
    return JsonResponse(fields())


def boom(request: Any) -> HttpResponse:
    log.info("about to fail")
    msg = "the view failed"
    raise RuntimeError(msg)


async def aboom(request: Any) -> HttpResponse:
    log.info("about to fail")
    await asyncio.sleep(0)
    msg = "the view failed"
    raise RuntimeError(msg)


def stream(request: Any) -> StreamingHttpResponse:
    def body() -> Iterator[str]:
        for number in range(CHUNKS):
            log.info("chunk %d", number)
            yield f"chunk {number}\n"
        log.info("stream done")

    return StreamingHttpResponse(body(), content_type="text/plain")


async def astream(request: Any) -> StreamingHttpResponse:
    async def body() -> AsyncIterator[str]:
        for number in range(CHUNKS):
            log.info("chunk %d", number)
            await asyncio.sleep(0)
            yield f"chunk {number}\n"
        log.info("stream done")

    return StreamingHttpResponse(body(), content_type="text/plain")


def stream_boom(request: Any) -> StreamingHttpResponse:
    def body() -> Iterator[str]:
        log.info("chunk 0")
        yield "chunk 0\n"
        msg = "the stream failed"
        raise RuntimeError(msg)

    return StreamingHttpResponse(body(), content_type="text/plain")


async def slow(request: Any) -> HttpResponse:
    # Async, so that under ASGI it does not hold the one thread Django runs sync views in.
    log.info("slow start")
    opened = await sync_to_async(_gate.wait, thread_sensitive=False)()
    log.info("slow done")
    return HttpResponse("done\n" if opened else "the gate never opened\n")


def burst(request: Any) -> JsonResponse:
    count = int(request.GET.get("count", "0"))
    for number in range(count):
        log.info("burst %d", number)
    return JsonResponse(delivery_stats())
