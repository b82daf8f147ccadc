"""ASGIMiddleware: the request's context for ASGI 3 apps, with real Starlette and httpx."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import re
import sys
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

import ctxlog
from ctxlog.context import request_var

log = ctxlog.get_logger("asgi.app")
PROXY = ("10.0.0.1", 4000)


async def hello(request):
    log.info("in view")
    return PlainTextResponse("hello")


def make_app(routes=None, middleware=(), **options):
    app = Starlette(routes=routes or [Route("/{path:path}", hello)], middleware=list(middleware))
    return ctxlog.ASGIMiddleware(app, **options)


def client(app, peer=("192.0.2.10", 5555)):
    return TestClient(app, client=peer)


async def call(app, scope_overrides=None, body=b""):
    """Call an ASGI app directly; return the messages it sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("192.0.2.10", 5555),
        "server": ("127.0.0.1", 80),
        **(scope_overrides or {}),
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent


def test_fields_in_view(capture):
    """A view's records carry ip, request id, method and path."""
    client(make_app()).get("/shop/cart", headers={"X-Request-ID": "abc-123"})

    record = capture.named("asgi.app")[0]
    assert ("192.0.2.10", "-", "abc-123", "GET", "/shop/cart") == (
        record.ip,
        record.user,
        record.request_id,
        record.method,
        record.path,
    )


