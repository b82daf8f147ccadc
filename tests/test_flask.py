"""ctxlog.flask.init_app: a real Flask app, driven by its test client, WebTest and a real server."""

from __future__ import annotations

import http.client
import logging
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import webtest
from flask import Flask, Response, g, request
from werkzeug.local import LocalProxy
from werkzeug.serving import make_server

import ctxlog
import ctxlog.flask

log = ctxlog.get_logger("flask.app")
HOOKS = ["before_request", "in view", "after_request", "teardown_request"]


class User:
    """A user object in the style of Flask-Login's UserMixin."""

    def __init__(self, user_id: int, username: str | None = None) -> None:
        self.id = user_id
        if username is not None:
            self.username = username

    is_authenticated = True

    def get_id(self) -> str:
        return str(self.id)


class Anonymous:
    """Flask-Login's AnonymousUserMixin, in short."""

    is_authenticated = False

    def get_id(self) -> None:
        return None


def header_auth() -> None:
    """The app's authentication: the X-Test-User header names the user (g.user)."""
    g.user = request.headers.get("X-Test-User") or None


def make_app(*, auth: Callable[[], None] | None = header_auth, **options) -> Flask:
    """An app authenticating with ``auth`` in its first before_request, logging in every hook."""
    app = Flask("ctxlog_test_flask")
    ctxlog.flask.init_app(app, access_log=True, **options)
    if auth is not None:
        app.before_request(auth)

    @app.before_request
    def after_authentication():
        log.info("before_request")

    @app.get("/")
    def view():
        log.info("in view")
        return "ok"

    @app.after_request
    def after(response):
        log.info("after_request")
        return response

    @app.teardown_request
    def teardown(error):
        log.info("teardown_request")

    return app


def fields(record: logging.LogRecord) -> tuple[str, str, str]:
    return (record.ip, record.user, record.request_id)


def of_request(capture, request_id: str) -> list[logging.LogRecord]:
    return [r for r in capture.records if getattr(r, "request_id", None) == request_id]


# --- The user, in every place a Flask app logs ------------------------------------------------


def test_user_from_g_in_every_hook_and_the_access_log(capture):
    """g.user set by an auth hook names the records of later hooks, the view, teardown and access."""
    client = make_app().test_client()
    with client.get(
        "/",
        headers={"X-Test-User": "alice", "X-Request-ID": "f-1"},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    ) as response:
        assert 200 == response.status_code
        assert "f-1" == response.headers["X-Request-ID"]

    records = of_request(capture, "f-1")
    assert [*HOOKS, "ctxlog.access"] == [
        r.name if r.name == "ctxlog.access" else r.getMessage() for r in records
    ]
    assert records[-1].getMessage().startswith('192.0.2.7 - alice "GET / HTTP/1.1" 200 2 ')
    assert {("192.0.2.7", "alice", "f-1")} == {fields(r) for r in records}


def test_each_request_has_its_own_user(capture):
    """Consecutive requests on one client: each names its own user; an anonymous one logs '-'."""
    client = make_app().test_client()
    for name, request_id in [("alice", "r-a"), (None, "r-anon"), ("bob", "r-b")]:
        headers = {"X-Request-ID": request_id, **({"X-Test-User": name} if name else {})}
        with client.get("/", headers=headers):
            pass

    for name, request_id in [("alice", "r-a"), ("-", "r-anon"), ("bob", "r-b")]:
        records = of_request(capture, request_id)
        assert 5 == len(records)
        assert {name} == {r.user for r in records}


def test_access_log_names_the_user_when_nothing_else_logged(capture):
    """With no record made inside Flask, the user is still settled for the access line."""
    app = Flask("quiet")
    ctxlog.flask.init_app(app, access_log=True)

    @app.before_request
    def authenticate():
        g.user = "carol"

    app.get("/")(lambda: "quiet")

    with app.test_client().get("/", headers={"X-Request-ID": "q-1"}):
        pass

    (access,) = capture.named("ctxlog.access")
    assert ("carol", "q-1") == (access.user, access.request_id)


