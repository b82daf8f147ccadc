"""
Per-request cost of ctxlog.WSGIMiddleware, called in-process like a WSGI server would.

A "request" is: ``body = app(environ, start_response)``, iterate ``body``, call
``body.close()`` if it has one. Each call gets a shallow copy of a prebuilt environ (a server
builds a new one per request, and Flask writes to it); ``start_response`` does nothing but return
a ``write`` callable.

Two groups, each with its own baseline:

* a plain WSGI hello-world (``[b"hi"]``): shows the absolute cost of a middleware;
* a Flask hello-world (one route returning ``"hi"``), middleware applied to ``app.wsgi_app`` as
  Flask recommends: shows the cost relative to a real framework.

The peer (REMOTE_ADDR) is 10.1.2.3 and the request carries
``X-Forwarded-For: 203.0.113.7, 10.0.0.2``; ctxlog trusts 10.0.0.0/8 so the proxy walk runs.
Scenarios: with an incoming valid X-Request-ID, and without (the middleware makes one).

Run: python benchmarks/bench_wsgi.py [--quick] [--json PATH]
"""

from __future__ import annotations

import contextvars
import io
import re
import sys
import uuid
from contextvars import ContextVar
from time import perf_counter_ns
from typing import Any

from _harness import Contestant, check, measure, parse_args, report

import ctxlog
from ctxlog.context import request_var  # private: to check nothing is left set after a request

INCOMING_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_IP = "203.0.113.7"
HEX32 = re.compile(r"[0-9a-f]{32}")

floor_id: ContextVar[str | None] = ContextVar("floor_id", default=None)


class FloorMiddleware:
    """
    The least a request-id middleware can do: read X-Request-ID (or make a uuid4), set one
    ContextVar, echo the id, reset the var with its token when the app returns.

    Like most hand-written WSGI middleware it does *not* cover the body iteration or close().
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        rid = environ.get("HTTP_X_REQUEST_ID") or uuid.uuid4().hex
        token = floor_id.set(rid)

        def start_with_id(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            headers.append(("X-Request-ID", rid))
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start_with_id)
        finally:
            floor_id.reset(token)


class FloorCopyContext(FloorMiddleware):
    """The floor, run in a copy of the Context so the body and close() see the var too."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        ctx = contextvars.copy_context()
        body = ctx.run(super().__call__, environ, start_response)
        return _InContext(ctx, body)


class _InContext:
    __slots__ = ("body", "ctx", "it")

    def __init__(self, ctx: contextvars.Context, body: Any) -> None:
        self.ctx = ctx
        self.body = body
        self.it = None

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> bytes:
        if self.it is None:
            self.it = iter(self.body)
        return self.ctx.run(next, self.it)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            self.ctx.run(close)


# --- the apps -------------------------------------------------------------------------------------


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"hi"]


def wrap(kind: str, app: Any) -> Any:
    if kind == "floor":
        return FloorMiddleware(app)
    if kind == "floor+copy_context":
        return FloorCopyContext(app)
    if kind == "ctxlog":
        return ctxlog.WSGIMiddleware(app, trusted_proxies=["10.0.0.0/8"])
    if kind == "bare":
        return app
    raise ValueError(kind)


def make_plain(kind: str, endpoint: Any = hello) -> Any:
    return wrap(kind, endpoint)


def make_flask(kind: str, view: Any = None) -> Any:
    from flask import Flask

    app = Flask(f"bench_{kind.replace('+', '_')}")
    app.add_url_rule("/", "hello", view or (lambda: "hi"))
    app.wsgi_app = wrap(kind, app.wsgi_app)  # type: ignore[method-assign]
    return app


def make_environ(with_id: bool) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.1.2.3",
        "REMOTE_PORT": "54321",
        "HTTP_HOST": "example.com",
        "HTTP_USER_AGENT": "bench/1.0",
        "HTTP_ACCEPT": "*/*",
        "HTTP_X_FORWARDED_FOR": CLIENT_IP + ", 10.0.0.2",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if with_id:
        environ["HTTP_X_REQUEST_ID"] = INCOMING_ID
    return environ