def test_request_id_is_echoed_and_generated():
    """An accepted id is echoed; without one a fresh 32-hex id is made and echoed."""
    with client(make_app()) as c:
        given = c.get("/", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        fresh = c.get("/").headers["X-Request-ID"]

    assert "abc-123" == given
    assert re.fullmatch("[0-9a-f]{32}", fresh)


@pytest.mark.parametrize(
    "raw",
    [b"", b"has space", b"x" * 201, b"\xff\xfe\xc3(", b"new\r\nline", b"\x1b[2J", b"caf\xc3\xa9"],
)
def test_invalid_request_ids_are_replaced(capture, raw):
    """Ids that are not 1-200 printable ASCII without spaces are replaced, never echoed."""
    sent = asyncio.run(call(make_app(), {"headers": [(b"x-request-id", raw)]}))

    echoed = dict(sent[0]["headers"])[b"x-request-id"]
    assert re.fullmatch(b"[0-9a-f]{32}", echoed)
    assert echoed.decode() == capture.named("asgi.app")[0].request_id


def test_duplicate_request_id_headers_are_replaced(capture):
    """Two id headers: neither is trusted (WSGI would join them with a comma and space)."""
    sent = asyncio.run(
        call(make_app(), {"headers": [(b"x-request-id", b"a"), (b"x-request-id", b"b")]})
    )

    assert dict(sent[0]["headers"])[b"x-request-id"] not in (b"a", b"b")


def test_bind_in_view_reaches_the_access_log(capture):
    """A user bound in the view is on the access line written after the response."""

    async def view(request):
        ctxlog.bind(user="alice", tenant="acme")
        return PlainTextResponse("ok")

    client(make_app([Route("/", view)], access_log=True)).get("/")

    (access,) = capture.named("ctxlog.access")
    assert ("alice", "acme") == (access.user, access.tenant)


def test_bind_through_basehttpmiddleware_reaches_outer_access_log(capture):
    """A BaseHTTPMiddleware inside ours runs the app in another task; binds still flow out."""

    class Noop(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            log.info("inner middleware before")
            response = await call_next(request)
            log.info("inner middleware after")
            return response

    async def view(request):
        ctxlog.bind(user=request.path_params["name"])
        return PlainTextResponse("ok")

    app = make_app([Route("/u/{name}", view)], [Middleware(Noop)], access_log=True)

    async def main():
        transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            await asyncio.gather(*(c.get(f"/u/u{i}") for i in range(100)))

    asyncio.run(main())

    access = capture.named("ctxlog.access")
    assert 100 == len(access)
    assert all(r.user == r.path.rsplit("/", 1)[1] for r in access)
    after = [r for r in capture.named("asgi.app") if r.getMessage() == "inner middleware after"]
    assert all(r.user == r.path.rsplit("/", 1)[1] for r in after)


def test_sync_view_in_threadpool_binds_and_logs(capture):
    """A sync view runs in a thread pool; it logs with the request id and its bind flows out."""

    def view(request):
        log.info("sync view")
        ctxlog.bind(user="sync-user")
        return PlainTextResponse("ok")

    app = make_app([Route("/", view)], access_log=True)
    client(app).get("/", headers={"X-Request-ID": "sync-1"})

    assert "sync-1" == capture.named("asgi.app")[0].request_id
    assert "sync-user" == capture.named("ctxlog.access")[0].user


def test_a_thousand_concurrent_requests_never_mix(capture):
    """1,000 concurrent requests with interleaved awaits: every record is its own request's."""

    async def view(request):
        i = request.path_params["i"]
        ctxlog.bind(user=f"user{i}")
        await asyncio.sleep(random.random() / 100)
        log.info("view")

        async def chunks():
            for n in range(3):
                await asyncio.sleep(random.random() / 200)
                log.info("chunk %d", n)
                yield b"x"

        async def background():
            await asyncio.sleep(random.random() / 200)
            log.info("background")

        return StreamingResponse(chunks(), background=BackgroundTask(background))

    app = make_app([Route("/r/{i:int}", view)], access_log=True, trusted_proxies=["10.0.0.0/8"])

    async def main():
        transport = httpx.ASGITransport(app=app, client=PROXY)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            responses = await asyncio.gather(
                *(
                    c.get(
                        f"/r/{i}",
                        headers={
                            "X-Request-ID": f"req-{i}",
                            "X-Forwarded-For": f"198.51.100.{i % 250}",
                        },
                    )
                    for i in range(1000)
                )
            )
        return responses, ctxlog.get_context(), request_var.get()

    responses, context_after, state_after = asyncio.run(main())

    assert all(r.status_code == 200 for r in responses)
    records = capture.named("asgi.app") + capture.named("ctxlog.access")
    assert 6 * 1000 == len(records)  # view, 3 chunks, background, access
    wrong = [
        r
        for r in records
        if r.path != f"/r/{r.request_id[4:]}"
        or r.user != f"user{r.request_id[4:]}"
        or r.ip != f"198.51.100.{int(r.request_id[4:]) % 250}"
    ]
    assert [] == wrong
    assert ({}, None) == (context_after, state_after)


def test_context_is_reset_after_each_request_in_the_same_task(capture):
    """Requests served one after another in one task leave nothing behind."""
    app = make_app(access_log=True)

    async def main():
        seen = []
        for i in range(3):
            await call(app, {"headers": [(b"x-request-id", f"r{i}".encode())]})
            seen.append(ctxlog.get_context())
        return seen

    assert [{}, {}, {}] == asyncio.run(main())


def test_reset_in_another_context_does_not_raise():
    """A request coroutine finished from another Context (a server cancelling it) ends quietly."""

    async def app(scope, receive, send):
        await asyncio.sleep(0)  # suspends once; the coroutine is driven by hand below

    coro = ctxlog.ASGIMiddleware(app)({"type": "http", "headers": [], "path": "/"}, None, None)
    contextvars.Context().run(coro.send, None)
    contextvars.Context().run(
        coro.close
    )  # the finally block runs in a Context that never saw our token


def test_abandoned_stream_finalised_elsewhere_does_not_raise(capture):
    """A streaming body abandoned mid-way and finalised later raises nothing (no 'Exception ignored')."""
    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append

    async def body():
        with ctxlog.scope(part="stream"):
            for n in range(100):
                log.info("chunk %d", n)
                yield b"x" * 10
                await asyncio.sleep(0)

    class DisconnectError(Exception):
        pass

    async def view(request):
        return StreamingResponse(body())

    app = make_app([Route("/", view)])

    async def main():
        for _ in range(20):
            count = 0

            async def send(message):
                nonlocal count
                if message["type"] == "http.response.body":
                    count += 1
                    if count == 2:
                        raise DisconnectError

            async def receive():
                await asyncio.sleep(10)
                return {"type": "http.disconnect"}

            scope = {
                "type": "http",
                "method": "GET",
                "path": "/",
                "headers": [],
                "query_string": b"",
                "client": ("192.0.2.1", 1),
                "root_path": "",
            }
            with pytest.raises(DisconnectError):
                await app(scope, receive, send)
        await asyncio.sleep(0.05)

    try:
        asyncio.run(main())
    finally:
        sys.unraisablehook = old_hook

    assert [] == unraisable
    assert {} == ctxlog.get_context()


def test_lifespan_passes_through_untouched(capture):
    """lifespan scopes reach the app as they are, and startup logs show '-' fields."""
    seen = []

    async def app(scope, receive, send):
        seen.append(scope)
        if scope["type"] == "lifespan":
            message = await receive()
            log.info("startup %s", message["type"])
            await send({"type": "lifespan.startup.complete"})

    wrapped = ctxlog.ASGIMiddleware(app)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        pass

    asyncio.run(wrapped(scope, receive, send))
    odd = {"type": "custom.protocol"}
    asyncio.run(wrapped(odd, receive, send))

    assert [scope, odd] == seen
    assert seen[0] is scope and seen[1] is odd
    (startup,) = capture.named("asgi.app")
    assert ["-"] * 5 == [startup.ip, startup.user, startup.request_id, startup.method, startup.path]


def test_starlette_lifespan_through_the_middleware(capture):
    """A Starlette app's lifespan runs through ctxlog and logs with '-' fields."""
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(app):
        log.info("starting")
        yield
        log.info("stopping")

    app = Starlette(routes=[Route("/", hello)], lifespan=lifespan)
    app.add_middleware(ctxlog.ASGIMiddleware)
    with TestClient(app) as c:
        c.get("/")

    records = capture.named("asgi.app")
    assert ["starting", "in view", "stopping"] == [r.getMessage() for r in records]
    assert ["-", "-"] == [records[0].request_id, records[2].request_id]


def test_websocket_gets_context_and_echoes_the_id(capture):
    """Every message of a websocket connection logs with that connection's id; accept echoes it."""

    async def ws(websocket):
        await websocket.accept()
        for _ in range(2):
            text = await websocket.receive_text()
            log.info("got %s", text)
            await websocket.send_text(text)
        await websocket.close()

    app = make_app([WebSocketRoute("/ws", ws)], access_log=True)
    with client(app).websocket_connect("/ws", headers={"X-Request-ID": "ws-1"}) as session:
        session.send_text("a")
        session.receive_text()
        session.send_text("b")
        session.receive_text()
        headers = dict(session.extra_headers or [])

    assert [("ws-1", "WS", "/ws")] * 2 == [
        (r.request_id, r.method, r.path) for r in capture.named("asgi.app")
    ]
    assert b"ws-1" == headers[b"x-request-id"]
    assert [] == capture.named("ctxlog.access")


async def _serve_once(app, kind, incoming=None):
    """Call ``app`` for one http request or websocket connection; return what reached the server."""
    headers = [] if incoming is None else [(b"x-request-id", incoming)]
    if kind == "http":
        return await call(app, {"headers": headers})
    scope = {"type": "websocket", "path": "/ws", "headers": headers, "client": ("192.0.2.10", 1)}
    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _start_app(kind, message):
    """An app sending ``message`` as its http.response.start or websocket.accept."""

    async def app(scope, receive, send):
        log.info("in view")
        await send(message)
        if kind == "http":
            await send({"type": "http.response.body", "body": b""})

    return app


_KINDS = {"http": "http.response.start", "websocket": "websocket.accept"}


@pytest.mark.parametrize("kind", ["http", "websocket"])
@pytest.mark.parametrize("access_log", [False, True])
@pytest.mark.parametrize("name", [b"x-request-id", b"X-Request-ID", b"X-REQUEST-ID"])
def test_an_app_setting_its_own_request_id_keeps_it_alone(capture, kind, access_log, name):
    """A request id header the app set, in any case, is sent as it is and once; records keep ours."""
    message = {"type": _KINDS[kind], "status": 200, "headers": [(name, b"app-id")]}
    app = ctxlog.ASGIMiddleware(_start_app(kind, message), access_log=access_log)

    sent = asyncio.run(_serve_once(app, kind, incoming=b"client-id"))

    assert [(name, b"app-id")] == list(sent[0]["headers"])
    assert "client-id" == capture.named("asgi.app")[0].request_id


@pytest.mark.parametrize("kind", ["http", "websocket"])
@pytest.mark.parametrize("access_log", [False, True])
@pytest.mark.parametrize(
    "headers",
    [None, [], [(b"content-type", b"text/plain")], ((b"content-type", b"text/plain"),)],
    ids=["no-headers-key", "empty-list", "list", "tuple"],
)
def test_the_apps_start_message_is_not_changed(kind, access_log, headers):
    """The id goes into a new message: the app's own message and its header list stay as they were."""
    message = {"type": _KINDS[kind], "status": 200}
    if headers is not None:
        message["headers"] = headers
    before = {**message, "headers": list(headers)} if headers is not None else dict(message)
    app = ctxlog.ASGIMiddleware(_start_app(kind, message), access_log=access_log)

    sent = asyncio.run(_serve_once(app, kind, incoming=b"rid-1"))

    expected_after = before if headers is None else {**before, "headers": headers}
    assert expected_after == message
    if headers is not None:
        assert list(headers) == list(message["headers"])
    assert sent[0] is not message
    assert [*(headers or ()), (b"x-request-id", b"rid-1")] == list(sent[0]["headers"])


def test_headers_given_as_any_iterable_are_read_once():
    """Headers given as a generator reach the server whole, followed by the id."""

    async def app(scope, receive, send):
        headers = (pair for pair in [(b"content-type", b"text/plain")])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    sent = asyncio.run(_serve_once(ctxlog.ASGIMiddleware(app), "http", incoming=b"rid-2"))

    assert [(b"content-type", b"text/plain"), (b"x-request-id", b"rid-2")] == list(
        sent[0]["headers"]
    )


def test_an_app_header_given_as_a_generator_is_kept_alone():
    """The app's own id in a generator of headers is found, sent, and not doubled."""

    async def app(scope, receive, send):
        headers = (pair for pair in [(b"X-Request-Id", b"app-id")])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    sent = asyncio.run(_serve_once(ctxlog.ASGIMiddleware(app), "http"))

    assert [(b"X-Request-Id", b"app-id")] == list(sent[0]["headers"])


def test_starlette_response_setting_the_header_gets_one(capture):
    """A Starlette view that sets X-Request-ID itself: the client gets exactly one, the view's."""

    async def own(request):
        log.info("in view")
        return PlainTextResponse("hi", headers={"X-Request-ID": "view-id"})

    response = client(make_app([Route("/", own)])).get("/", headers={"X-Request-ID": "client-id"})

    assert ["view-id"] == response.headers.get_list("x-request-id")
    assert "client-id" == capture.named("asgi.app")[0].request_id


def test_missing_client_gives_dash_and_works(capture):
    """An http scope with client=None (a unix socket) logs ip '-' and is served."""
    sent = asyncio.run(call(make_app(trusted_proxies=["10.0.0.0/8"]), {"client": None}))

    assert 200 == sent[0]["status"]
    assert "-" == capture.named("asgi.app")[0].ip


def test_trusted_proxy_and_spoofing(capture):
    """X-Forwarded-For counts from a trusted peer only; a client cannot choose its address."""
    app = make_app(trusted_proxies=["10.0.0.0/8"])
    client(app, PROXY).get("/", headers={"X-Forwarded-For": "1.1.1.1, 203.0.113.9"})
    client(app, ("192.0.2.66", 1)).get("/", headers={"X-Forwarded-For": "1.1.1.1"})

    assert ["203.0.113.9", "192.0.2.66"] == [r.ip for r in capture.named("asgi.app")]


def test_several_forwarded_for_lines_are_joined_in_order(capture):
    """Two X-Forwarded-For header lines are one list, walked from the right of the last."""
    headers = [(b"x-forwarded-for", b"203.0.113.1"), (b"x-forwarded-for", b"203.0.113.2, 10.0.0.9")]
    asyncio.run(
        call(make_app(trusted_proxies=["10.0.0.0/8"]), {"headers": headers, "client": PROXY})
    )

    assert "203.0.113.2" == capture.named("asgi.app")[0].ip


def test_forwarded_header_is_read_only_when_configured(capture):
    """proxy_header='Forwarded' reads RFC 7239; the default ignores it."""
    headers = {
        "Forwarded": 'for="[2001:db8::7]:1234";proto=https',
        "X-Forwarded-For": "203.0.113.5",
    }
    client(make_app(trusted_proxies="10.0.0.0/8", proxy_header="Forwarded"), PROXY).get(
        "/", headers=headers
    )
    client(make_app(trusted_proxies="10.0.0.0/8"), PROXY).get("/", headers=headers)

    assert ["2001:db8::7", "203.0.113.5"] == [r.ip for r in capture.named("asgi.app")]


def test_ipv6_peer(capture):
    """An IPv6 peer is logged normalised."""
    client(make_app(), ("2001:DB8:0::1", 1)).get("/")

    assert "2001:db8::1" == capture.named("asgi.app")[0].ip


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn):
        name = conn.headers.get("x-user")
        if name is None:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(name)


def test_user_from_authentication_middleware_inside_ours(capture):
    """scope['user'] set by Starlette's AuthenticationMiddleware inside ctxlog is the user."""
    app = make_app(
        middleware=[Middleware(AuthenticationMiddleware, backend=HeaderAuth())], access_log=True
    )
    with client(app) as c:
        c.get("/", headers={"X-User": "alice"})
        c.get("/")

    assert ["alice", "-"] == [r.user for r in capture.named("asgi.app")]
    assert ["alice", "-"] == [r.user for r in capture.named("ctxlog.access")]


def test_user_callable_gets_the_scope(capture):
    """user= is called with the scope."""
    app = make_app(user=lambda scope: dict(scope["headers"]).get(b"x-auth", b"").decode() or None)
    client(app).get("/", headers={"X-Auth": "carol\r\nforged"})

    assert "carol\\r\\nforged" == capture.named("asgi.app")[0].user


def test_bind_user_wins_over_scope_user(capture):
    """bind(user=...) replaces the authenticated user for the rest of the request."""

    async def view(request):
        ctxlog.bind(user="bound")
        log.info("after bind")
        return PlainTextResponse("ok")

    app = make_app([Route("/", view)], [Middleware(AuthenticationMiddleware, backend=HeaderAuth())])
    client(app).get("/", headers={"X-User": "alice"})

    assert ["bound"] == [r.user for r in capture.named("asgi.app")]


def test_path_injection_is_escaped(capture):
    """A percent-decoded CR/LF/ESC/bidi path is escaped: one line per record."""
    client(make_app(access_log=True)).get("/a%0d%0a127.0.0.1%20admin%1b[2J%E2%80%AE")

    assert all(
        "\n" not in line and "\r" not in line and "\x1b" not in line and "\u202e" not in line
        for line in capture.lines
    )
    (access,) = capture.named(
        "ctxlog.access"
    )  # Starlette answers 404: its path pattern stops at a newline
    assert "/a\\r\\n127.0.0.1 admin\\x1b[2J\\u202e" == access.path
    assert "\\r\\n" in access.getMessage()


def test_non_utf8_header_bytes_are_latin1_and_match_wsgi(capture):
    """Header bytes that are not UTF-8 never raise, and give the same text as WSGI does."""
    import webtest  # noqa: F401 - WSGI side of the comparison below

    raw_ua = b"caf\xe9 \x1b[31m"
    asyncio.run(
        call(
            make_app(access_log=True),
            {"headers": [(b"user-agent", raw_ua), (b"referer", b"\xff\xfe")]},
        )
    )
    wsgi = ctxlog.WSGIMiddleware(lambda e, s: (s("200 OK", []), [b""])[1], access_log=True)
    body = wsgi(
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "REMOTE_ADDR": "192.0.2.10",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_USER_AGENT": raw_ua.decode("latin-1"),
            "HTTP_REFERER": "\xff\xfe",
        },
        lambda *a: None,
    )
    list(body)
    body.close()

    asgi_line, wsgi_line = capture.named("ctxlog.access")
    assert "café \\x1b[31m" == asgi_line.user_agent == wsgi_line.user_agent
    assert "ÿþ" == asgi_line.referer == wsgi_line.referer


