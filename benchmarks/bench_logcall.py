"""
Cost of the request context per log call: ``log.info("hello %s", 1)`` inside a request.

Every contestant writes one formatted line per call to its own ``io.StringIO`` (emptied before
each batch, outside the timed loop). Baseline: a plain ``logging.Logger`` with a
``StreamHandler`` and ``Formatter("%(levelname)s %(name)s %(message)s")``, no context. The
stdlib contestants use the same handler with ``"%(levelname)s %(name)s %(ip)s %(user)s
%(request_id)s %(message)s"``; structlog and loguru render the same line with their own means.

The ctxlog request context is the real one: ``ctxlog.ASGIMiddleware`` (trusting 10.0.0.0/8) is
run once on a request from 10.1.2.3 with ``X-Forwarded-For`` and ``X-Request-ID``, the app calls
``ctxlog.bind(user="alice")`` and the ``RequestState`` the middleware made is kept. Each ctxlog
batch then sets it again with ``ctxlog.context.request_var.set(...)`` (a private API, used here only
to re-enter that request outside the middleware) and resets it after the batch. The "anonymous"
variants keep the state of a request nobody bound a user to, where the user lookup is still
pending, as in a request of a visitor who is not logged in.

Run: python benchmarks/bench_logcall.py [--quick] [--json PATH]
"""

from __future__ import annotations

import asyncio
import io
import logging
from contextvars import ContextVar
from time import perf_counter_ns
from typing import Any

import structlog
from _harness import Contestant, check, measure, parse_args, report
from loguru import logger as loguru_logger

import ctxlog
from ctxlog.context import RequestState, request_var

IP = "203.0.113.7"
USER = "alice"
RID = "4bf92f3577b34da6a3ce929d0e0e4736"
PLAIN_FORMAT = "%(levelname)s %(name)s %(message)s"
CONTEXT_FORMAT = "%(levelname)s %(name)s %(ip)s %(user)s %(request_id)s %(message)s"
CONTEXT_LINE = f"{IP} {USER} {RID} hello 1\n"


# --- the ctxlog request context, made by the real middleware ------------------------------------


def capture_request_state(*, bind_user: bool) -> RequestState:
    captured: list[RequestState | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if bind_user:
            ctxlog.bind(user=USER)
        captured.append(request_var.get())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"example.com"),
            (b"x-forwarded-for", IP.encode() + b", 10.0.0.2"),
            (b"x-request-id", RID.encode()),
        ],
        "client": ("10.1.2.3", 54321),
        "server": ("127.0.0.1", 8000),
    }
    middleware = ctxlog.ASGIMiddleware(app, trusted_proxies=["10.0.0.0/8"])
    asyncio.run(middleware(scope, receive, send))
    state = captured[0]
    assert state is not None
    return state


# --- helpers --------------------------------------------------------------------------------------


def stdlib_logger(
    name: str, fmt: str, filt: logging.Filter | None = None
) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter(fmt))
    if filt is not None:
        handler.addFilter(filt)
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log, buf


def make_runner(call: Any, buf: Any, enter: Any = None, leave: Any = None) -> Any:
    """``call`` is a bound ``info``; ``enter()`` sets up the context, ``leave(token)`` undoes it."""

    def run(n: int) -> int:
        buf.seek(0)
        buf.truncate()
        token = enter() if enter is not None else None
        try:
            t0 = perf_counter_ns()
            for _ in range(n):
                call("hello %s", 1)
            return perf_counter_ns() - t0
        finally:
            if leave is not None:
                leave(token)

    return run


# --- a hand-written filter reading three ContextVars ---------------------------------------------

ip_var: ContextVar[str] = ContextVar("ip", default="-")
user_var: ContextVar[str] = ContextVar("user", default="-")
rid_var: ContextVar[str] = ContextVar("request_id", default="-")


class ThreeVarFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.ip = ip_var.get()
        record.user = user_var.get()
        record.request_id = rid_var.get()
        return True