def _write(data: bytes) -> None:
    pass


def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
    return _write


def serve(app: Any, environ: dict[str, Any], sr: Any = start_response) -> bytes:
    body = app(environ, sr)
    try:
        return b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


# --- correctness ----------------------------------------------------------------------------------


def verify(family: str, kind: str, with_id: bool) -> None:
    label = f"{family} {kind} ({'with' if with_id else 'without'} id)"
    make = make_plain if family == "plain" else make_flask
    got: dict[str, Any] = {}

    def sr(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        got["status"] = status
        got["headers"] = headers
        return _write

    body = serve(make(kind), make_environ(with_id), sr)
    check(body == b"hi", f"{label}: body {body!r}")
    check(got["status"].startswith("200"), f"{label}: status {got['status']}")
    ids = [v for k, v in got["headers"] if k.lower() == "x-request-id"]
    if kind == "bare":
        check(not ids, f"{label}: the bare app echoes an id")
        return
    check(len(ids) == 1, f"{label}: {len(ids)} X-Request-ID headers")
    if with_id:
        check(ids[0] == INCOMING_ID, f"{label}: echoed {ids[0]!r}")
    else:
        check(HEX32.fullmatch(ids[0]), f"{label}: generated id {ids[0]!r}")

    seen: dict[str, Any] = {}

    def snapshot() -> None:
        if kind == "ctxlog":
            seen.update(ctxlog.get_context())
        else:
            seen["request_id"] = floor_id.get()

    def probe_plain(environ: dict[str, Any], start: Any) -> list[bytes]:
        snapshot()
        start("200 OK", [("Content-Type", "text/plain")])
        return [b"hi"]

    def probe_view() -> str:
        snapshot()
        return "hi"

    app = make_plain(kind, probe_plain) if family == "plain" else make_flask(kind, probe_view)
    serve(app, make_environ(with_id), sr)
    echoed = next(v for k, v in got["headers"] if k.lower() == "x-request-id")
    check(seen.get("request_id") == echoed, f"{label}: context {seen} vs echoed {echoed}")
    if kind == "ctxlog":
        check(seen["ip"] == CLIENT_IP, f"{label}: ip {seen['ip']!r}")
    check(request_var.get() is None and floor_id.get() is None, f"{label}: context left set")


# --- timing ---------------------------------------------------------------------------------------


def runner(app: Any, environ: dict[str, Any]) -> Any:
    def run(n: int) -> int:
        copy = environ.copy
        sr = start_response
        t0 = perf_counter_ns()
        for _ in range(n):
            body = app(copy(), sr)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return perf_counter_ns() - t0

    return run


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.strip().splitlines()[0], argv)
    contestants: list[Contestant] = []
    families = {
        "plain": (make_plain, ["bare", "floor", "floor+copy_context", "ctxlog"]),
        "flask": (make_flask, ["bare", "floor", "ctxlog"]),
    }
    for family, (make, kinds) in families.items():
        for with_id in (True, False):
            tag = "" if with_id else " (gen)"
            group = f"{family} WSGI, {'incoming X-Request-ID' if with_id else 'id generated'}"
            environ = make_environ(with_id)
            for kind in kinds:
                verify(family, kind, with_id)
                contestants.append(
                    Contestant(
                        name=f"{family} {kind}{tag}",
                        run=runner(make(kind), environ),
                        baseline=None if kind == "bare" else f"{family} bare{tag}",
                        group=group,
                    )
                )
    print("correctness checks passed; measuring", flush=True)
    rounds = measure(contestants, args.seconds, seed=args.seed)
    report("WSGI per request: plain hello-world and Flask", contestants, rounds, args)


if __name__ == "__main__":
    main()
