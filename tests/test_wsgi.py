"""WSGIMiddleware: the request's context for PEP 3333 apps, driven through WebTest and by hand."""

from __future__ import annotations

import contextvars
import logging
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import webtest

import ctxlog

log = ctxlog.get_logger("wsgi.app")


def hello(environ, start_response):
    log.info("in view")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def _testapp(app, **options):
    extra = {"REMOTE_ADDR": options.pop("peer", "192.0.2.10")}
    return webtest.TestApp(ctxlog.WSGIMiddleware(app, **options), extra_environ=extra)


def test_fields_in_view(capture):
    """A view's records carry the peer ip, REMOTE_USER, request id, method and path."""
    app = _testapp(hello)
    app.get(
        "/shop/cart", headers={"X-Request-ID": "abc-123"}, extra_environ={"REMOTE_USER": "alice"}
    )

    record = capture.named("wsgi.app")[0]
    assert ("192.0.2.10", "alice", "abc-123", "GET", "/shop/cart") == (
        record.ip,
        record.user,
        record.request_id,
        record.method,
        record.path,
    )


def test_script_name_is_part_of_the_path(capture):
    """An app mounted under SCRIPT_NAME logs the full path."""
    app = _testapp(hello)
    app.get("/cart", extra_environ={"SCRIPT_NAME": "/shop"})

    assert "/shop/cart" == capture.named("wsgi.app")[0].path


def test_request_id_is_echoed(capture):
    """The accepted incoming id is echoed under the same header."""
    response = _testapp(hello).get("/", headers={"X-Request-ID": "abc-123"})

    assert "abc-123" == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "incoming",
    ["", "has space", "x" * 201, "tab\there", "caf\u00e9", "new\r\nline", "\x1b[2J"],
)
def test_invalid_request_id_is_replaced_and_the_new_one_echoed(capture, incoming):
    """An id that is not 1-200 printable ASCII without spaces is replaced by a fresh one."""
    app = ctxlog.WSGIMiddleware(hello)
    headers: list[tuple[str, str]] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "REMOTE_ADDR": "192.0.2.1",
        "HTTP_X_REQUEST_ID": incoming,
    }
    body = app(environ, lambda status, h, exc_info=None: headers.extend(h))
    list(body)
    body.close()

    logged = capture.named("wsgi.app")[0].request_id
    assert re.fullmatch("[0-9a-f]{32}", logged)
    assert ("X-Request-ID", logged) in headers


def test_custom_request_id_header(capture):
    """request_id_header names the header read and echoed."""
    response = _testapp(hello, request_id_header="X-Correlation-ID").get(
        "/", headers={"X-Correlation-ID": "corr-1"}
    )

    assert ("corr-1", "corr-1") == (
        capture.named("wsgi.app")[0].request_id,
        response.headers["X-Correlation-ID"],
    )


def test_streaming_body_and_close_run_in_the_request_context(capture):
    """Records made while the server iterates the body and calls close() carry the request's fields."""

    class Body:
        def __init__(self):
            self.chunks = iter([b"a", b"b"])

        def __iter__(self):
            return self

        def __next__(self):
            chunk = next(self.chunks)
            log.info("chunk %s", chunk.decode())
            return chunk

        def close(self):
            log.info("closing")

    def app(environ, start_response):
        ctxlog.bind(user="streamer")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    _testapp(app).get("/stream", headers={"X-Request-ID": "rid-stream"})

    lines = capture.named("wsgi.app")
    assert ["chunk a", "chunk b", "closing"] == [r.getMessage() for r in lines]
    assert {("streamer", "rid-stream")} == {(r.user, r.request_id) for r in lines}