def test_user_settled_at_teardown_when_an_after_request_function_fails(capture):
    """A raising after_request skips ctxlog's; the teardown still settles the user for access."""
    app = Flask("failing_after_request")
    ctxlog.flask.init_app(app, access_log=True)
    app.logger.disabled = True  # no record of the error names the user on the way
    app.before_request(header_auth)
    app.get("/")(lambda: "ok")

    @app.after_request
    def broken(response):
        msg = "after_request failed"
        raise RuntimeError(msg)

    with app.test_client().get("/", headers={"X-Test-User": "mallory"}) as response:
        assert 500 == response.status_code

    (access,) = capture.named("ctxlog.access")
    assert (500, "mallory") == (access.status, access.user)


def test_streamed_body_names_the_user(capture):
    """A body streamed after Flask's request context is gone still logs with the user."""
    app = make_app()

    @app.get("/stream")
    def stream():
        def lines():
            for number in range(2):
                log.info("chunk %d", number)
                yield f"{number}\n"

        return Response(lines(), mimetype="text/plain")

    with app.test_client().get(
        "/stream", headers={"X-Test-User": "dave", "X-Request-ID": "s-1"}
    ) as response:
        assert "0\n1\n" == response.get_data(as_text=True)

    chunks = [r for r in of_request(capture, "s-1") if r.getMessage().startswith("chunk")]
    assert [("dave", "s-1")] * 2 == [(r.user, r.request_id) for r in chunks]
    assert "dave" == capture.named("ctxlog.access")[0].user


def test_unhandled_error_logs_with_the_user(capture):
    """Flask's own 'Exception on ...' record and the 500 access line carry the user."""
    app = make_app()

    @app.get("/boom")
    def boom():
        msg = "broken"
        raise RuntimeError(msg)

    with app.test_client().get(
        "/boom", headers={"X-Test-User": "erin", "X-Request-ID": "e-1"}
    ) as response:
        assert 500 == response.status_code
        assert "e-1" == response.headers["X-Request-ID"]

    records = of_request(capture, "e-1")
    (error,) = [r for r in records if r.levelno == logging.ERROR]
    assert error.getMessage().startswith("Exception on /boom [GET]")
    assert 500 == capture.named("ctxlog.access")[0].status
    assert {"erin"} == {r.user for r in records}


def test_user_logged_in_by_the_view(capture):
    """Records before a login in the view say '-', records after it name the user."""
    app = make_app(auth=None)

    @app.post("/login")
    def login():
        log.info("logging in")
        g.user = "frank"
        log.info("logged in")
        return "welcome"

    with app.test_client().post("/login", headers={"X-Request-ID": "l-1"}):
        pass

    assert [
        ("before_request", "-"),
        ("logging in", "-"),
        ("logged in", "frank"),
        ("after_request", "frank"),
        ("teardown_request", "frank"),
    ] == [(r.getMessage(), r.user) for r in of_request(capture, "l-1") if r.name == "flask.app"]
    assert "frank" == capture.named("ctxlog.access")[0].user


def test_bound_user_wins(capture):
    """ctxlog.bind(user=...) in a view beats g.user, for the rest of the request."""
    app = make_app()

    @app.get("/bound")
    def bound():
        ctxlog.bind(user="explicit")
        log.info("bound")
        return "ok"

    with app.test_client().get("/bound", headers={"X-Test-User": "alice", "X-Request-ID": "b-1"}):
        pass

    records = of_request(capture, "b-1")
    assert ["alice", "explicit", "explicit", "explicit", "explicit"] == [r.user for r in records]


# --- Which user, from what ----------------------------------------------------------------------


