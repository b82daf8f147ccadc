"""ctxlog.django.ContextMiddleware: a real Django project, under WSGI and ASGI, wrapped or not."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.util import setup_testing_defaults

import django
import httpx
import pytest
from django.conf import settings

# Django's settings are process-wide: configure them once, for this module, without touching
# DJANGO_SETTINGS_MODULE or the logging set-up of the other tests (LOGGING_CONFIG=None).
_DB_DIR = tempfile.TemporaryDirectory(prefix="ctxlog-django-")
if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="ctxlog-tests-only",
        ALLOWED_HOSTS=["testserver", "127.0.0.1"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        MIDDLEWARE=[
            "ctxlog.django.ContextMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                # A file, not ":memory:": every thread (sync views under ASGI) sees the same
                # data, and Django closes each connection at the end of its request.
                "NAME": _DB_DIR.name + "/db.sqlite3",
            }
        },
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        LOGGING_CONFIG=None,
        TEMPLATES=[],
    )
    django.setup()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.http import (  # noqa: E402
    HttpResponse,
    HttpResponseNotFound,
    JsonResponse,
    StreamingHttpResponse,
)
from django.test import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils.functional import empty  # noqa: E402

import ctxlog  # noqa: E402
from ctxlog.context import request_var  # noqa: E402
from ctxlog.django import ContextMiddleware  # noqa: E402

log = logging.getLogger("shop.views")
HEX_ID = re.compile(r"[0-9a-f]{32}")
TRUSTED = ["10.0.0.0/8"]


# --- the project's views ----------------------------------------------------------------------


def _state(request) -> dict[str, Any]:
    return {
        "context": ctxlog.get_context(),
        "session_accessed": request.session.accessed,
        "user_loaded": request.user._wrapped is not empty,
    }


def plain(request):
    log.info("plain view")
    return JsonResponse(_state(request))


def with_user(request):
    log.info("hello %s", request.user)  # loads the user, as most views do
    return JsonResponse(_state(request))


async def aplain(request):
    log.info("async plain view")
    return JsonResponse(_state(request))


async def awith_user(request):
    user = await request.auser()
    log.info("async hello %s", user)
    return JsonResponse({"context": ctxlog.get_context()})


def bind_user(request):
    ctxlog.bind(user="service-account")
    log.info("bound")
    return HttpResponse("ok")


def missing(request):
    log.info("looking for it")
    return HttpResponseNotFound("no such thing")


def boom(request):
    log.info("about to fail")
    msg = "view failed"
    raise RuntimeError(msg)


def stream(request):
    def chunks():
        for number in range(3):
            log.info("chunk %d", number)
            yield f"line {number}\n"

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def astream(request):
    async def chunks():
        for number in range(3):
            log.info("chunk %d", number)
            yield f"line {number}\n"

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def own_id(request):
    log.info("own id")
    response = HttpResponse("ok")
    response["X-Request-ID"] = "view-id"
    return response


urlpatterns = [
    path("own-id", own_id),
    path("plain", plain),
    path("user", with_user),
    path("aplain", aplain),
    path("auser", awith_user),
    path("bind", bind_user),
    path("missing", missing),
    path("boom", boom),
    path("stream", stream),
    path("astream", astream),
]


class SyncOnlyMiddleware:
    """A middleware that only knows sync: under ASGI, Django adapts the chain around it."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        log.info("sync-only middleware")
        return self.get_response(request)


# --- drivers ----------------------------------------------------------------------------------


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    body: bytes
    #: Every header line as sent, names lower-cased: a header sent twice is here twice.
    lines: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


def _wsgi_get(app, url: str, headers: dict[str, str], peer: str) -> Result:
    path, _, query = url.partition("?")
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD="GET",
        PATH_INFO=path,
        QUERY_STRING=query,
        REMOTE_ADDR=peer,
        SERVER_PROTOCOL="HTTP/1.1",
    )
    environ["wsgi.input"] = io.BytesIO()
    environ["wsgi.errors"] = io.StringIO()
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    started: list[Any] = []

    def start_response(status, response_headers, exc_info=None):
        started.append((status, response_headers))

    body = app(environ, start_response)
    try:
        content = b"".join(body)
    finally:
        body.close()
    status, response_headers = started[0]
    lines = [(k.lower(), v) for k, v in response_headers]
    return Result(int(status.split()[0]), dict(lines), content, lines)


