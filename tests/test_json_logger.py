"""python-json-logger's JsonFormatter writes ctxlog's fields, from ContextFilter or get_logger."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import ctxlog
import ctxlog.testing

if os.environ.get("CI") != "true":
    pytest.importorskip("pythonjsonlogger")

from pythonjsonlogger.json import JsonFormatter

NAME = "test.json_logger"
REQUEST = {
    "ip": "203.0.113.7",
    "user": "alice",
    "request_id": "r-1",
    "method": "GET",
    "path": "/pay",
}


def _handler(with_filter: bool) -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("{levelname}{name}{message}", style="{"))
    if with_filter:
        handler.addFilter(ctxlog.ContextFilter())
    logger = logging.getLogger(NAME)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


@pytest.fixture
def filtered() -> Iterator[io.StringIO]:
    """A handler with JsonFormatter and ctxlog.ContextFilter."""
    yield from _handler(with_filter=True)


@pytest.fixture
def bare() -> Iterator[io.StringIO]:
    """A handler with JsonFormatter and no ctxlog filter."""
    yield from _handler(with_filter=False)


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_context_filter_fields_and_bound_fields_are_keys(filtered):
    """The request's fields, bound fields and extras are keys of the JSON object."""
    with ctxlog.testing.request(**REQUEST):
        ctxlog.bind(order=42)
        logging.getLogger(NAME).info("paid", extra={"amount": 10})
    assert [
        {
            "levelname": "INFO",
            "name": NAME,
            "message": "paid",
            "amount": 10,
            **REQUEST,
            "order": 42,
        }
    ] == _lines(filtered)


def test_get_logger_without_a_filter(bare):
    """get_logger()'s records carry the fields to a JsonFormatter whose handler has no filter."""
    with ctxlog.testing.request(**REQUEST):
        ctxlog.get_logger(NAME).info("paid")
    ctxlog.get_logger(NAME).info("outside")
    inside, outside = _lines(bare)
    assert REQUEST == {name: inside[name] for name in REQUEST}
    assert dict.fromkeys(REQUEST, "-") == {name: outside[name] for name in REQUEST}


def test_the_stamp_mark_is_not_written(filtered):
    """ctxlog's mark of a stamped record (a leading underscore) is not a key of the output."""
    logging.getLogger(NAME).info("x")
    [line] = _lines(filtered)
    assert [] == [key for key in line if key.startswith("_")]


def test_real_starlette_app_values_stay_escaped(filtered):
    """Through ASGIMiddleware, a path's line break is the captured escape, in one JSON line."""

    async def view(request):
        logging.getLogger(NAME).info("seen\nINFO forged")
        return PlainTextResponse("ok")

    app = ctxlog.ASGIMiddleware(Starlette(routes=[Route("/pay", view)]))
    client = TestClient(app, client=("203.0.113.9", 5000))
    assert 200 == client.get("/pay", headers={"X-Request-ID": "req\x01abc"}).status_code
    [line] = _lines(filtered)
    assert ("203.0.113.9", "/pay", "seen\nINFO forged") == (
        line["ip"],
        line["path"],
        line["message"],
    )
    assert "\x01" not in line["request_id"]
    assert 1 == len(filtered.getvalue().splitlines())


def test_a_masked_traceback_stays_masked():
    """python-json-logger renders exc_info before exc_text: RedactFilter leaves it the text only."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("{levelname}{message}", style="{"))
    handler.addFilter(ctxlog.RedactFilter())
    logger = logging.getLogger(f"{NAME}.redacted")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ConnectionError("redis://:hunter2@cache:6379 refused")
        except ConnectionError:
            logger.exception("cache down")
    finally:
        logger.removeHandler(handler)
    [line] = _lines(out)
    assert "hunter2" not in json.dumps(line)
    assert line["exc_info"].endswith("ConnectionError: redis://:***@cache:6379 refused")