def test_access_log_fields_and_status(capture):
    """The access line has status, size and duration; query strings are left out by default."""

    async def stream(request):
        async def chunks():
            yield b"abc"
            yield b"de"

        return StreamingResponse(chunks(), status_code=201)

    client(make_app([Route("/s", stream)], access_log=True)).get(
        "/s?token=SECRET", headers={"User-Agent": "ua/1", "X-Request-ID": "acc-1"}
    )

    (record,) = capture.named("ctxlog.access")
    assert (201, 5, "acc-1", "GET", "/s") == (
        record.status,
        record.size,
        record.request_id,
        record.method,
        record.path,
    )
    assert record.duration_ms >= 0
    assert "SECRET" not in record.getMessage()
    assert re.fullmatch(
        r'192\.0\.2\.10 - - "GET /s HTTP/1\.1" 201 5 "-" "ua/1" \d+\.\dms', record.getMessage()
    )


def test_access_log_with_query_when_asked(capture):
    """log_query=True keeps the query string."""
    client(make_app(access_log=True, log_query=True)).get("/p?page=2")

    (record,) = capture.named("ctxlog.access")
    assert ("page=2", True) == (record.query, '"GET /p?page=2 HTTP/1.1"' in record.getMessage())


def test_access_log_when_the_app_raises(capture):
    """An app that raises is logged with status 500, and the error still propagates."""

    async def boom(request):
        msg = "boom"
        raise RuntimeError(msg)

    app = make_app([Route("/", boom)], access_log=True)
    response = TestClient(app, raise_server_exceptions=False, client=("192.0.2.1", 1)).get("/")

    assert 500 == response.status_code
    assert [500] == [r.status for r in capture.named("ctxlog.access")]
    assert re.fullmatch("[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_bare_app_raising_before_response_is_logged_500(capture):
    """A bare ASGI app that raises before starting a response: access status 500."""

    async def app(scope, receive, send):
        msg = "boom"
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError):
        asyncio.run(call(ctxlog.ASGIMiddleware(app, access_log=True)))

    assert [500] == [r.status for r in capture.named("ctxlog.access")]