def _asgi_get(app, url: str, headers: dict[str, str], peer: str) -> Result:
    async def main() -> Result:
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get(url, headers=headers)
        return Result(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
            [(k.lower(), v) for k, v in response.headers.multi_items()],
        )

    return asyncio.run(main())


@dataclass
class Server:
    """One way of serving the project: WSGI or ASGI, wrapped by ctxlog's middleware or not."""

    name: str
    app: Any
    call: Callable[[Any, str, dict[str, str], str], Result]

    def get(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        session: str | None = None,
        peer: str = "192.0.2.10",
    ) -> Result:
        headers = dict(headers or {})
        if session is not None:
            headers["Cookie"] = f"{settings.SESSION_COOKIE_NAME}={session}"
        return self.call(self.app, url, headers, peer)


def build(kind: str, *, middleware: list[str] | None = None) -> Server:
    """Build the handler; ``+ctxlog`` wraps it, else ContextMiddleware sets the context."""
    overrides: dict[str, Any] = {"CTXLOG": {"TRUSTED_PROXIES": TRUSTED, "ACCESS_LOG": True}}
    if middleware is not None:
        overrides["MIDDLEWARE"] = middleware
    with override_settings(**overrides):
        if kind.startswith("wsgi"):
            app: Any = WSGIHandler()
            if kind == "wsgi+ctxlog":
                app = ctxlog.WSGIMiddleware(app, trusted_proxies=TRUSTED, access_log=True)
            return Server(kind, app, _wsgi_get)
        app = ASGIHandler()
        if kind == "asgi+ctxlog":
            app = ctxlog.ASGIMiddleware(app, trusted_proxies=TRUSTED, access_log=True)
        return Server(kind, app, _asgi_get)


KINDS = ["wsgi", "wsgi+ctxlog", "asgi", "asgi+ctxlog"]


@pytest.fixture(scope="module")
def sessions() -> Iterator[dict[str, str]]:
    """Create the database and two users; return a logged-in session key for each."""
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client

    call_command("migrate", verbosity=0)
    keys = {}
    for name in ("alice", "bob"):
        user, _ = User.objects.get_or_create(username=name)
        client = Client()
        client.force_login(user)
        keys[name] = client.cookies[settings.SESSION_COOKIE_NAME].value
    connections.close_all()
    yield keys
    connections.close_all()


@pytest.fixture(params=KINDS)
def server(request, sessions) -> Server:
    return build(request.param)


def fields(record: logging.LogRecord) -> tuple[str, str, str]:
    return (record.ip, record.user, record.request_id)


def of(capture, request_id: str) -> list[logging.LogRecord]:
    return [r for r in capture.records if getattr(r, "request_id", None) == request_id]


def access(capture, request_id: str) -> logging.LogRecord:
    (found,) = [r for r in of(capture, request_id) if r.name == "ctxlog.access"]
    return found


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/user", "/auser"])
def test_logged_in_user_on_view_and_access_records(server, sessions, capture, url):
    """A view that loads the user: its records and the access line name the user."""
    response = server.get(url, session=sessions["alice"], headers={"X-Request-ID": "dj-1"})

    assert 200 == response.status
    assert "dj-1" == response.headers["x-request-id"]
    assert "alice" == response.json()["context"]["user"]
    (view,) = capture.named("shop.views")
    assert ("192.0.2.10", "alice", "dj-1") == fields(view)
    line = access(capture, "dj-1")
    assert ("192.0.2.10", "alice", "dj-1") == fields(line)
    assert line.getMessage().startswith(f'192.0.2.10 - alice "GET {url} HTTP/1.1" 200 ')