def _row(username: str) -> sqlite3.Row:
    connection = sqlite3.connect(":memory:")
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute("SELECT 7 AS id, ? AS username", (username,)).fetchone()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice", "alice"),
        ("", "-"),
        (None, "-"),
        (User(42), "42"),
        (User(42, "grace"), "grace"),
        (Anonymous(), "-"),
        (_row("heidi"), "heidi"),
        (1234, "1234"),
        ("evil\nline", "evil\\nline"),
    ],
)
def test_what_g_user_may_hold(capture, value, expected):
    """g.user may be a name, a Flask-Login style user, a sqlite3.Row (the Flask tutorial) ..."""

    def authenticate():
        g.user = value

    app = make_app(auth=authenticate)
    with app.test_client().get("/", headers={"X-Request-ID": "u-1"}):
        pass

    assert {expected} == {r.user for r in of_request(capture, "u-1")}


def test_custom_user_callable_replaces_the_default(capture):
    """user= is called in the request context; g.user is then ignored, and so is REMOTE_USER."""

    def api_key():
        header_auth()
        if request.headers.get("X-Api-Key") == "k-1":
            g.account = User(1, "service-1")

    client = make_app(auth=api_key, user=lambda: g.get("account")).test_client()
    with client.get(
        "/",
        headers={"X-Api-Key": "k-1", "X-Test-User": "alice", "X-Request-ID": "c-1"},
        environ_base={"REMOTE_USER": "server-user"},
    ):
        pass
    with client.get(
        "/",
        headers={"X-Test-User": "alice", "X-Request-ID": "c-2"},
        environ_base={"REMOTE_USER": "server-user"},
    ):
        pass

    assert {"service-1"} == {r.user for r in of_request(capture, "c-1")}
    assert {"-"} == {r.user for r in of_request(capture, "c-2")}


def test_remote_user_by_default(capture):
    """Without g.user, the default lookup falls back to REMOTE_USER, as WSGIMiddleware does."""
    client = make_app().test_client()
    with client.get(
        "/", headers={"X-Request-ID": "ru-1"}, environ_base={"REMOTE_USER": "server-user"}
    ):
        pass

    assert {"server-user"} == {r.user for r in of_request(capture, "ru-1")}


class FakeLoginManager:
    """Flask-Login's loading, in short: current_user loads once per request into g._login_user."""

    def __init__(self) -> None:
        self.loads = 0

    def current(self):
        if "_login_user" not in g:
            self.loads += 1
            name = request.cookies.get("session_user")
            g._login_user = User(len(name), name) if name else Anonymous()
        return g._login_user


def test_flask_login_user_is_used_only_once_loaded(capture):
    """By default a Flask-Login user is named if the app loaded it; ctxlog never loads one."""
    manager = FakeLoginManager()
    current_user = LocalProxy(manager.current)
    app = make_app(auth=None)

    @app.get("/account")
    def account():
        log.info("account of %s", current_user.username)
        return "ok"

    client = app.test_client()
    client.set_cookie("session_user", "ivan")
    with client.get("/account", headers={"X-Request-ID": "fl-1"}):
        pass
    with client.get("/", headers={"X-Request-ID": "fl-2"}):  # the view never asks
        pass

    assert 1 == manager.loads
    assert ["-", "ivan", "ivan", "ivan", "ivan"] == [r.user for r in of_request(capture, "fl-1")]
    assert {"-"} == {r.user for r in of_request(capture, "fl-2")}


def test_current_user_callable_names_every_request(capture):
    """user=lambda: current_user loads the user even for views that never asked, once each."""
    manager = FakeLoginManager()
    current_user = LocalProxy(manager.current)
    client = make_app(auth=None, user=lambda: current_user).test_client()
    client.set_cookie("session_user", "judy")
    with client.get("/", headers={"X-Request-ID": "cu-1"}):
        pass
    client.delete_cookie("session_user")
    with client.get("/", headers={"X-Request-ID": "cu-2"}):
        pass

    assert 2 == manager.loads
    assert {"judy"} == {r.user for r in of_request(capture, "cu-1")}
    assert {"-"} == {r.user for r in of_request(capture, "cu-2")}


