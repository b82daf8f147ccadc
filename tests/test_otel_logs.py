"""The OpenTelemetry SDK's LoggingHandler exports ctxlog's fields as attributes, next to span ids."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import ctxlog
import ctxlog.testing

if os.environ.get("CI") != "true":
    pytest.importorskip("opentelemetry.sdk")
    pytest.importorskip("opentelemetry.exporter.otlp.proto.common")

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.trace import TracerProvider

NAME = "test.otel.logs"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class OTel:
    """A LoggerProvider exporting to memory, its LoggingHandler, and a tracer."""

    def __init__(self, handler_filter: bool) -> None:
        self.exporter = InMemoryLogRecordExporter()
        self.provider = LoggerProvider()
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))
        with warnings.catch_warnings():
            # The SDK's handler is deprecated in favour of opentelemetry-instrumentation-logging.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.handler = LoggingHandler(logger_provider=self.provider)
        if handler_filter:
            self.handler.addFilter(ctxlog.ContextFilter())
        self.tracer = TracerProvider().get_tracer(__name__)

    def attributes(self) -> list[dict]:
        return [dict(data.log_record.attributes) for data in self.exporter.get_finished_logs()]


def _otel(handler_filter: bool) -> Iterator[OTel]:
    otel = OTel(handler_filter)
    logger = logging.getLogger(NAME)
    logger.addHandler(otel.handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield otel
    finally:
        logger.removeHandler(otel.handler)
        logger.propagate = True
        otel.provider.shutdown()


@pytest.fixture
def otel() -> Iterator[OTel]:
    """The SDK's LoggingHandler with ctxlog.ContextFilter on it."""
    yield from _otel(handler_filter=True)


@pytest.fixture
def bare_otel() -> Iterator[OTel]:
    """The SDK's LoggingHandler without a filter: records come stamped by get_logger()."""
    yield from _otel(handler_filter=False)


REQUEST = {
    "ip": "203.0.113.7",
    "user": "alice",
    "request_id": "r-1",
    "method": "GET",
    "path": "/pay",
}


def test_fields_are_attributes_next_to_the_span_ids(otel):
    """With ContextFilter on the handler, the request's fields are attributes of the export."""
    with (
        otel.tracer.start_as_current_span("charge") as span,
        ctxlog.testing.request(**REQUEST),
    ):
        ctxlog.bind(order=42)
        logging.getLogger(NAME).info("paid %s", 10)
    [data] = otel.exporter.get_finished_logs()
    assert "paid 10" == data.log_record.body
    assert {**REQUEST, "order": 42} == {
        name: data.log_record.attributes[name] for name in [*REQUEST, "order"]
    }
    context = span.get_span_context()
    assert (context.trace_id, context.span_id) == (
        data.log_record.trace_id,
        data.log_record.span_id,
    )


def test_get_logger_stamps_records_for_a_bare_handler(bare_otel):
    """get_logger()'s records carry the fields to a LoggingHandler that has no ctxlog filter."""
    with ctxlog.testing.request(**REQUEST):
        ctxlog.get_logger(NAME).warning("refused")
    [attributes] = bare_otel.attributes()
    assert REQUEST == {name: attributes[name] for name in REQUEST}


def test_the_fields_survive_the_otlp_encoding(otel):
    """The OTLP protobuf the exporters send holds the fields as string attributes."""
    with otel.tracer.start_as_current_span("charge"), ctxlog.testing.request(**REQUEST):
        logging.getLogger(NAME).info("paid")
    request = encode_logs(otel.exporter.get_finished_logs())
    [record] = request.resource_logs[0].scope_logs[0].log_records
    encoded = {kv.key: kv.value.string_value for kv in record.attributes}
    assert REQUEST == {name: encoded[name] for name in REQUEST}
    assert 16 == len(record.trace_id)


def test_real_starlette_app_with_trace_context(otel):
    """Through ASGIMiddleware(trace_context=True): ctxlog's trace fields are the SDK span's ids."""

    async def view(request):
        with otel.tracer.start_as_current_span("view"):
            logging.getLogger(NAME).info("in span")
        logging.getLogger(NAME).info("after span")
        return PlainTextResponse("ok")

    app = ctxlog.ASGIMiddleware(Starlette(routes=[Route("/pay", view)]), trace_context=True)
    response = TestClient(app, client=("203.0.113.9", 5000)).get(
        "/pay", headers={"traceparent": TRACEPARENT, "X-Request-ID": "req-abc"}
    )
    assert 200 == response.status_code
    in_span, after = otel.exporter.get_finished_logs()
    attributes = dict(in_span.log_record.attributes)
    assert ("203.0.113.9", "req-abc", "/pay") == (
        attributes["ip"],
        attributes["request_id"],
        attributes["path"],
    )
    assert (f"{in_span.log_record.trace_id:032x}", f"{in_span.log_record.span_id:016x}") == (
        attributes["trace_id"],
        attributes["span_id"],
    )
    # Outside the SDK span, the fields are the traceparent header's.
    assert ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331") == (
        after.log_record.attributes["trace_id"],
        after.log_record.attributes["span_id"],
    )


def test_what_the_docs_say_of_other_values_and_the_marks(otel):
    """A UUID bound value arrives as its string; ctxlog's stamp and redaction marks are exported too."""
    import uuid

    order = uuid.uuid4()
    redact = ctxlog.RedactFilter()
    otel.handler.addFilter(redact)
    try:
        with ctxlog.testing.request(**REQUEST):
            ctxlog.bind(order=order)
            logging.getLogger(NAME).info("paid")  # nothing to mask: marked all the same
            logging.getLogger(NAME).info("login password=%s", "hunter2")
    finally:
        otel.handler.removeFilter(redact)
    logging.getLogger(NAME).info("after")  # without RedactFilter: no redaction mark
    paid, login, after = otel.attributes()
    assert (str(order), True) == (paid["order"], paid["_ctxlog_stamped"])
    # docs/other-formatters.md: a tuple of small integers, an array of integers in OTLP.
    mark = paid["_ctxlog_redacted"]
    assert isinstance(mark, tuple)
    assert mark
    assert all(type(token) is int for token in mark)
    assert mark == login["_ctxlog_redacted"]
    assert "_ctxlog_redacted" not in after
    assert after["_ctxlog_stamped"] is True
    request = encode_logs(otel.exporter.get_finished_logs())
    encoded = request.resource_logs[0].scope_logs[0].log_records[1].attributes
    [value] = [kv.value for kv in encoded if kv.key == "_ctxlog_redacted"]
    assert list(mark) == [item.int_value for item in value.array_value.values]


def test_a_masked_traceback_is_not_exported_from_the_exception(otel):
    """The SDK reads the exception object; after RedactFilter masked its text, there is none."""
    redact = ctxlog.RedactFilter()
    otel.handler.addFilter(redact)
    try:
        raise ConnectionError("redis://:hunter2@cache:6379 refused")
    except ConnectionError:
        logging.getLogger(NAME).exception("cache down, password=%s", "hunter2")
    finally:
        otel.handler.removeFilter(redact)
    [data] = otel.exporter.get_finished_logs()
    exported = json.dumps({"body": data.log_record.body, **dict(data.log_record.attributes)})
    assert "hunter2" not in exported
    assert "cache down, password=***" == data.log_record.body