def test_generator_body_logs_with_context(capture):
    """A generator body (start_response called lazily inside it) keeps the context."""

    def app(environ, start_response):
        def body():
            start_response("200 OK", [("Content-Type", "text/plain")])
            log.info("first")
            yield b"1"
            log.info("second")
            yield b"2"

        return body()

    response = _testapp(app).get("/", headers={"X-Request-ID": "gen-1"})

    assert ["gen-1", "gen-1"] == [r.request_id for r in capture.named("wsgi.app")]
    assert "gen-1" == response.headers["X-Request-ID"]


def test_nothing_is_left_in_the_thread_after_the_request(capture):
    """After close(), the calling thread's context is as before the request."""
    app = ctxlog.WSGIMiddleware(hello)
    body = app(
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "REMOTE_ADDR": "192.0.2.1",
            "REMOTE_USER": "alice",
        },
        lambda *a: None,
    )
    list(body)
    body.close()

    assert {} == ctxlog.get_context()
    logging.getLogger("after").info("x")
    assert "-" == capture.named("after")[0].user


def test_close_from_another_thread_does_not_raise(capture):
    """A server that closes the body from another thread gets it closed, with no exception."""
    app = ctxlog.WSGIMiddleware(hello, access_log=True)
    body = app(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "192.0.2.1"}, lambda *a: None
    )
    list(body)
    errors: list[BaseException] = []

    def close():
        try:
            body.close()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=close)
    thread.start()
    thread.join(5)

    assert [] == errors
    assert 1 == len(capture.named("ctxlog.access"))


def test_close_called_from_inside_iteration_does_not_raise(capture):
    """close() re-entering while the Context is in use (a server quirk) still works."""
    holder = {}

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            holder["body"].close()
            yield b"x"

        return body()

    mw = ctxlog.WSGIMiddleware(app)
    holder["body"] = mw({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda *a: None)
    with pytest.raises(ValueError, match="generator already executing"):
        next(iter(holder["body"]))


def test_sixteen_thread_pool_reusing_threads_never_mixes_requests(capture):
    """2,000 requests on 16 reused threads: every record carries its own request's fields."""
    done_clean: list[bool] = []

    def app(environ, start_response):
        log.info("view")
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            time.sleep(random.random() / 2000)
            log.info("body")
            yield b"x"

        return body()

    mw = ctxlog.WSGIMiddleware(app, trusted_proxies=["10.0.0.0/8"], access_log=True)

    def request(i: int) -> None:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": f"/item/{i}",
            "REMOTE_ADDR": "10.1.2.3",
            "HTTP_X_FORWARDED_FOR": f"198.51.100.{i % 250}",
            "HTTP_X_REQUEST_ID": f"req-{i}",
        }
        if i % 2 == 0:
            environ["REMOTE_USER"] = f"user{i}"
        body = mw(environ, lambda *a: None)
        for _ in body:
            pass
        body.close()
        done_clean.append(ctxlog.get_context() == {})

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(request, range(2000)))

    records = capture.records
    assert 3 * 2000 == len(records)
    wrong = [
        r
        for r in records
        if r.path != f"/item/{r.request_id[4:]}"
        or r.ip != f"198.51.100.{int(r.request_id[4:]) % 250}"
        or r.user != (f"user{r.request_id[4:]}" if int(r.request_id[4:]) % 2 == 0 else "-")
    ]
    assert [] == wrong
    assert all(done_clean)
    assert 2000 == len(done_clean)


def test_user_callable_gets_the_environ(capture):
    """user= is called with the environ; its result is the user."""
    app = _testapp(hello, user=lambda environ: environ.get("HTTP_X_AUTH_USER"))
    app.get("/", headers={"X-Auth-User": "carol"})

    assert "carol" == capture.named("wsgi.app")[0].user


def test_bind_user_wins_over_remote_user(capture):
    """bind(user=...) in the view replaces REMOTE_USER for the rest of the request."""

    def app(environ, start_response):
        log.info("before")
        ctxlog.bind(user="bound")
        log.info("after")
        start_response("200 OK", [])
        return [b""]

    _testapp(app, access_log=True).get("/", extra_environ={"REMOTE_USER": "remote"})

    assert ["remote", "bound"] == [r.user for r in capture.named("wsgi.app")]
    assert "bound" == capture.named("ctxlog.access")[0].user