def test_failing_user_callable_logs_dash_and_is_reported_once(capture):
    """A user= callable that raises never breaks a request; it is reported once, with traceback."""

    def broken():
        return g.missing_attribute

    client = make_app(user=broken).test_client()
    for number in (1, 2):
        with client.get("/", headers={"X-Request-ID": f"x-{number}"}) as response:
            assert 200 == response.status_code

    reports = capture.named("ctxlog")
    assert 1 == len(reports)
    assert reports[0].exc_info is not None
    assert "x-1" == reports[0].request_id
    for number in (1, 2):
        assert {"-"} == {r.user for r in of_request(capture, f"x-{number}")}


# --- Client address and request id, through WebTest ------------------------------------------


def test_trusted_proxy_header_is_honoured_and_untrusted_ignored(capture):
    """X-Forwarded-For counts only when the peer is a trusted proxy."""
    app = webtest.TestApp(make_app(trusted_proxies=["10.0.0.0/8"]))
    forwarded = {"X-Forwarded-For": "203.0.113.5, 10.0.0.9", "X-Test-User": "kim"}
    app.get(
        "/",
        headers={**forwarded, "X-Request-ID": "p-1"},
        extra_environ={"REMOTE_ADDR": "10.0.0.1"},
    )
    app.get(
        "/",
        headers={**forwarded, "X-Request-ID": "p-2"},
        extra_environ={"REMOTE_ADDR": "192.0.2.99"},
    )

    assert {("203.0.113.5", "kim", "p-1")} == {fields(r) for r in of_request(capture, "p-1")}
    assert {("192.0.2.99", "kim", "p-2")} == {fields(r) for r in of_request(capture, "p-2")}


def test_forwarded_header_and_custom_request_id_header(capture):
    """proxy_header and request_id_header reach the middleware."""
    app = webtest.TestApp(
        make_app(
            trusted_proxies="*", proxy_header="Forwarded", request_id_header="X-Correlation-ID"
        )
    )
    response = app.get(
        "/",
        headers={"Forwarded": "for=198.51.100.3", "X-Correlation-ID": "corr-9"},
        extra_environ={"REMOTE_ADDR": "10.1.1.1"},
    )

    assert "corr-9" == response.headers["X-Correlation-ID"]
    assert {("198.51.100.3", "-", "corr-9")} == {fields(r) for r in of_request(capture, "corr-9")}


def test_query_string_only_with_log_query(capture):
    """log_query reaches the middleware: query strings stay out of the access line by default."""
    webtest.TestApp(make_app()).get("/?token=secret")
    webtest.TestApp(make_app(log_query=True)).get("/?page=2")

    first, second = capture.named("ctxlog.access")
    assert '"GET / HTTP/1.0"' in first.getMessage()
    assert '"GET /?page=2 HTTP/1.0"' in second.getMessage()


# --- Installing it --------------------------------------------------------------------------------


def test_init_app_wraps_wsgi_app_and_registers_itself():
    """The middleware goes into app.wsgi_app and app.extensions; the Flask object is unchanged."""
    app = Flask("plain")
    original = app.wsgi_app
    middleware = ctxlog.flask.init_app(app)

    assert isinstance(middleware, ctxlog.WSGIMiddleware)
    assert middleware is app.wsgi_app is app.extensions["ctxlog"]
    assert original == middleware.app


def test_app_factory_gives_each_app_its_own_middleware(capture):
    """Called in a factory, every app gets its own middleware and settings."""

    def create_app(proxies):
        app = Flask("factory")
        ctxlog.flask.init_app(app, trusted_proxies=proxies)
        app.get("/")(lambda: (log.info("hi"), "ok")[1])
        return app

    first, second = create_app(["10.0.0.0/8"]), create_app(())
    for app in (first, second):
        with app.test_client().get(
            "/",
            headers={"X-Forwarded-For": "203.0.113.1"},
            environ_base={"REMOTE_ADDR": "10.2.2.2"},
        ):
            pass

    assert first.extensions["ctxlog"] is not second.extensions["ctxlog"]
    assert ["203.0.113.1", "10.2.2.2"] == [r.ip for r in capture.named("flask.app")]


