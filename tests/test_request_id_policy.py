"""
The request id policy: request_id_generator, request_id_validator, trust_request_id,
echo_request_id and several request_id_header names, on ASGIMiddleware, WSGIMiddleware, Flask's
init_app and Django's CTXLOG setting.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import re
import wsgiref.util
from typing import Any

import pytest

import ctxlog

HEX = re.compile("[0-9a-f]{32}")
PROXY = "10.0.0.1"
CLIENT = "192.0.2.10"


# --- one request through each middleware, with what it saw and what it echoed ------------------


async def _asgi_request(app: Any, headers: list[tuple[bytes, bytes]], peer: str) -> tuple[str, dict[bytes, bytes]]:
    seen: dict[str, str] = {}

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen["id"] = ctxlog.get_context()["request_id"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
        "headers": headers, "client": (peer, 5555), "server": ("127.0.0.1", 80),
    }
    app.app = inner
    await app(scope, receive, send)
    return seen["id"], dict(sent[0]["headers"])


def asgi(headers: dict[str, str] | list[tuple[str, str]], peer: str = CLIENT, **options: Any) -> tuple[str, dict[str, str]]:
    """Return (the id the app saw, the response headers) for one ASGI request."""
    app = ctxlog.ASGIMiddleware(lambda *a: None, **options)
    items = headers.items() if isinstance(headers, dict) else headers
    raw = [(k.lower().encode(), v.encode("latin-1")) for k, v in items]
    seen, echoed = asyncio.run(_asgi_request(app, raw, peer))
    return seen, {k.decode(): v.decode("latin-1") for k, v in echoed.items()}


def wsgi(headers: dict[str, str], peer: str = CLIENT, **options: Any) -> tuple[str, dict[str, str]]:
    """Return (the id the app saw, the response headers) for one WSGI request."""
    seen: dict[str, str] = {}

    def inner(environ: Any, start_response: Any) -> list[bytes]:
        seen["id"] = ctxlog.get_context()["request_id"]
        start_response("200 OK", [])
        return [b""]

    app = ctxlog.WSGIMiddleware(inner, **options)
    environ: dict[str, Any] = {"REMOTE_ADDR": peer, "wsgi.input": io.BytesIO()}
    wsgiref.util.setup_testing_defaults(environ)
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    response: dict[str, str] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        response.update((k.lower(), v) for k, v in response_headers)
        return lambda data: None

    body = app(environ, start_response)
    list(body)
    getattr(body, "close", lambda: None)()
    return seen["id"], response


SERVE = [asgi, wsgi]


# --- trust_request_id ---------------------------------------------------------------------------


@pytest.mark.parametrize("serve", SERVE)
def test_trust_any_takes_a_valid_incoming_id_as_before(serve: Any) -> None:
    seen, echoed = serve({"X-Request-ID": "abc-123"})
    assert seen == echoed["x-request-id"] == "abc-123"


@pytest.mark.parametrize("serve", SERVE)
def test_trust_proxies_takes_the_id_only_from_a_trusted_proxy(serve: Any) -> None:
    options = {"trusted_proxies": ["10.0.0.0/8"], "trust_request_id": "proxies"}
    from_proxy, _ = serve({"X-Request-ID": "lb-1"}, peer=PROXY, **options)
    from_client, echoed = serve({"X-Request-ID": "forged-1"}, peer=CLIENT, **options)
    assert from_proxy == "lb-1"
    assert HEX.fullmatch(from_client) and echoed["x-request-id"] == from_client


@pytest.mark.parametrize("serve", SERVE)
def test_trust_never_always_makes_a_new_id(serve: Any) -> None:
    seen, _ = serve({"X-Request-ID": "abc"}, peer=PROXY, trusted_proxies="*", trust_request_id="never")
    assert HEX.fullmatch(seen)


@pytest.mark.parametrize("middleware", [ctxlog.ASGIMiddleware, ctxlog.WSGIMiddleware])
def test_bad_policy_options_fail_at_construction_naming_the_value(middleware: Any) -> None:
    app = lambda *a: None  # noqa: E731
    with pytest.raises(ValueError, match=r"trust_request_id='proxies'.*trusted_proxies is empty"):
        middleware(app, trust_request_id="proxies")
    with pytest.raises(ValueError, match="trust_request_id: 'sometimes' is not one of"):
        middleware(app, trust_request_id="sometimes")
    with pytest.raises(TypeError, match=r"request_id_generator: 'uuid4' is not callable"):
        middleware(app, request_id_generator="uuid4")
    with pytest.raises(TypeError, match="request_id_validator: 3 is not callable"):
        middleware(app, request_id_validator=3)
    with pytest.raises(TypeError, match="echo_request_id: 'no' is not True or False"):
        middleware(app, echo_request_id="no")
    with pytest.raises(ValueError, match="request_id_header: \\['X-Request-ID', 'x-request-id'\\] names a header twice"):
        middleware(app, request_id_header=["X-Request-ID", "x-request-id"])
    with pytest.raises(ValueError, match="request_id_header: \\[\\] is not a header name"):
        middleware(app, request_id_header=[])
    with pytest.raises(ValueError, match="'bad name' is not a valid HTTP header name"):
        middleware(app, request_id_header=["X-Request-ID", "bad name"])


# --- generator and validator --------------------------------------------------------------------


@pytest.mark.parametrize("serve", SERVE)
def test_generator_makes_the_new_ids(serve: Any) -> None:
    counter = itertools.count(1)
    seen, echoed = serve({}, request_id_generator=lambda: f"req-{next(counter)}")
    assert seen == echoed["x-request-id"] == "req-1"


@pytest.mark.parametrize("serve", SERVE)
def test_a_hostile_generated_id_is_escaped_in_the_line_and_the_header(serve: Any) -> None:
    seen, echoed = serve({}, request_id_generator=lambda: "r1\r\nSet-Cookie: x=1 é")
    assert seen == echoed["x-request-id"] == "r1\\r\\nSet-Cookie:\\x20x=1\\x20\\xe9"


@pytest.mark.parametrize("serve", SERVE)
def test_a_failing_generator_gives_ctxlogs_own_id(serve: Any, capfd: pytest.CaptureFixture[str]) -> None:
    def broken() -> str:
        raise RuntimeError("no ids today")

    seen, _ = serve({}, request_id_generator=broken)
    assert HEX.fullmatch(seen)
    assert "request_id_generator raised RuntimeError('no ids today')" in capfd.readouterr().err


@pytest.mark.parametrize("serve", SERVE)
def test_validator_replaces_the_default_rule(serve: Any) -> None:
    uuid_only = re.compile("[0-9a-f-]{36}").fullmatch
    uuid = "0b5c2d91-e8aa-47f0-9d3c-6e1b2a8f7d45"
    taken, _ = serve({"X-Request-ID": uuid}, request_id_validator=uuid_only)
    refused, _ = serve({"X-Request-ID": "abc-123"}, request_id_validator=uuid_only)
    assert taken == uuid
    assert HEX.fullmatch(refused)


@pytest.mark.parametrize("serve", SERVE)
def test_an_id_a_permissive_validator_takes_is_still_escaped(serve: Any) -> None:
    seen, echoed = serve({"X-Request-ID": 'a"b\\c\x1b[2J'}, request_id_validator=lambda value: True)
    assert seen == echoed["x-request-id"] == 'a\\"b\\\\c\\x1b[2J'


# --- several header names, and no echo ----------------------------------------------------------


@pytest.mark.parametrize("serve", SERVE)
def test_header_names_are_tried_in_order_and_the_first_is_echoed(serve: Any) -> None:
    names = ["X-Request-ID", "X-Correlation-ID"]
    second, echoed = serve({"X-Correlation-ID": "corr-1"}, request_id_header=names)
    first, _ = serve({"X-Correlation-ID": "corr-2", "X-Request-ID": "req-2"}, request_id_header=names)
    assert second == "corr-1" and echoed["x-request-id"] == "corr-1"
    assert "x-correlation-id" not in echoed
    assert first == "req-2"


def test_asgi_an_id_header_sent_twice_is_not_the_clients_to_choose() -> None:
    names = ["X-Request-ID", "X-Correlation-ID"]
    seen, _ = asgi([("X-Correlation-ID", "a"), ("X-Correlation-ID", "b")], request_id_header=names)
    assert HEX.fullmatch(seen)


@pytest.mark.parametrize("serve", SERVE)
def test_echo_off_leaves_the_response_alone(serve: Any) -> None:
    seen, echoed = serve({"X-Request-ID": "abc"}, echo_request_id=False)
    assert seen == "abc"
    assert "x-request-id" not in echoed


# --- framework glue -----------------------------------------------------------------------------


def test_flask_init_app_takes_the_policy() -> None:
    import flask  # in the test extra: a missing Flask fails the test, never skips it

    import ctxlog.flask

    app = flask.Flask("policy")

    @app.get("/")
    def view() -> str:
        return ctxlog.get_context()["request_id"]

    ctxlog.flask.init_app(
        app, request_id_header=["X-Correlation-ID"], echo_request_id=False, trust_request_id="never"
    )
    response = app.test_client().get("/", headers={"X-Correlation-ID": "corr-1"})
    assert HEX.fullmatch(response.get_data(as_text=True))
    assert "X-Correlation-ID" not in response.headers
    with pytest.raises(ValueError, match="trust_request_id='proxies'"):
        ctxlog.flask.init_app(flask.Flask("other"), trust_request_id="proxies")


def test_django_setting_takes_the_policy_with_dotted_paths() -> None:
    from django.conf import settings as django_settings
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    if not django_settings.configured:
        django_settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=[])
    from django.http import HttpResponse
    from django.test import RequestFactory

    import ctxlog.django

    def view(request: Any) -> HttpResponse:
        return HttpResponse(ctxlog.get_context()["request_id"])

    policy = {
        "REQUEST_ID_HEADER": ["X-Request-ID", "X-Correlation-ID"],
        "REQUEST_ID_GENERATOR": "tests.test_request_id_policy.make_id",
        "TRUST_REQUEST_ID": "never",
    }
    with override_settings(CTXLOG=policy):
        response = ctxlog.django.ContextMiddleware(view)(
            RequestFactory().get("/", HTTP_X_CORRELATION_ID="corr-1")
        )
    assert response.content == b"made-here"
    assert response["X-Request-ID"] == "made-here"
    missing = r"REQUEST_ID_VALIDATOR 'tests\.nowhere\.check' cannot be imported"
    with (
        override_settings(CTXLOG={"REQUEST_ID_VALIDATOR": "tests.nowhere.check"}),
        pytest.raises(ImproperlyConfigured, match=missing),
    ):
        ctxlog.django.ContextMiddleware(view)
    with (
        override_settings(CTXLOG={"TRUST_REQUEST_ID": "proxies"}),
        pytest.raises(ImproperlyConfigured, match=r"trust_request_id='proxies'"),
    ):
        ctxlog.django.ContextMiddleware(view)


def make_id() -> str:
    """The generator test_django_setting_takes_the_policy_with_dotted_paths names."""
    return "made-here"