def test_add_middleware_with_options(capture):
    """Starlette's add_middleware(ctxlog.ASGIMiddleware, ...) works with keyword options."""
    app = Starlette(routes=[Route("/", hello)])
    app.add_middleware(ctxlog.ASGIMiddleware, access_log=True, trusted_proxies=["10.0.0.0/8"])
    TestClient(app, client=PROXY).get("/", headers={"X-Forwarded-For": "203.0.113.50"})

    assert ["203.0.113.50", "203.0.113.50"] == [
        r.ip for r in capture.named("asgi.app") + capture.named("ctxlog.access")
    ]


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"trusted_proxies": ["300.1.1.1"]}, ValueError, "300.1.1.1"),
        ({"user": 42}, TypeError, "not callable"),
        ({"request_id_header": ""}, ValueError, "header name"),
        ({"answer_lifespan": "yes"}, TypeError, "answer_lifespan: 'yes'"),
    ],
)
def test_bad_configuration_fails_at_construction(options, error, match):
    """Misconfiguration raises when the middleware is built, naming the bad value."""

    async def app(scope, receive, send):
        pass

    with pytest.raises(error, match=match):
        ctxlog.ASGIMiddleware(app, **options)


def test_logging_level_of_access_logger_is_respected(capture):
    """Silencing ctxlog.access stops the access line (and its formatting work)."""
    logging.getLogger("ctxlog.access").setLevel(logging.WARNING)
    try:
        client(make_app(access_log=True)).get("/")
    finally:
        logging.getLogger("ctxlog.access").setLevel(logging.NOTSET)

    assert [] == capture.named("ctxlog.access")