def test_init_app_twice_is_refused_and_changes_nothing(capture):
    """A second init_app raises; the app keeps one middleware and one pair of hooks."""
    app = make_app()
    installed = app.wsgi_app
    hooks = (list(app.after_request_funcs[None]), list(app.teardown_request_funcs[None]))

    with pytest.raises(RuntimeError, match="already called"):
        ctxlog.flask.init_app(app, access_log=True)

    assert installed is app.wsgi_app
    assert hooks == (app.after_request_funcs[None], app.teardown_request_funcs[None])
    with app.test_client().get("/", headers={"X-Test-User": "lee"}) as response:
        assert 1 == len(response.headers.getlist("X-Request-ID"))
    assert 1 == len(capture.named("ctxlog.access"))


def test_hand_wrapped_app_is_refused():
    """An app.wsgi_app that is already a WSGIMiddleware is not wrapped a second time."""
    app = Flask("wrapped")
    app.wsgi_app = ctxlog.WSGIMiddleware(app.wsgi_app)

    with pytest.raises(RuntimeError, match=r"already a ctxlog\.WSGIMiddleware"):
        ctxlog.flask.init_app(app)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"trusted_proxies": ["not-an-ip"]}, ValueError, "not-an-ip"),
        ({"trusted_proxies": ["10.1.2.3/8"]}, ValueError, "10.1.2.3/8"),
        ({"proxy_header": "X-Real-IP"}, ValueError, "X-Real-IP"),
        ({"request_id_header": "X Request"}, ValueError, "not a valid HTTP header name"),
        ({"user": "g.user"}, TypeError, "'g.user' is not callable"),
    ],
)
def test_misconfiguration_fails_in_init_app_and_changes_nothing(options, error, match):
    """A bad option raises in init_app, naming the value, and leaves the app as it was."""
    app = Flask("misconfigured")
    original = app.wsgi_app

    with pytest.raises(error, match=match):
        ctxlog.flask.init_app(app, **options)

    assert original == app.wsgi_app
    assert "ctxlog" not in app.extensions
    assert (None not in app.after_request_funcs) and (None not in app.teardown_request_funcs)
    ctxlog.flask.init_app(app)  # a corrected call still works


def test_not_a_flask_app_is_refused():
    """init_app wants the Flask object, not its WSGI callable."""
    app = Flask("object")

    with pytest.raises(TypeError, match="is not a Flask application"):
        ctxlog.flask.init_app(app.wsgi_app)  # type: ignore[arg-type]


def test_flask_is_imported_only_by_init_app():
    """import ctxlog / ctxlog.flask never imports Flask; init_app without Flask names the extra."""
    code = """
import sys
import ctxlog, ctxlog.flask
assert "flask" not in sys.modules, "imported flask"
sys.modules["flask"] = None  # as if Flask were not installed
try:
    ctxlog.flask.init_app(object())
except ImportError as error:
    print(error)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert "ctxlog.flask needs Flask: pip install 'ctxlog[flask]'\n" == result.stdout


# --- A real threaded server --------------------------------------------------------------------


def test_concurrent_requests_on_a_threaded_server_never_mix_users(capture):
    """200 concurrent requests with distinct users through werkzeug's threaded server: no mix-up."""
    app = make_app(trusted_proxies="127.0.0.1")

    @app.get("/work")
    def work():
        time.sleep(random.uniform(0, 0.005))
        log.info("working for %s", g.user)
        return request.headers["X-Test-User"]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    werkzeug_logger = logging.getLogger("werkzeug")
    level = werkzeug_logger.level
    werkzeug_logger.setLevel(logging.WARNING)  # its request lines are made outside any request

    def call(number: int) -> tuple[str, str]:
        user = f"user{number}"
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
        try:
            connection.request(
                "GET",
                "/work",
                headers={"X-Test-User": user, "X-Forwarded-For": f"198.51.100.{number % 250}"},
            )
            response = connection.getresponse()
            assert (200, user) == (response.status, response.read().decode())
            return response.getheader("X-Request-ID", ""), user
        finally:
            connection.close()

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            sent = dict(pool.map(call, range(200)))
    finally:
        server.shutdown()
        server.server_close()
        serving.join(10)
        werkzeug_logger.setLevel(level)

    # The access line is written when the server closes the response, just after it was sent.
    deadline = time.monotonic() + 10
    while len(capture.named("ctxlog.access")) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    expected = {
        request_id: (f"198.51.100.{int(user[4:]) % 250}", user) for request_id, user in sent.items()
    }
    records = [r for r in capture.records if r.name in {"flask.app", "ctxlog.access"}]
    assert 200 * 5 == len(records)
    mismatches = [r for r in records if (r.ip, r.user) != expected.get(r.request_id)]
    assert [] == mismatches


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize("mode", [True, "request_id"])
def test_trace_context_option(capture, mode):
    """init_app(trace_context=...) reads traceparent; "request_id" makes it the request id."""
    client = make_app(trace_context=mode).test_client()
    with client.get(
        "/", headers={"X-Test-User": "alice", "X-Request-ID": "f-t", "traceparent": TRACEPARENT}
    ) as response:
        echoed = response.headers["X-Request-ID"]

    record = next(r for r in capture.records if r.getMessage() == "in view")
    assert ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7") == (
        record.trace_id,
        record.span_id,
    )
    expected = "4bf92f3577b34da6a3ce929d0e0e4736" if mode == "request_id" else "f-t"
    assert (expected, expected) == (record.request_id, echoed)


