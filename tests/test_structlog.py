"""ctxlog.structlog: the processor, structlog's own loggers and stdlib records through it."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import ctxlog
import ctxlog.testing

structlog = (
    pytest.importorskip("structlog") if os.environ.get("CI") != "true" else __import__("structlog")
)

import ctxlog.structlog  # noqa: E402 - after the importorskip, as the test needs structlog


@pytest.fixture
def events() -> Iterator[io.StringIO]:
    """structlog configured to render JSON lines, with ctxlog's processor, into a buffer."""
    out = io.StringIO()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            ctxlog.structlog.merge_context,
            structlog.processors.add_log_level,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    try:
        yield out
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_import_ctxlog_does_not_load_the_glue():
    """The structlog glue is loaded only when imported."""
    import subprocess

    code = (
        "import ctxlog, sys; print('ctxlog.structlog' in sys.modules, 'structlog' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "False False" == result.stdout.strip()


def test_event_gets_the_request_fields_and_bound_ones(events):
    """Inside a request, a structlog event carries the request's fields and the bound ones."""
    with ctxlog.testing.request(ip="203.0.113.7", user="alice", request_id="r-1", path="/pay"):
        ctxlog.bind(order=42)
        structlog.get_logger().info("paid", amount=10)
    [line] = _lines(events)
    assert {
        "event": "paid",
        "amount": 10,
        "level": "info",
        "ip": "203.0.113.7",
        "user": "alice",
        "request_id": "r-1",
        "method": "GET",
        "path": "/pay",
        "order": 42,
    } == line


def test_keys_of_the_event_are_never_replaced(events):
    """An event's own key, or one from structlog's contextvars, wins over ctxlog's field."""
    structlog.contextvars.bind_contextvars(request_id="from-structlog")
    with ctxlog.testing.request(user="alice", request_id="r-1"):
        structlog.get_logger().info("hello", user="bob")
    [line] = _lines(events)
    assert ("bob", "from-structlog") == (line["user"], line["request_id"])


def test_scope_wins_over_the_request_and_outside_fields_are_dashes(events):
    """A scope() field wins over the request's; outside a request the fields read '-'."""
    log = structlog.get_logger()
    with ctxlog.testing.request(user="alice"), ctxlog.scope(user="job"):
        log.info("inside")
    log.info("outside")
    inside, outside = _lines(events)
    assert "job" == inside["user"]
    assert {"ip": "-", "user": "-", "request_id": "-", "method": "-", "path": "-"} == {
        name: outside[name] for name in ctxlog.FIELDS
    }


def test_processor_returns_the_event_dict_it_was_given():
    """merge_context changes the event in place and returns it, as a structlog processor must."""
    event = {"event": "x"}
    with ctxlog.testing.request(user="alice"):
        result = ctxlog.structlog.merge_context(None, "info", event)
    assert result is event
    assert "alice" == event["user"]


@pytest.fixture
def stdlib_through_structlog() -> Iterator[io.StringIO]:
    """A stdlib handler whose formatter is structlog's ProcessorFormatter, rendering JSON."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[ctxlog.structlog.merge_context, structlog.stdlib.add_log_level],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
        )
    )
    logger = logging.getLogger("test.structlog.stdlib")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_stdlib_record_through_processor_formatter(stdlib_through_structlog):
    """A stdlib logger's record rendered by ProcessorFormatter carries the request's fields."""
    with ctxlog.testing.request(ip="198.51.100.4", user="alice", request_id="r-2", tenant="acme"):
        logging.getLogger("test.structlog.stdlib").info("cart viewed")
    [line] = _lines(stdlib_through_structlog)
    assert {
        "event": "cart viewed",
        "level": "info",
        "ip": "198.51.100.4",
        "user": "alice",
        "request_id": "r-2",
        "method": "GET",
        "path": "/",
        "tenant": "acme",
    } == line


def test_a_masked_traceback_is_rendered_from_its_text(stdlib_through_structlog):
    """structlog renders exc_info; a record RedactFilter masked has the masked text instead."""
    logger = logging.getLogger("test.structlog.stdlib")
    [handler] = [
        h for h in logger.handlers if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    ]
    redact = ctxlog.RedactFilter()
    handler.addFilter(redact)
    try:
        raise ConnectionError("redis://:hunter2@cache:6379 refused")
    except ConnectionError:
        logger.exception("cache down")
    finally:
        handler.removeFilter(redact)
    [line] = _lines(stdlib_through_structlog)
    assert "hunter2" not in json.dumps(line)
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith("ConnectionError: redis://:***@cache:6379 refused")


def test_escaping_is_kept_and_json_holds_one_line_per_event(events):
    """A request's path is escaped as captured; a line break in a message stays inside the JSON."""

    async def view(scope, receive, send):  # any path, line breaks included
        structlog.get_logger().info("two\nlines")
        await PlainTextResponse("ok")(scope, receive, send)

    app = ctxlog.ASGIMiddleware(view)
    assert 200 == TestClient(app).get("/pay%0AFORGED").status_code
    text = events.getvalue()
    assert 1 == len(text.splitlines())
    [line] = _lines(events)
    assert ("two\nlines", "/pay\\nFORGED") == (line["event"], line["path"])


def test_real_starlette_app_through_the_middleware(events, stdlib_through_structlog):
    """Through ASGIMiddleware and a real Starlette app, both structlog and stdlib lines carry it."""

    async def view(request):
        ctxlog.bind(order=7)
        structlog.get_logger().info("paid")
        logging.getLogger("test.structlog.stdlib").info("stdlib paid")
        return PlainTextResponse("ok")

    app = ctxlog.ASGIMiddleware(Starlette(routes=[Route("/pay", view)]))
    with TestClient(app, client=("203.0.113.9", 5000)) as client:
        response = client.get("/pay", headers={"X-Request-ID": "req-abc"})
    assert 200 == response.status_code
    [event] = _lines(events)
    [record] = _lines(stdlib_through_structlog)
    expected = {
        "ip": "203.0.113.9",
        "request_id": "req-abc",
        "method": "GET",
        "path": "/pay",
        "order": 7,
    }
    assert expected == {name: event[name] for name in expected}
    assert expected == {name: record[name] for name in expected}


def _processor_formatter():
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[ctxlog.structlog.merge_context],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    )