def test_remote_user_set_by_inner_middleware_is_picked_up(capture):
    """REMOTE_USER set inside the app (an auth middleware inside ours) is used once it appears."""

    def auth(environ, start_response):
        environ["REMOTE_USER"] = "inner"
        return hello(environ, start_response)

    _testapp(auth).get("/")

    assert "inner" == capture.named("wsgi.app")[0].user


def test_non_utf8_remote_user_is_decoded_as_latin1_and_control_chars_escaped(capture):
    """PEP 3333 environ text: UTF-8 when it is, else latin-1; controls escaped."""
    _testapp(hello).get("/", extra_environ={"REMOTE_USER": "caf\u00c3\u00a9\r\nx"})
    _testapp(hello).get("/", extra_environ={"REMOTE_USER": "caf\u00e9"})

    assert ["café\\r\\nx", "café"] == [r.user for r in capture.named("wsgi.app")]


def test_path_with_crlf_and_escape_is_escaped(capture):
    """A percent-decoded path cannot start a new line or drive a terminal."""
    _testapp(hello).get("/a%0d%0aFORGED%1b[2J")

    line = capture.lines[0]
    assert "\n" not in line and "\x1b" not in line
    assert "/a\\r\\nFORGED\\x1b[2J" == capture.named("wsgi.app")[0].path


def test_trusted_proxy_and_spoofing(capture):
    """X-Forwarded-For counts only from a trusted peer; from anyone else the peer is logged."""
    app = ctxlog.WSGIMiddleware(hello, trusted_proxies=["10.0.0.0/8"])
    trusted = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": "10.0.0.5"})
    untrusted = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": "192.0.2.66"})
    trusted.get("/", headers={"X-Forwarded-For": "1.1.1.1, 203.0.113.9, 10.0.0.7"})
    untrusted.get("/", headers={"X-Forwarded-For": "1.1.1.1"})

    assert ["203.0.113.9", "192.0.2.66"] == [r.ip for r in capture.named("wsgi.app")]


def test_forwarded_header_when_configured(capture):
    """proxy_header='Forwarded' reads RFC 7239 and ignores X-Forwarded-For."""
    app = _testapp(hello, peer="10.0.0.5", trusted_proxies="10.0.0.0/8", proxy_header="Forwarded")
    app.get(
        "/",
        headers={"Forwarded": 'for="[2001:db8::1]:4711";proto=https', "X-Forwarded-For": "1.1.1.1"},
    )

    assert "2001:db8::1" == capture.named("wsgi.app")[0].ip


def test_access_log_line(capture):
    """access_log=True writes one combined-style record with status, size and duration."""
    _testapp(hello, access_log=True).get(
        "/cart?token=SECRET",
        headers={"User-Agent": "agent/1", "Referer": "https://x.test/p?sid=SECRET2"},
        extra_environ={"REMOTE_USER": "alice"},
    )

    (record,) = capture.named("ctxlog.access")
    assert (200, 5, "alice", "/cart") == (record.status, record.size, record.user, record.path)
    assert record.duration_ms >= 0
    assert re.fullmatch(
        r'192\.0\.2\.10 - alice "GET /cart HTTP/1\.0" 200 5 "https://x\.test/p" "agent/1" \d+\.\dms',
        record.getMessage(),
    )
    assert "SECRET" not in record.getMessage()


def test_access_log_includes_query_when_asked(capture):
    """log_query=True adds the query string to the line and the record."""
    _testapp(hello, access_log=True, log_query=True).get("/cart?page=2")

    (record,) = capture.named("ctxlog.access")
    assert '"GET /cart?page=2 HTTP/1.0"' in record.getMessage()
    assert "page=2" == record.query