def test_user_object_that_raises_never_breaks_a_log_call(capture):
    """A scope['user'] whose is_authenticated raises: the view logs '-', the error is reported once."""

    class LazyUser:
        @property
        def is_authenticated(self):
            msg = "database is gone"
            raise RuntimeError(msg)

    async def app(scope, receive, send):
        scope["user"] = LazyUser()
        log.info("in view")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = ctxlog.ASGIMiddleware(app)
    for _ in range(2):
        asyncio.run(call(mw))

    assert ["-", "-"] == [r.user for r in capture.named("asgi.app")]
    assert 1 == len(capture.named("ctxlog"))


def test_user_callable_returning_unprintable_object_is_reported(capture):
    """A user= result whose __str__ raises is reported once; the request is served."""

    class Weird:
        def __str__(self):
            msg = "no"
            raise ValueError(msg)

    sent = asyncio.run(call(make_app(user=lambda scope: Weird())))

    assert 200 == sent[0]["status"]
    assert "-" == capture.named("asgi.app")[0].user
    assert 1 == len(capture.named("ctxlog"))


class _Slow(logging.Handler):
    """A target that takes a while per record, so nonblocking() still holds some at shutdown."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        time.sleep(0.002)
        self.messages.append(record.getMessage())


def _run_lifespan(app, before_shutdown=None, **options):
    """Play a server's lifespan through the middleware; return the types of what reached it."""
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive():
        message = next(messages)
        if message["type"] == "lifespan.shutdown" and before_shutdown is not None:
            before_shutdown()
        return message

    async def send(message):
        sent.append(message["type"])

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    asyncio.run(ctxlog.ASGIMiddleware(app, **options)(scope, receive, send))
    return sent