def test_stamped_record_formatted_in_another_thread_keeps_its_request():
    """Behind ctxlog.nonblocking(), ProcessorFormatter runs in a worker: the record's fields win."""
    out = io.StringIO()
    target = logging.StreamHandler(out)
    target.setFormatter(_processor_formatter())
    handler = ctxlog.nonblocking([target])
    logger = logging.getLogger("test.structlog.queued")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with ctxlog.testing.request(user="alice", request_id="r-q", tenant="acme"):
            logger.info("queued", extra={"amount": 3})
        assert ctxlog.flush(timeout=30)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        handler.close()
    [line] = _lines(out)
    assert {
        "event": "queued",
        "ip": "-",
        "user": "alice",
        "request_id": "r-q",
        "method": "GET",
        "path": "/",
        "tenant": "acme",
        "amount": 3,
    } == line


def test_stamped_record_keeps_the_event_keys_and_hides_private_attributes():
    """A stamped record's fields never replace the event's keys; '_' attributes stay out."""
    record = logging.makeLogRecord({"msg": "x", "user": "alice", "_private": 1})
    ctxlog.ContextFilter().filter(record)
    event = ctxlog.structlog.merge_context(
        None, "info", {"event": "x", "user": "bob", "_record": record}
    )
    assert "bob" == event["user"]
    assert "-" == event["request_id"]
    assert "_private" not in event
    assert "_ctxlog_stamped" not in event


def test_redactor_masks_the_event_with_the_filters_rules_and_counts():
    """ctxlog.structlog.Redactor: bound fields, the event, values by key and a traceback masked."""
    out = io.StringIO()
    redact = ctxlog.RedactFilter(extra_keys=["ssn"])
    structlog.configure(
        processors=[
            ctxlog.structlog.merge_context,
            structlog.processors.format_exc_info,
            ctxlog.structlog.Redactor(redact),
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    try:
        with ctxlog.testing.request(user="alice", request_id="r-7", path="/cb;token=PATHSECRET"):
            ctxlog.bind(api_key="sk_live_BOUNDSECRET", session="SESSSECRET")
            log = structlog.get_logger()
            log.info("login password=hunter2", form={"password": "hunter2", "user": "bob"}, ssn="1")
            try:
                raise ConnectionError("redis://:hunter2@cache:6379 refused")
            except ConnectionError:
                log.exception("cache down")
    finally:
        structlog.reset_defaults()
    login, failure = _lines(out)
    assert "SECRET" not in out.getvalue() and "hunter2" not in out.getvalue()
    assert {"event": "login password=***", "form": {"password": "***", "user": "bob"},
            "ssn": "***", "api_key": "***", "session": "***", "user": "alice",
            "request_id": "r-7", "path": "/cb;token=***"}.items() <= login.items()  # fmt: skip
    assert failure["exception"].endswith("ConnectionError: redis://:***@cache:6379 refused")
    assert 2 == redact.stats()["records_redacted"]


def test_redactor_leaves_the_objects_structlog_reads_later(stdlib_through_structlog):
    """Through ProcessorFormatter: _record stays a LogRecord (ExtraAdder reads it), extras masked."""
    logger = logging.getLogger("test.structlog.stdlib")
    [handler] = [
        h for h in logger.handlers if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    ]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[ctxlog.structlog.merge_context, structlog.stdlib.ExtraAdder()],
            processors=[
                ctxlog.structlog.Redactor(),
                structlog.stdlib.add_logger_name,  # reads _record: a str there would break it
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
        )
    )
    logger.info("token=abc in %s", "a message", extra={"password": "hunter2"})
    [line] = _lines(stdlib_through_structlog)
    assert ("token=*** in a message", "***") == (line["event"], line["password"])
    assert "test.structlog.stdlib" == line["logger"]
    error = ValueError("password=hunter2")
    event = {"event": "failed", "exc_info": error}
    assert event is ctxlog.structlog.Redactor()(None, "error", event)
    assert event["exc_info"] is error  # left for format_exc_info, which the docs put first
