"""
Exceptions that escape a request keep its context when the server logs them.

Servers log an app's unhandled exception after the middleware has left the request's Context
(uvicorn: "Exception in ASGI application", gunicorn: "Error handling request", waitress:
"Exception while serving"). These tests play the server: they call the middleware, catch what
escapes and log it outside the request, as the servers do.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

import ctxlog
from ctxlog.context import request_var

server_log = logging.getLogger("server.error")


class BoomError(Exception):
    pass


def _environ(**extra):
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/boom",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "192.0.2.10",
        "REMOTE_USER": "alice",
        "HTTP_X_REQUEST_ID": "req-boom",
        "wsgi.url_scheme": "http",
    }
    environ.update(extra)
    return environ


def _start_response(status, headers, exc_info=None):
    return lambda data: None


def _fields(record):
    return record.ip, record.user, record.request_id, record.path


EXPECTED = ("192.0.2.10", "alice", "req-boom", "/boom")


def _serve_wsgi(app):
    """Run one request the way a WSGI server does, logging what escapes outside the request."""
    try:
        body = app(_environ(), _start_response)
        try:
            for _ in body:
                pass
        finally:
            body.close()
    except BoomError:
        server_log.exception("Error handling request /boom")


def _escaped(**environ) -> BoomError:
    """Return the exception a WSGI view raised through the middleware (the request is over)."""

    def app(environ, start_response):
        raise BoomError("in the view")

    try:
        ctxlog.WSGIMiddleware(app)(_environ(**environ), _start_response)
    except BoomError as error:
        return error
    raise AssertionError("the view's exception did not escape")


@pytest.mark.parametrize("access_log", [False, True])
def test_wsgi_app_raising(capture, access_log):
    """An exception raised by the WSGI app is logged by the server with the request's fields."""

    def app(environ, start_response):
        raise BoomError("in the view")

    _serve_wsgi(ctxlog.WSGIMiddleware(app, access_log=access_log))

    (record,) = capture.named("server.error")
    assert record.exc_info is not None
    assert EXPECTED == _fields(record)
    assert None is request_var.get()


def test_wsgi_body_raising(capture):
    """An exception raised while the server iterates the body keeps the request's fields."""

    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"first"
        raise BoomError("in the body")

    _serve_wsgi(ctxlog.WSGIMiddleware(app))

    assert EXPECTED == _fields(capture.named("server.error")[0])


def test_wsgi_close_raising(capture):
    """An exception raised by the body's close() keeps the request's fields."""

    class Body:
        def __iter__(self):
            return iter([b"x"])

        def close(self):
            raise BoomError("in close")

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body()

    _serve_wsgi(ctxlog.WSGIMiddleware(app))

    assert EXPECTED == _fields(capture.named("server.error")[0])


async def _serve_asgi(app, request_id="req-boom"):
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/boom",
        "raw_path": b"/boom",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-request-id", request_id.encode())],
        "client": ("192.0.2.10", 5555),
        "server": ("127.0.0.1", 80),
        "user": _User(),
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    try:
        await app(scope, receive, send)
    except BoomError as error:
        server_log.error("Exception in ASGI application", exc_info=error)


class _User:
    is_authenticated = True
    display_name = "alice"


@pytest.mark.parametrize("access_log", [False, True])
def test_asgi_app_raising(capture, access_log):
    """An exception escaping an ASGI app is logged by the server with the request's fields."""

    async def app(scope, receive, send):
        raise BoomError("in the view")

    asyncio.run(_serve_asgi(ctxlog.ASGIMiddleware(app, access_log=access_log)))

    (record,) = capture.named("server.error")
    assert EXPECTED == _fields(record)


def test_the_exception_a_server_raises_from_it_is_followed(capture):
    """A server that wraps the app's exception (raise ... from) still finds the request."""

    def app(environ, start_response):
        raise BoomError("in the view")

    wrapped = ctxlog.WSGIMiddleware(app)
    try:
        try:
            wrapped(_environ(), _start_response)
        except BoomError as error:
            raise RuntimeError("request failed") from error
    except RuntimeError:
        server_log.exception("wrapped")

    assert EXPECTED == _fields(capture.named("server.error")[0])


def test_the_innermost_request_wins(capture):
    """An exception passing through two requests (an app calling another) names the inner one."""

    def inner(environ, start_response):
        raise BoomError("inner")

    inner_app = ctxlog.WSGIMiddleware(inner)

    def outer(environ, start_response):
        return inner_app(_environ(HTTP_X_REQUEST_ID="inner-id", REMOTE_USER="bob"), start_response)

    outer_app = ctxlog.WSGIMiddleware(outer)
    try:
        outer_app(_environ(HTTP_X_REQUEST_ID="outer-id"), _start_response)
    except BoomError:
        server_log.exception("Error handling request")

    record = capture.named("server.error")[0]
    assert ("bob", "inner-id") == (record.user, record.request_id)