@pytest.mark.parametrize("url", ["/plain", "/aplain"])
def test_user_never_loaded_when_the_view_does_not(server, sessions, capture, url):
    """A view that never reads request.user: no session read, no user query, user '-'."""
    response = server.get(url, session=sessions["alice"])

    state = response.json()
    assert (False, False) == (state["session_accessed"], state["user_loaded"])
    assert "Cookie" not in response.headers.get("vary", "")  # the session was never read
    request_id = response.headers["x-request-id"]
    assert HEX_ID.fullmatch(request_id)
    records = of(capture, request_id)
    assert 2 == len(records)  # the view's and the access line
    assert {("192.0.2.10", "-", request_id)} == {fields(r) for r in records}


def test_anonymous_user_is_a_dash(server, sessions, capture):
    """Without a session the loaded user is anonymous, logged as '-'."""
    response = server.get("/user")

    request_id = response.headers["x-request-id"]
    assert "-" == response.json()["context"]["user"]
    assert {("192.0.2.10", "-", request_id)} == {fields(r) for r in of(capture, request_id)}


def test_bound_user_wins(server, sessions, capture):
    """ctxlog.bind(user=...) in a view wins over the Django user."""
    response = server.get("/bind", session=sessions["bob"])

    request_id = response.headers["x-request-id"]
    assert ["service-account", "service-account"] == [r.user for r in of(capture, request_id)]


def test_client_ip_from_a_trusted_proxy_only(server, sessions, capture):
    """X-Forwarded-For counts only when the peer is a trusted proxy."""
    forged = {"X-Forwarded-For": "203.0.113.7"}
    proxied = server.get("/plain", headers=forged, peer="10.0.0.1")
    direct = server.get("/plain", headers=forged, peer="192.0.2.99")

    assert "203.0.113.7" == proxied.json()["context"]["ip"]
    assert "192.0.2.99" == direct.json()["context"]["ip"]
    assert "203.0.113.7" == access(capture, proxied.headers["x-request-id"]).ip
    assert "192.0.2.99" == access(capture, direct.headers["x-request-id"]).ip


def test_bad_request_id_is_replaced(server, sessions, capture):
    """An unacceptable incoming id is replaced by a new one, which is echoed."""
    response = server.get("/plain", headers={"X-Request-ID": "has space"})

    request_id = response.headers["x-request-id"]
    assert HEX_ID.fullmatch(request_id)
    assert request_id == response.json()["context"]["request_id"]


def test_returned_404_is_logged_by_django_with_the_fields(server, sessions, capture):
    """Django's own 'Not Found' record, for a response the view returned, carries the fields."""
    response = server.get("/missing", session=sessions["alice"], headers={"X-Request-ID": "nf-1"})

    assert 404 == response.status
    assert "nf-1" == response.headers["x-request-id"]
    (warning,) = capture.named("django.request")
    assert "Not Found: /missing" == warning.getMessage()
    assert ("192.0.2.10", "-", "nf-1") == fields(warning)  # the view never loaded the user
    assert 404 == access(capture, "nf-1").status


def test_unmatched_url_is_logged_by_django_with_the_fields(server, sessions, capture):
    """A URL no pattern matches: Django's warning carries the request's fields."""
    response = server.get("/nowhere", headers={"X-Request-ID": "nf-2"})

    assert 404 == response.status
    (warning,) = capture.named("django.request")
    assert ("Not Found: /nowhere", "nf-2") == (warning.getMessage(), warning.request_id)


def test_exception_is_logged_with_fields_and_traceback(server, sessions, capture):
    """A view that raises: Django logs the error with the fields and the traceback; 500 + id."""
    response = server.get("/boom", session=sessions["alice"], headers={"X-Request-ID": "err-1"})

    assert 500 == response.status
    assert "err-1" == response.headers["x-request-id"]
    (error,) = capture.named("django.request")
    assert logging.ERROR == error.levelno
    assert "Internal Server Error: /boom" == error.getMessage()
    assert ("192.0.2.10", "-", "err-1") == fields(error)
    assert error.exc_info is not None
    assert "view failed" == str(error.exc_info[1])
    assert 500 == access(capture, "err-1").status


