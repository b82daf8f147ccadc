"""
Per-request cost of ctxlog.ASGIMiddleware on a Starlette hello-world, called in-process.

Every contestant is its own ``Starlette`` instance with one route returning
``PlainTextResponse("hi")``; the middleware under test is added with ``app.add_middleware`` (so
it sits inside Starlette's ServerErrorMiddleware and outside its ExceptionMiddleware, as in a
real app), and the Starlette instance itself is called: ``await app(scope, receive, send)``. No
server and no HTTP client are involved. Each call gets a shallow copy of a prebuilt scope (a
server builds a new scope per request, and some middleware write to it).

The peer is 10.1.2.3 and the request carries ``X-Forwarded-For: 203.0.113.7, 10.0.0.2``; ctxlog
trusts 10.0.0.0/8, so its proxy walk runs and logs 203.0.113.7. Two scenarios: the request has a
valid ``X-Request-ID`` (a uuid4 hex, which every contestant accepts), or has none and the
middleware makes one.

Run: python benchmarks/bench_asgi.py [--quick] [--json PATH]
"""

from __future__ import annotations

import asyncio
import re
import uuid
from contextvars import ContextVar
from time import perf_counter_ns
from typing import Any

from _harness import Contestant, check, measure, parse_args, report
from asgi_correlation_id import CorrelationIdMiddleware
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette_context import context as sc_context
from starlette_context.middleware import RawContextMiddleware
from starlette_context.plugins import RequestIdPlugin

import ctxlog
from ctxlog.context import request_var  # private: to check the context is reset after a request

INCOMING_ID = b"4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_IP = "203.0.113.7"
HEX32 = re.compile(rb"[0-9a-f]{32}")

# --- the floor: the least a request-id middleware can do ----------------------------------------

floor_id: ContextVar[bytes | None] = ContextVar("floor_id", default=None)


class FloorMiddleware:
    """Read X-Request-ID (or make a uuid4), set one ContextVar, echo the id, reset the var."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value
                break
        if rid is None:
            rid = uuid.uuid4().hex.encode("ascii")
        token = floor_id.set(rid)

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            floor_id.reset(token)


# --- the app and its variants ---------------------------------------------------------------------


async def hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("hi")


def make_app(kind: str, endpoint: Any = hello) -> Starlette:
    app = Starlette(routes=[Route("/", endpoint)])
    if kind == "floor":
        app.add_middleware(FloorMiddleware)
    elif kind == "ctxlog":
        app.add_middleware(ctxlog.ASGIMiddleware, trusted_proxies=["10.0.0.0/8"])
    elif kind == "asgi-correlation-id":
        app.add_middleware(CorrelationIdMiddleware)
    elif kind == "starlette-context":
        app.add_middleware(RawContextMiddleware, plugins=(RequestIdPlugin(),))
    elif kind != "bare":
        raise ValueError(kind)
    return app


KINDS = ["bare", "floor", "ctxlog", "asgi-correlation-id", "starlette-context"]


def make_scope(with_id: bool) -> dict[str, Any]:
    headers = [
        (b"host", b"example.com"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"*/*"),
        (b"x-forwarded-for", CLIENT_IP.encode() + b", 10.0.0.2"),
    ]
    if with_id:
        headers.append((b"x-request-id", INCOMING_ID))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("10.1.2.3", 54321),
        "server": ("127.0.0.1", 8000),
    }


_REQUEST_MESSAGE = {"type": "http.request", "body": b"", "more_body": False}


async def receive() -> dict[str, Any]:
    return _REQUEST_MESSAGE


async def discard(message: Any) -> None:
    pass


# --- correctness ----------------------------------------------------------------------------------


def verify(loop: asyncio.AbstractEventLoop, kind: str, with_id: bool) -> None:
    label = f"{kind} ({'with' if with_id else 'without'} id)"
    sent: list[dict[str, Any]] = []

    async def capture(message: Any) -> None:
        sent.append(message)

    loop.run_until_complete(make_app(kind)(make_scope(with_id), receive, capture))
    check(sent and sent[0]["status"] == 200, f"{label}: no 200 response: {sent}")
    body = b"".join(m.get("body", b"") for m in sent[1:])
    check(body == b"hi", f"{label}: body {body!r}")
    ids = [v for k, v in sent[0]["headers"] if k.lower() == b"x-request-id"]
    if kind == "bare":
        check(not ids, f"{label}: the bare app echoes an id")
        return
    check(len(ids) == 1, f"{label}: response has {len(ids)} X-Request-ID headers")
    if with_id:
        check(ids[0] == INCOMING_ID, f"{label}: echoed {ids[0]!r}, not the incoming id")
    else:
        check(HEX32.fullmatch(ids[0]), f"{label}: generated id {ids[0]!r} is not 32 hex digits")

    # What the endpoint sees: the request id (and for ctxlog the client ip) in the context.
    seen: dict[str, Any] = {}

    async def probe(request: Any) -> PlainTextResponse:
        if kind == "ctxlog":
            seen.update(ctxlog.get_context())
        elif kind == "floor":
            seen["request_id"] = floor_id.get().decode()
        elif kind == "asgi-correlation-id":
            from asgi_correlation_id import correlation_id

            seen["request_id"] = correlation_id.get()
        elif kind == "starlette-context":
            seen["request_id"] = sc_context["X-Request-ID"]
        return PlainTextResponse("hi")

    sent.clear()
    loop.run_until_complete(make_app(kind, probe)(make_scope(with_id), receive, capture))
    echoed = next(v for k, v in sent[0]["headers"] if k.lower() == b"x-request-id").decode()
    check(seen.get("request_id") == echoed, f"{label}: context id {seen} != echoed {echoed}")
    if kind == "ctxlog":
        check(seen["ip"] == CLIENT_IP, f"{label}: ip {seen['ip']!r}, expected {CLIENT_IP}")
        check(request_var.get() is None, f"{label}: request context left set after the request")


# --- timing ---------------------------------------------------------------------------------------


def runner(loop: asyncio.AbstractEventLoop, app: Starlette, scope: dict[str, Any]) -> Any:
    async def batch(n: int) -> int:
        copy = scope.copy
        t0 = perf_counter_ns()
        for _ in range(n):
            await app(copy(), receive, discard)
        return perf_counter_ns() - t0

    def run(n: int) -> int:
        return loop.run_until_complete(batch(n))

    return run


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.strip().splitlines()[0], argv)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    contestants: list[Contestant] = []
    for with_id in (True, False):
        group = "incoming X-Request-ID" if with_id else "no X-Request-ID (generated)"
        suffix = "" if with_id else " (gen)"
        scope = make_scope(with_id)
        for kind in KINDS:
            verify(loop, kind, with_id)
            contestants.append(
                Contestant(
                    name=kind + suffix,
                    run=runner(loop, make_app(kind), scope),
                    baseline=None if kind == "bare" else "bare" + suffix,
                    group=group,
                )
            )
    print("correctness checks passed; measuring", flush=True)
    rounds = measure(contestants, args.seconds, seed=args.seed)
    report(
        "ASGI per request: Starlette hello-world, middleware via add_middleware",
        contestants,
        rounds,
        args,
    )
    loop.close()


if __name__ == "__main__":
    main()