def test_bad_trace_context_is_refused():
    """A trace_context that is not True, False or "request_id" fails in init_app."""
    with pytest.raises(ValueError, match="trace_context"):
        ctxlog.flask.init_app(Flask("bad_trace"), trace_context="yes")  # type: ignore[arg-type]


def _wrapped(how: str) -> Flask:
    """A Flask app with ctxlog's middleware, as the docs show it or through init_app."""
    app = Flask("ctxlog_test_flask_stream")
    if how == "wsgi_app":
        app.wsgi_app = ctxlog.WSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    else:
        ctxlog.flask.init_app(app)
    return app


@pytest.mark.parametrize("how", ["wsgi_app", "init_app"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_stream_with_context_under_a_preserving_test_client(capture, how, kind):
    """stream_with_context inside `with app.test_client()` works, and the request context is popped."""
    from flask import has_request_context, stream_with_context

    app = _wrapped(how)

    def generate():
        log.info("streaming for %s", request.args["name"])
        yield "Hello "
        yield request.args["name"]
        yield "!"

    def sync_view():
        return Response(stream_with_context(generate()))

    async def async_view():
        return Response(stream_with_context(generate()))

    app.add_url_rule("/", "index", sync_view if kind == "sync" else async_view)

    with app.test_client() as client:
        response = client.get("/?name=World", headers={"X-Request-ID": "rid-stream"})
        assert b"Hello World!" == response.data
        assert ["rid-stream"] == response.headers.getlist("X-Request-ID")

    assert not has_request_context()
    assert ["rid-stream"] == [r.request_id for r in capture.named("flask.app")]
    assert {} == ctxlog.get_context()


def test_preserved_request_context_is_usable_after_the_request(capture):
    """`with app.test_client()` keeps Flask's request context for the test, as without ctxlog."""
    from flask import has_request_context

    app = _wrapped("wsgi_app")
    app.add_url_rule("/", "index", lambda: "hi")

    with app.test_client() as client:
        client.get("/?q=1")
        assert "1" == request.args["q"]

    assert not has_request_context()


def test_a_view_setting_its_own_request_id_gets_one_header(capture):
    """A Flask response that sets X-Request-ID keeps its value, alone; records keep the request's."""
    app = _wrapped("init_app")

    @app.route("/")
    def index():
        log.info("in view")
        return "hi", 200, {"x-request-id": "view-id"}

    response = app.test_client().get("/", headers={"X-Request-ID": "client-id"})

    assert ["view-id"] == response.headers.getlist("X-Request-ID")
    assert "client-id" == capture.named("flask.app")[0].request_id