def test_nothing_leaks_into_the_next_request(server, sessions, capture):
    """After a logged-in request, the next anonymous one has its own id and user '-'."""
    first = server.get("/user", session=sessions["alice"])
    assert request_var.get() is None
    assert {} == ctxlog.get_context()
    second = server.get("/user")
    assert request_var.get() is None

    assert "alice" == first.json()["context"]["user"]
    assert "-" == second.json()["context"]["user"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    log.info("outside")
    assert ("-", "-", "-") == fields(capture.records[-1])


@pytest.mark.parametrize(("kind", "url"), [(k, "/stream") for k in KINDS[:2]] + [
    (k, "/astream") for k in KINDS[2:]
])  # fmt: skip
def test_streaming_body_logs_with_the_fields(sessions, capture, kind, url):
    """Records made while the body streams, after the middleware returned, carry the fields."""
    response = build(kind).get(url, session=sessions["bob"], headers={"X-Request-ID": "st-1"})

    assert b"line 0\nline 1\nline 2\n" == response.body
    chunks = [r for r in capture.named("shop.views") if r.getMessage().startswith("chunk")]
    assert 3 == len(chunks)
    assert {("192.0.2.10", "-", "st-1")} == {fields(r) for r in chunks}
    assert len(response.body) == access(capture, "st-1").size
    assert request_var.get() is None


@pytest.mark.parametrize("kind", KINDS)
def test_sync_only_middleware_in_the_chain(sessions, capture, kind):
    """With a sync-only middleware below it (ASGI: ContextMiddleware runs sync) all still works."""
    chain = [*settings.MIDDLEWARE, f"{__name__}.SyncOnlyMiddleware"]
    server = build(kind, middleware=chain)
    for url in ("/user", "/auser"):
        response = server.get(url, session=sessions["alice"], headers={"X-Request-ID": "so-1"})
        assert "alice" == response.json()["context"]["user"]
    records = capture.named("shop.views")
    assert 4 == len(records)
    assert {("192.0.2.10", "alice", "so-1")} == {fields(r) for r in records[1::2]}
    assert {("192.0.2.10", "-", "so-1")} == {fields(r) for r in records[0::2]}  # not loaded yet


def test_middleware_position_does_not_matter_for_the_user(sessions, capture):
    """Placed after AuthenticationMiddleware it still works (the user is looked up lazily)."""
    chain = [*settings.MIDDLEWARE[1:], "ctxlog.django.ContextMiddleware"]
    response = build("wsgi", middleware=chain).get("/user", session=sessions["alice"])

    assert "alice" == response.json()["context"]["user"]


def test_file_response_keeps_its_fast_path(capture):
    """Without a wrapper, a FileResponse is not wrapped (sendfile stays); its access line is."""
    from django.http import FileResponse
    from django.test import RequestFactory

    with override_settings(CTXLOG={"ACCESS_LOG": True}):
        middleware = ContextMiddleware(lambda request: FileResponse(io.BytesIO(b"12345")))
    request = RequestFactory().get("/file", HTTP_X_REQUEST_ID="file-1")
    response = middleware(request)
    response.close()

    assert response.file_to_stream is not None
    assert "file-1" == response["X-Request-ID"]
    assert 5 == access(capture, "file-1").size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"TRUSTED_PROXY": ["10.0.0.1"]}, "CTXLOG: unknown option(s) ['TRUSTED_PROXY']"),
        ({"TRUSTED_PROXIES": ["10.1.2.3/8"]}, "has bits set beyond its /8 prefix"),
        ({"PROXY_HEADER": "X-Real-IP"}, "is not 'X-Forwarded-For' or 'Forwarded'"),
        ({"REQUEST_ID_HEADER": "bad header"}, "is not a valid HTTP header name"),
        (["10.0.0.1"], "is not a dict of ctxlog options"),
    ],
)
def test_bad_settings_fail_at_start_up(value, message):
    """A bad CTXLOG setting raises ImproperlyConfigured when Django builds its handler."""
    with override_settings(CTXLOG=value), pytest.raises(ImproperlyConfigured) as raised:
        WSGIHandler()
    assert message in str(raised.value)