def test_access_log_when_the_app_raises(capture):
    """An app that raises still gets an access line, with status 500."""

    def broken(environ, start_response):
        msg = "boom"
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError):
        _testapp(broken, access_log=True).get("/broken")

    (record,) = capture.named("ctxlog.access")
    assert (500, "/broken") == (record.status, record.path)


def test_access_log_when_the_body_raises(capture):
    """A body that raises before start_response is logged as 500."""

    def app(environ, start_response):
        def body():
            msg = "boom"
            raise RuntimeError(msg)
            yield b""  # pragma: no cover

        return body()

    mw = ctxlog.WSGIMiddleware(app, access_log=True)
    body = mw(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "192.0.2.1"}, lambda *a: None
    )
    with pytest.raises(RuntimeError):
        list(body)
    body.close()

    assert [500] == [r.status for r in capture.named("ctxlog.access")]


def test_access_log_counts_write_callable_bytes(capture):
    """Bytes sent through the legacy write() callable count towards the size."""

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"12345")
        return [b"678"]

    _testapp(app, access_log=True).get("/")

    assert [8] == [r.size for r in capture.named("ctxlog.access")]


def test_access_log_is_written_once(capture):
    """A second close() does not log a second line."""
    mw = ctxlog.WSGIMiddleware(hello, access_log=True)
    body = mw(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "192.0.2.1"}, lambda *a: None
    )
    list(body)
    body.close()
    body.close()

    assert 1 == len(capture.named("ctxlog.access"))


def test_no_access_log_by_default(capture):
    """Without access_log=True nothing is written on ctxlog.access."""
    _testapp(hello).get("/")

    assert [] == capture.named("ctxlog.access")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"trusted_proxies": ["10.0.0.0/33"]}, ValueError, "10.0.0.0/33"),
        ({"trusted_proxies": ["not-an-ip"]}, ValueError, "not-an-ip"),
        ({"user": "REMOTE_USER"}, TypeError, "not callable"),
        ({"request_id_header": "X Request"}, ValueError, "not a valid HTTP header name"),
        ({"proxy_header": "X-Real-IP"}, ValueError, "X-Real-IP"),
    ],
)
def test_bad_configuration_fails_at_construction(options, error, match):
    """Misconfiguration raises when the middleware is built, naming the bad value."""
    with pytest.raises(error, match=match):
        ctxlog.WSGIMiddleware(hello, **options)


def test_non_callable_app_is_rejected():
    """Wrapping something that is not an app fails at once."""
    with pytest.raises(TypeError, match="not a WSGI application"):
        ctxlog.WSGIMiddleware("app")  # type: ignore[arg-type]


def test_failing_user_callable_is_reported_once_and_logs_dash(capture):
    """A user= callable that raises never breaks the request; it is reported once."""

    def bad(environ):
        msg = "no user here"
        raise KeyError(msg)

    app = _testapp(bad_user_app := hello, user=bad)  # noqa: F841
    app.get("/")
    app.get("/")

    reports = capture.named("ctxlog")
    assert 1 == len(reports)
    assert reports[0].exc_info is not None
    assert ["-", "-"] == [r.user for r in capture.named("wsgi.app")]


def test_request_id_sent_twice_is_replaced_as_in_asgi(capture):
    """A server joins a repeated X-Request-ID with a comma; like ASGI, neither value is trusted."""
    # What gunicorn and wsgiref put in the environ for two X-Request-ID lines (WebTest keeps one).
    response = _testapp(hello).get("/", extra_environ={"HTTP_X_REQUEST_ID": "a,b"})

    logged = capture.named("wsgi.app")[0].request_id
    assert re.fullmatch("[0-9a-f]{32}", logged)
    assert logged == response.headers["X-Request-ID"]


def test_app_header_list_is_not_changed(capture):
    """An app passing the same header list to every request does not collect ids in it."""
    headers = [("Content-Type", "text/plain")]

    def app(environ, start_response):
        start_response("200 OK", headers)
        return [b"x"]

    wsgi = _testapp(app)
    for _ in range(3):
        response = wsgi.get("/")
        assert 1 == len(response.headers.getall("X-Request-ID"))
    assert [("Content-Type", "text/plain")] == headers