def test_a_current_request_wins_over_the_exception(capture):
    """Inside another request, a record about an old exception carries the current request."""

    caught = _escaped()

    def reporting(environ, start_response):
        server_log.error("earlier failure", exc_info=caught)
        start_response("200 OK", [])
        return [b""]

    ctxlog.WSGIMiddleware(reporting)(
        _environ(HTTP_X_REQUEST_ID="second", REMOTE_USER="bob"), _start_response
    ).close()

    assert ("bob", "second") == (capture.records[0].user, capture.records[0].request_id)


def test_records_without_the_exception_get_nothing(capture):
    """Only the records that carry the exception get the fields; the next ones stay empty."""

    def app(environ, start_response):
        raise BoomError("in the view")

    _serve_wsgi(ctxlog.WSGIMiddleware(app))
    server_log.error("after the request")
    try:
        raise BoomError("unrelated")
    except BoomError:
        server_log.exception("an exception of no request")

    after, unrelated = capture.named("server.error")[1:]
    assert ("-", "-", "-") == (after.ip, after.user, after.request_id)
    assert ("-", "-", "-") == (unrelated.ip, unrelated.user, unrelated.request_id)


def test_get_logger_outside_the_request_uses_the_exception(capture):
    """A get_logger() record logged about the escaped exception carries the request too."""

    def app(environ, start_response):
        raise BoomError("in the view")

    log = ctxlog.get_logger("server.error")
    try:
        ctxlog.WSGIMiddleware(app)(_environ(), _start_response)
    except BoomError:
        log.exception("Error handling request")

    assert EXPECTED == _fields(capture.named("server.error")[0])


def test_hand_made_records_with_odd_exc_info_do_not_break_the_filter():
    """A record whose exc_info is not a (type, value, traceback) tuple is stamped with dashes."""
    flt = ctxlog.ContextFilter()
    for odd in (True, ("only-one",), (None, None, None), (BoomError, "not an exception", None)):
        record = logging.makeLogRecord({"msg": "x", "exc_info": odd})
        assert flt.filter(record)
        assert "-" == record.request_id


def test_one_exception_object_escaping_two_requests_names_each(capture):
    """A module-level exception raised by two requests in turn names each request, not the first."""
    shared = BoomError("always the same object")

    def app(environ, start_response):
        raise shared

    wrapped = ctxlog.WSGIMiddleware(app)
    for user, request_id in [("alice", "first"), ("bob", "second")]:
        try:
            wrapped(_environ(REMOTE_USER=user, HTTP_X_REQUEST_ID=request_id), _start_response)
        except BoomError:
            server_log.exception("Error handling request")

    assert [("alice", "first"), ("bob", "second")] == [
        (r.user, r.request_id) for r in capture.named("server.error")
    ]


def test_a_failure_awaited_by_concurrent_requests_names_each(capture):
    """Two ASGI requests awaiting one failing task: each server record names its own request."""

    async def main():
        failing = asyncio.get_running_loop().create_future()

        async def app(scope, receive, send):
            await failing

        wrapped = ctxlog.ASGIMiddleware(app)

        async def serve(request_id):
            await _serve_asgi(wrapped, request_id)

        tasks = [asyncio.create_task(serve(request_id)) for request_id in ("one", "two")]
        await asyncio.sleep(0)
        failing.set_exception(BoomError("shared"))
        await asyncio.gather(*tasks)

    asyncio.run(main())

    assert ["one", "two"] == sorted(r.request_id for r in capture.named("server.error"))


def test_an_exception_group_around_the_exception_is_searched(capture):
    """A server or task group that reports the app's exception inside a group still finds it."""

    caught = _escaped()
    try:  # raised outside the handler: the group has no __context__, only its member
        raise ExceptionGroup("unhandled errors in a TaskGroup", [caught])
    except ExceptionGroup:
        server_log.exception("Exception in ASGI application")

    assert EXPECTED == _fields(capture.named("server.error")[0])


def test_a_tagged_exception_can_be_pickled_and_copied():
    """pickle and deepcopy work on an exception that escaped a request; copies carry no request."""
    import copy
    import pickle

    caught = _escaped()

    for clone in (pickle.loads(pickle.dumps(caught)), copy.deepcopy(caught)):  # noqa: S301 - our own bytes
        assert ("in the view",) == clone.args
        record = logging.makeLogRecord({"exc_info": (BoomError, clone, None)})
        ctxlog.ContextFilter().filter(record)
        assert "-" == record.request_id