@pytest.fixture
def slow_queue():
    target = _Slow()
    handler = ctxlog.nonblocking([target])
    logger = logging.getLogger("asgi.lifespan")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, target
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        handler.close()


def test_lifespan_shutdown_delivers_the_queue_before_it_is_reported(slow_queue):
    """The server hears "shutdown complete" only once nonblocking() has delivered every record."""
    logger, target = slow_queue
    delivered_at_report = []

    async def app(scope, receive, send):
        assert "lifespan.startup" == (await receive())["type"]
        await send({"type": "lifespan.startup.complete"})
        assert "lifespan.shutdown" == (await receive())["type"]
        for seq in range(200):
            logger.info("record %d", seq)

        async def report(message):
            delivered_at_report.append(len(target.messages))
            await send(message)

        await report({"type": "lifespan.shutdown.complete"})

    # The app's own send is ctxlog's wrapper: it flushes before passing the message on.
    sent = _run_lifespan(app)

    assert ["lifespan.startup.complete", "lifespan.shutdown.complete"] == sent
    assert 200 == len(target.messages)
    assert delivered_at_report[0] < 200  # the queue really was behind when the app reported


def test_answer_lifespan_answers_for_the_app_and_flushes(slow_queue):
    """answer_lifespan=True: the app never sees the lifespan; the middleware answers and flushes."""
    logger, target = slow_queue
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    def log_records():
        for seq in range(200):
            logger.info("record %d", seq)

    sent = _run_lifespan(app, before_shutdown=log_records, answer_lifespan=True)

    assert ["lifespan.startup.complete", "lifespan.shutdown.complete"] == sent
    assert 200 == len(target.messages)
    assert [] == seen


