"""
ctxlog's fields through the tools you may already run: python-json-logger, structlog, loguru
and the OpenTelemetry SDK.

    python examples/other_formatters.py              # all four
    python examples/other_formatters.py structlog    # or json-logger, loguru, otel

Each part is one short function: it sets the tool up as ``docs/other-formatters.md`` shows,
logs inside one request (alice's payment of order 7) and prints what the tool writes, one
JSON object a line. Every line carries the request's ``ip``, ``user``, ``request_id``,
``method`` and ``path`` and the bound ``order_id``. Where the tool reads standard library
records, ``ctxlog.RedactFilter`` comes first on the handler, so the ``card_token`` logged with
the payment arrives as ``***``.

A part whose package is not installed is skipped with one line on stderr naming what to
install; ``pip install python-json-logger structlog loguru opentelemetry-sdk`` gets them all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import warnings

import ctxlog
import ctxlog.testing

REQUEST = {
    "ip": "203.0.113.7",
    "user": "alice",
    "request_id": "r-1",
    "method": "POST",
    "path": "/pay",
}


def skipped(part, package):
    print(f"{part}: skipped, {package} is not installed (pip install {package})", file=sys.stderr)


@contextlib.contextmanager
def shop_logger(handler):
    """The ``shop`` logger writing through ``handler`` only, for the ``with`` block."""
    log = logging.getLogger("shop")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield log
    finally:
        log.removeHandler(handler)


def pay(log):
    """What a view does: logged inside a request, as ctxlog's middleware runs it."""
    with ctxlog.testing.request(**REQUEST):  # in an app: ctxlog.ASGIMiddleware / WSGIMiddleware
        ctxlog.bind(order_id=7)
        log.info("paid", extra={"amount": 12, "card_token": "tok_4242"})


def json_logger():
    """python-json-logger: every attribute ContextFilter puts on a record becomes a key."""
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:
        try:
            from pythonjsonlogger.jsonlogger import JsonFormatter  # before 3.1
        except ImportError:
            return skipped("json-logger", "python-json-logger")
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(ctxlog.RedactFilter())
    handler.addFilter(ctxlog.ContextFilter())
    handler.setFormatter(JsonFormatter("{levelname}{name}{message}", style="{"))
    with shop_logger(handler) as log:
        pay(log)
    return None


def structlog_part():
    """structlog: merge_context adds the fields to structlog's events and to stdlib records."""
    try:
        import structlog

        import ctxlog.structlog
    except ImportError:
        return skipped("structlog", "structlog")
    render = structlog.processors.JSONRenderer(sort_keys=True)
    structlog.configure(
        processors=[ctxlog.structlog.merge_context, structlog.processors.add_log_level, render],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
    )
    handler = logging.StreamHandler(sys.stdout)  # the standard library's records, through structlog
    handler.addFilter(ctxlog.RedactFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[ctxlog.structlog.merge_context, structlog.stdlib.add_log_level],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, render],
        )
    )
    try:
        with shop_logger(handler) as log, ctxlog.testing.request(**REQUEST):
            structlog.get_logger().info("cart viewed", items=3)
            pay(log)
    finally:
        structlog.reset_defaults()
    return None


def loguru_part():
    """loguru: ctxlog.loguru.patch puts the fields in each record's extra."""
    try:
        from loguru import logger

        import ctxlog.loguru
    except ImportError:
        return skipped("loguru", "loguru")
    logger.remove()
    logger.configure(patcher=ctxlog.loguru.patch)
    # serialize=True: one JSON object a line whatever the message holds (a text sink writes a
    # line break in a message as it is). The fields are under "record" -> "extra".
    sink = logger.add(sys.stdout, serialize=True)
    try:
        with ctxlog.testing.request(**REQUEST):
            ctxlog.bind(order_id=7)
            logger.info("paid {} EUR", 12)
    finally:
        logger.remove(sink)
        logger.configure(patcher=None)
    return None


def otel():
    """The OpenTelemetry SDK: the fields are attributes of the exported log record."""
    try:
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, export
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return skipped("otel", "opentelemetry-sdk")
    # InMemoryLogExporter before SDK 1.39.
    memory = getattr(export, "InMemoryLogRecordExporter", None) or export.InMemoryLogExporter
    exporter = memory()
    provider = LoggerProvider()
    provider.add_log_record_processor(export.SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        # Deprecated for opentelemetry-instrumentation-logging's handler, built the same way.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)
    handler.addFilter(ctxlog.RedactFilter())
    handler.addFilter(ctxlog.ContextFilter())
    tracer = TracerProvider().get_tracer("shop")
    with shop_logger(handler) as log, tracer.start_as_current_span("pay"):
        pay(log)
    provider.shutdown()
    for data in exporter.get_finished_logs():
        record = data.log_record
        exported = {
            "body": record.body,
            "trace_id": f"{record.trace_id:032x}",
            "span_id": f"{record.span_id:016x}",
            "attributes": dict(record.attributes or {}),
        }
        print(json.dumps(exported))
    return None


PARTS = {
    "json-logger": json_logger,
    "structlog": structlog_part,
    "loguru": loguru_part,
    "otel": otel,
}


def main(argv=None):
    names = (sys.argv[1:] if argv is None else argv) or list(PARTS)
    unknown = [name for name in names if name not in PARTS]
    if unknown:
        sys.exit(f"unknown part {unknown[0]!r}: choose from {', '.join(PARTS)}")
    for name in names:
        PARTS[name]()


if __name__ == "__main__":
    main()