def enter_three() -> Any:
    return ip_var.set(IP), user_var.set(USER), rid_var.set(RID)


def leave_three(tokens: Any) -> None:
    for var, token in zip((ip_var, user_var, rid_var), tokens, strict=True):
        var.reset(token)


# --- the contestants ------------------------------------------------------------------------------


def build() -> tuple[list[Contestant], dict[str, tuple[Any, ...]]]:
    """Return the contestants and, for the checks, each one's buffer and expected line ending."""
    known = capture_request_state(bind_user=True)
    anonymous = capture_request_state(bind_user=False)
    check(known.fields["user"] == USER and known.resolve_user is None, "bound user not in state")
    check(anonymous.resolve_user is not None, "anonymous request has no pending user lookup")

    def enter_state(state: RequestState) -> Any:
        return lambda: request_var.set(state)

    def leave_state(token: Any) -> None:
        request_var.reset(token)

    contestants: list[Contestant] = []
    expect: dict[str, tuple[Any, ...]] = {}

    def add(  # noqa: PLR0917
        name: str, call: Any, buf: Any, line: str, enter: Any = None, leave: Any = None
    ) -> None:
        contestants.append(
            Contestant(
                name=name,
                run=make_runner(call, buf, enter, leave),
                baseline=None if name == "plain logger.info" else "plain logger.info",
            )
        )
        expect[name] = (buf, line, call, enter, leave)

    log, buf = stdlib_logger("bench.plain", PLAIN_FORMAT)
    add("plain logger.info", log.info, buf, "INFO bench.plain hello 1\n")

    log, buf = stdlib_logger("bench.ctxfilter", CONTEXT_FORMAT, ctxlog.ContextFilter())
    add(
        "ctxlog ContextFilter",
        log.info,
        buf,
        "INFO bench.ctxfilter " + CONTEXT_LINE,
        enter_state(known),
        leave_state,
    )
    log, buf = stdlib_logger("bench.ctxadapter", CONTEXT_FORMAT)
    add(
        "ctxlog get_logger()",
        ctxlog.get_logger("bench.ctxadapter").info,
        buf,
        "INFO bench.ctxadapter " + CONTEXT_LINE,
        enter_state(known),
        leave_state,
    )
    log, buf = stdlib_logger("bench.ctxfilter_anon", CONTEXT_FORMAT, ctxlog.ContextFilter())
    add(
        "ctxlog ContextFilter, anonymous",
        log.info,
        buf,
        f"INFO bench.ctxfilter_anon {IP} - {RID} hello 1\n",
        enter_state(anonymous),
        leave_state,
    )
    log, buf = stdlib_logger("bench.ctxadapter_anon", CONTEXT_FORMAT)
    add(
        "ctxlog get_logger(), anonymous",
        ctxlog.get_logger("bench.ctxadapter_anon").info,
        buf,
        f"INFO bench.ctxadapter_anon {IP} - {RID} hello 1\n",
        enter_state(anonymous),
        leave_state,
    )
    log, buf = stdlib_logger("bench.ctxfilter_out", CONTEXT_FORMAT, ctxlog.ContextFilter())
    add(
        "ctxlog ContextFilter, no request",
        log.info,
        buf,
        "INFO bench.ctxfilter_out - - - hello 1\n",
    )

    log, buf = stdlib_logger("bench.threevar", CONTEXT_FORMAT, ThreeVarFilter())
    add(
        "Filter reading 3 ContextVars",
        log.info,
        buf,
        "INFO bench.threevar " + CONTEXT_LINE,
        enter_three,
        leave_three,
    )

    log, buf = stdlib_logger("bench.adapter", CONTEXT_FORMAT)
    adapter = logging.LoggerAdapter(log, {"ip": IP, "user": USER, "request_id": RID})
    add("stdlib LoggerAdapter", adapter.info, buf, "INFO bench.adapter " + CONTEXT_LINE)

    # structlog, native: filtering bound logger -> WriteLogger on the StringIO (no LogRecord).
    buf = io.StringIO()

    def render(_: Any, method: str, event_dict: dict[str, Any]) -> str:
        return (
            f"{method.upper()} bench.structlog {event_dict['ip']} {event_dict['user']} "
            f"{event_dict['request_id']} {event_dict['event']}"
        )

    slog = structlog.wrap_logger(
        structlog.WriteLogger(buf),
        processors=[structlog.contextvars.merge_contextvars, render],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    ).bind()

    def enter_structlog() -> Any:
        return structlog.contextvars.bind_contextvars(ip=IP, user=USER, request_id=RID)

    def leave_structlog(tokens: Any) -> None:
        structlog.contextvars.reset_contextvars(**tokens)

    add(
        "structlog native (WriteLogger)",
        slog.info,
        buf,
        "INFO bench.structlog " + CONTEXT_LINE,
        enter_structlog,
        leave_structlog,
    )

    # structlog on stdlib: processors -> render_to_log_kwargs -> the same stdlib handler/format.
    log, buf = stdlib_logger("bench.structlog_std", CONTEXT_FORMAT)
    sslog = structlog.wrap_logger(
        log,
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.render_to_log_kwargs,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    ).bind()
    add(
        "structlog -> stdlib handler",
        sslog.info,
        buf,
        "INFO bench.structlog_std " + CONTEXT_LINE,
        enter_structlog,
        leave_structlog,
    )

    # loguru: contextualize() + a StringIO sink with an equivalent format ({} for %s).
    buf = io.StringIO()
    loguru_logger.remove()
    loguru_logger.add(
        buf,
        format="{level} bench.loguru {extra[ip]} {extra[user]} {extra[request_id]} {message}",
        colorize=False,
        level="INFO",
    )

    def enter_loguru() -> Any:
        cm = loguru_logger.contextualize(ip=IP, user=USER, request_id=RID)
        cm.__enter__()
        return cm

    def leave_loguru(cm: Any) -> None:
        cm.__exit__(None, None, None)

    loguru_call = loguru_logger.info
    # loguru formats with str.format: the same call is info("hello {}", 1).
    contestants.append(
        Contestant(
            name="loguru contextualize",
            run=_loguru_runner(loguru_call, buf, enter_loguru, leave_loguru),
            baseline="plain logger.info",
        )
    )
    expect["loguru contextualize"] = (
        buf,
        "INFO bench.loguru " + CONTEXT_LINE,
        lambda *_: loguru_call("hello {}", 1),
        enter_loguru,
        leave_loguru,
    )
    return contestants, expect


def _loguru_runner(call: Any, buf: Any, enter: Any, leave: Any) -> Any:
    def run(n: int) -> int:
        buf.seek(0)
        buf.truncate()
        cm = enter()
        try:
            t0 = perf_counter_ns()
            for _ in range(n):
                call("hello {}", 1)
            return perf_counter_ns() - t0
        finally:
            leave(cm)

    return run


def verify(expect: dict[str, Any]) -> None:
    for name, (buf, line, call, enter, leave) in expect.items():
        buf.seek(0)
        buf.truncate()
        token = enter() if enter is not None else None
        try:
            call("hello %s", 1)
        finally:
            if leave is not None:
                leave(token)
        out = buf.getvalue()
        check(out == line, f"{name}: wrote {out!r}, expected {line!r}")
        buf.seek(0)
        buf.truncate()
    check(request_var.get() is None, "a ctxlog request context was left set")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.strip().splitlines()[0], argv)
    contestants, expect = build()
    verify(expect)
    print("correctness checks passed; measuring", flush=True)
    rounds = measure(contestants, args.seconds, seed=args.seed)
    report("Per log call: log.info('hello %s', 1) inside a request", contestants, rounds, args)
    verify(expect)  # still correct after the run


if __name__ == "__main__":
    main()