def test_sized_body_keeps_content_length_under_wsgiref():
    """A list body stays sized, so wsgiref still sends Content-Length."""
    import http.client
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, ctxlog.WSGIMiddleware(hello), handler_class=Quiet)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.request("GET", "/")
    response = conn.getresponse()
    response.read()
    conn.close()
    thread.join(5)
    server.server_close()

    assert "5" == response.getheader("Content-Length")


def test_file_wrapper_is_handed_back_and_close_still_logs(capture, tmp_path):
    """A wsgi.file_wrapper body reaches the server as is (sendfile); close() still logs access."""
    from wsgiref.util import FileWrapper

    path = tmp_path / "f.txt"
    path.write_bytes(b"file body")
    opened = []

    def app(environ, start_response):
        start_response("200 OK", [])
        handle = path.open("rb")
        opened.append(handle)
        return environ["wsgi.file_wrapper"](handle)

    mw = ctxlog.WSGIMiddleware(app, access_log=True)
    body = mw({"REQUEST_METHOD": "GET", "PATH_INFO": "/f", "REMOTE_ADDR": "192.0.2.1", "wsgi.file_wrapper": FileWrapper}, lambda *a: None)
    assert isinstance(body, FileWrapper)
    assert b"file body" == b"".join(body)
    body.close()

    assert opened[0].closed
    assert ["/f"] == [r.path for r in capture.named("ctxlog.access")]


def test_response_is_sized_only_when_the_body_is():
    """len() works on a sized body; an unsized body gives a response without __len__ (waitress)."""

    def listed(environ, start_response):
        start_response("200 OK", [])
        return [b"a", b"b"]

    def generated(environ, start_response):
        start_response("200 OK", [])
        yield b"a"

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "192.0.2.1"}
    sized = ctxlog.WSGIMiddleware(listed)(dict(environ), lambda status, headers, exc=None: None)
    unsized = ctxlog.WSGIMiddleware(generated)(dict(environ), lambda s, h, exc=None: None)

    assert 2 == len(sized)
    assert not hasattr(unsized, "__len__")
    assert [b"a"] == list(unsized)
    sized.close()
    unsized.close()


def _environ(**extra):
    """A minimal environ for calling the middleware by hand."""
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "192.0.2.1", **extra}


@pytest.mark.parametrize("name", ["X-Request-ID", "x-request-id", "X-REQUEST-ID"])
def test_an_app_setting_its_own_request_id_keeps_it_alone(capture, name):
    """A request id header the app set, in any case, is sent as it is and once; records keep ours."""
    app_headers = [("Content-Type", "text/plain"), (name, "app-id")]

    def app(environ, start_response):
        log.info("in view")
        start_response("200 OK", app_headers)
        return [b"x"]

    sent: list[list[tuple[str, str]]] = []
    body = ctxlog.WSGIMiddleware(app)(
        _environ(HTTP_X_REQUEST_ID="client-id"),
        lambda status, headers, exc_info=None: sent.append(headers),
    )
    list(body)
    body.close()

    assert [[("Content-Type", "text/plain"), (name, "app-id")]] == sent
    assert "client-id" == capture.named("wsgi.app")[0].request_id