def test_middleware_is_sync_and_async_capable():
    """Django may run it either way; with an async get_response it is a coroutine function."""
    from asgiref.sync import iscoroutinefunction

    async def inner(request):
        return HttpResponse()

    assert (True, True) == (ContextMiddleware.sync_capable, ContextMiddleware.async_capable)
    assert iscoroutinefunction(ContextMiddleware(inner))
    assert not iscoroutinefunction(ContextMiddleware(lambda request: HttpResponse()))


@pytest.fixture(autouse=True)
def _no_leftover_context() -> Iterator[None]:
    yield
    assert request_var.get() is None


@pytest.mark.parametrize("mode", [True, "request_id"])
def test_trace_context_setting(capture, mode):
    """CTXLOG TRACE_CONTEXT reads traceparent; "request_id" makes its trace-id the request id."""
    from django.http import HttpResponse
    from django.test import RequestFactory

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"

    def view(request):
        logging.getLogger("django.tests.trace").info("in view")
        return HttpResponse(b"ok")

    with override_settings(CTXLOG={"TRACE_CONTEXT": mode}):
        middleware = ContextMiddleware(view)
    request = RequestFactory().get(
        "/t",
        HTTP_X_REQUEST_ID="d-t",
        HTTP_TRACEPARENT=f"00-{trace_id}-00f067aa0ba902b7-01",
    )
    response = middleware(request)

    (record,) = capture.named("django.tests.trace")
    assert (trace_id, "00f067aa0ba902b7") == (record.trace_id, record.span_id)
    expected = trace_id if mode == "request_id" else "d-t"
    assert (expected, expected) == (record.request_id, response["X-Request-ID"])


def test_bad_trace_context_setting_fails_at_start_up():
    """TRACE_CONTEXT must be True, False or "request_id"."""
    with override_settings(CTXLOG={"TRACE_CONTEXT": "on"}), pytest.raises(ImproperlyConfigured):
        WSGIHandler()


def test_stream_failing_mid_way_is_logged_by_the_server_with_the_request(capture):
    """Without a wrapper, a body that fails mid-stream still names its request in the server's record."""
    from django.http import StreamingHttpResponse
    from django.test import RequestFactory

    def chunks():
        yield b"first"
        raise RuntimeError("stream broke")

    middleware = ContextMiddleware(lambda request: StreamingHttpResponse(chunks()))
    request = RequestFactory().get("/stream", HTTP_X_REQUEST_ID="stream-1", REMOTE_ADDR="192.0.2.8")
    response = middleware(request)
    server = logging.getLogger("django.tests.server")
    try:
        for _ in response:  # the server iterates after the view, outside the request
            pass
    except RuntimeError:
        server.exception("Error handling request /stream")

    (record,) = capture.named("django.tests.server")
    assert ("192.0.2.8", "stream-1") == (record.ip, record.request_id)


def test_a_view_setting_its_own_request_id_gets_one_header(server, sessions, capture):
    """A response that already has X-Request-ID keeps the view's, alone; records keep the request's."""
    result = server.get("/own-id", headers={"X-Request-ID": "client-id"})

    assert 200 == result.status
    assert [("x-request-id", "view-id")] == [kv for kv in result.lines if kv[0] == "x-request-id"]
    assert ["client-id"] == [r.request_id for r in capture.named("shop.views")]


def _lifespan_through(app) -> list[str]:
    """Play a server's lifespan against ``app``; return the types of what reached the server."""
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    return sent


def test_answer_lifespan_answers_for_django():
    """Django's ASGI application with answer_lifespan=True: the server's lifespan is answered."""
    app = ctxlog.ASGIMiddleware(ASGIHandler(), answer_lifespan=True)

    assert ["lifespan.startup.complete", "lifespan.shutdown.complete"] == _lifespan_through(app)


def test_without_answer_lifespan_django_refuses_it_as_it_does_bare():
    """Without the option the server hears Django's own refusal, exactly as without ctxlog."""
    with pytest.raises(ValueError, match="lifespan") as bare:
        _lifespan_through(ASGIHandler())
    with pytest.raises(ValueError, match="lifespan") as wrapped:
        _lifespan_through(ctxlog.ASGIMiddleware(ASGIHandler()))

    assert str(bare.value) == str(wrapped.value)