@pytest.mark.parametrize("answer_lifespan", [False, True])
def test_other_scopes_reach_the_app_whatever_answer_lifespan(answer_lifespan):
    """answer_lifespan only concerns lifespan scopes: http requests still reach the app."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = asyncio.run(call(ctxlog.ASGIMiddleware(app, answer_lifespan=answer_lifespan)))

    assert 204 == sent[0]["status"]


def test_an_app_refusing_the_lifespan_raises_to_the_server_as_without_ctxlog():
    """An error the app raises on the lifespan before reading a message reaches the server."""

    async def app(scope, receive, send):
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    with pytest.raises(ValueError, match="not lifespan"):
        _run_lifespan(app)


def test_starlette_middleware_that_fails_to_build_still_fails_the_client():
    """Starlette's own test_exception_in_middleware holds behind ctxlog: the error reaches the client."""

    class MiddlewareError(Exception):
        pass

    class BrokenMiddleware:
        def __init__(self, app):
            raise MiddlewareError

    app = Starlette(middleware=[Middleware(BrokenMiddleware)])
    with pytest.raises(MiddlewareError), TestClient(ctxlog.ASGIMiddleware(app)):
        pass


def test_a_lifespan_startup_failure_still_raises():
    """An app that read the startup message and then failed is not covered up."""

    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        raise RuntimeError("no database")

    with pytest.raises(RuntimeError, match="no database"):
        _run_lifespan(app)