def test_the_app_runs_in_the_callers_context():
    """ContextVars the app sets stay set for the server, as without the middleware; ctxlog's do not."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("app_var", default="unset")

    def app(environ, start_response):
        var.set("set by the app")
        start_response("200 OK", [])
        return [b"x"]

    def serve(wsgi):
        body = wsgi(_environ(), lambda *a: None)
        list(body)
        getattr(body, "close", lambda: None)()
        return var.get(), ctxlog.get_context()

    bare = contextvars.Context().run(serve, app)
    wrapped = contextvars.Context().run(serve, ctxlog.WSGIMiddleware(app))

    assert ("set by the app", {}) == bare
    assert bare == wrapped


def test_a_token_made_by_the_server_between_call_and_body_is_reset_by_the_body():
    """A ContextVar entered outside the app call and left inside the body works (Flask's test client)."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("pushed", default="none")
    environ = _environ()

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            yield b"a"
            var.reset(environ["test.token"])  # made by the caller, in the caller's Context
            yield b"b"

        return body()

    def serve(wsgi):
        body = wsgi(environ, lambda *a: None)
        environ["test.token"] = var.set("pushed by the server")
        chunks = list(body)
        body.close()
        return chunks, var.get()

    assert ([b"a", b"b"], "none") == contextvars.Context().run(serve, app)
    assert ([b"a", b"b"], "none") == contextvars.Context().run(serve, ctxlog.WSGIMiddleware(app))


def test_a_scope_left_open_in_the_body_is_the_requests_not_the_threads(capture):
    """ctxlog.scope() open across yields: every step sees it, the caller never does."""

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            with ctxlog.scope(part="body"):
                log.info("first")
                yield b"a"
                log.info("second")
                yield b"b"

        return body()

    body = ctxlog.WSGIMiddleware(app)(_environ(HTTP_X_REQUEST_ID="rid-scope"), lambda *a: None)
    seen_between = []
    for _ in body:
        seen_between.append(ctxlog.get_context())
    body.close()

    assert [{}, {}] == seen_between
    assert [("body", "rid-scope"), ("body", "rid-scope")] == [
        (r.part, r.request_id) for r in capture.named("wsgi.app")
    ]
    assert {} == ctxlog.get_context()


def test_an_abandoned_body_leaves_nothing_in_the_thread(capture):
    """A body the server stops iterating and never closes leaves no request fields behind."""

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            with ctxlog.scope(part="body"):
                yield b"a"
                yield b"b"

        return body()

    body = ctxlog.WSGIMiddleware(app)(_environ(REMOTE_USER="alice"), lambda *a: None)
    next(iter(body))

    assert {} == ctxlog.get_context()
    logging.getLogger("after").info("x")
    assert ("-", "-") == (capture.named("after")[0].user, capture.named("after")[0].request_id)


def test_a_body_raising_mid_stream_leaves_the_thread_clean(capture):
    """An exception in a body step is raised to the server and leaves nothing in the thread."""

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            with ctxlog.scope(part="body"):
                yield b"a"
                raise RuntimeError("broken stream")

        return body()

    body = ctxlog.WSGIMiddleware(app)(_environ(REMOTE_USER="alice"), lambda *a: None)
    iterator = iter(body)
    next(iterator)
    with pytest.raises(RuntimeError, match="broken stream"):
        next(iterator)
    assert {} == ctxlog.get_context()
    body.close()

    assert {} == ctxlog.get_context()


def test_body_iterated_and_closed_in_other_threads_keeps_the_request(capture):
    """A server stepping the body in one thread and closing it in another: each logs the request."""

    class Body:
        def __init__(self):
            self.chunks = iter([b"a", b"b"])

        def __iter__(self):
            return self

        def __next__(self):
            chunk = next(self.chunks)
            log.info("chunk")
            return chunk

        def close(self):
            log.info("closing")

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body()

    body = ctxlog.WSGIMiddleware(app, access_log=True)(
        _environ(HTTP_X_REQUEST_ID="rid-threads"), lambda *a: None
    )
    left: list[dict] = []

    def step_then_report(action):
        action()
        left.append(ctxlog.get_context())

    for action in (lambda: list(body), body.close):
        thread = threading.Thread(target=step_then_report, args=(action,))
        thread.start()
        thread.join(5)

    assert [{}, {}] == left
    assert ["rid-threads"] * 4 == [
        r.request_id for r in capture.named("wsgi.app") + capture.named("ctxlog.access")
    ]
