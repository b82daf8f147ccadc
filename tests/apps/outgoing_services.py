"""
Two services for tests/test_outgoing.py: ``upstream`` calls ``downstream`` with httpx (async and
sync) or requests, adding ctxlog's outgoing headers; ``downstream`` logs what it was called with.
"""

import logging
import os

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import ctxlog
import ctxlog.outgoing

log = ctxlog.get_logger("services")

if os.environ.get("DOWNSTREAM_LOG"):
    handler = logging.FileHandler(os.environ["DOWNSTREAM_LOG"], encoding="utf-8")
    handler.setFormatter(ctxlog.Formatter("%(request_id)s|%(trace_id)s|%(span_id)s|%(message)s"))
    logging.getLogger("services").addHandler(handler)
    logging.getLogger("services").setLevel(logging.INFO)


async def work(request):
    log.info("downstream %s", request.query_params["n"])
    return PlainTextResponse("done")


# The first service trusts nobody's proxy header; the second takes the id from the first.
downstream = ctxlog.ASGIMiddleware(Starlette(routes=[Route("/work", work)]), trace_context=True)

DOWNSTREAM = f"http://127.0.0.1:{os.environ.get('DOWNSTREAM_PORT', '0')}/work"
session = ctxlog.outgoing.Session()
sync_client = httpx.Client(event_hooks=ctxlog.outgoing.httpx_hooks())
async_client = httpx.AsyncClient(event_hooks=ctxlog.outgoing.httpx_async_hooks())


async def call_async(request):
    response = await async_client.get(DOWNSTREAM, params={"n": request.query_params["n"]})
    return PlainTextResponse(response.text)


def call_sync(request):
    response = sync_client.get(DOWNSTREAM, params={"n": request.query_params["n"]})
    return PlainTextResponse(response.text)


def call_requests(request):
    response = session.get(DOWNSTREAM, params={"n": request.query_params["n"]}, timeout=30)
    return PlainTextResponse(response.text)


upstream = ctxlog.ASGIMiddleware(
    Starlette(
        routes=[
            Route("/httpx-async", call_async),
            Route("/httpx-sync", call_sync),
            Route("/requests", call_requests),
        ]
    ),
    trace_context=True,
)
