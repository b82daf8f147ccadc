"""W3C Trace Context: the traceparent parser, trace_context in both middlewares, OpenTelemetry."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
import webtest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

import ctxlog
from ctxlog.context import DEFAULT_FIELDS, FIELDS
from ctxlog.record import stamp as filters
from ctxlog.testing import reset as reset_all
from ctxlog.web.traceparent import parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
HEADER = f"00-{TRACE}-{PARENT}-01"
OTEL_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
OTEL_SPAN = 0xB7AD6B7169203331
OTEL_IDS = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
HEX32 = re.compile("[0-9a-f]{32}")

log = ctxlog.get_logger("trace.app")


# --- the parser --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (HEADER, (TRACE, PARENT)),
        (f"00-{TRACE}-{PARENT}-00", (TRACE, PARENT)),
        (f"00-{TRACE}-{PARENT}-ff", (TRACE, PARENT)),
        (f"  {HEADER}\t", (TRACE, PARENT)),
        (f"\t \t{HEADER}", (TRACE, PARENT)),
        (f"01-{TRACE}-{PARENT}-01", (TRACE, PARENT)),
        (f"01-{TRACE}-{PARENT}-01-what-comes-next", (TRACE, PARENT)),
        (f"cc-{TRACE}-{PARENT}-09-", (TRACE, PARENT)),
        (f"fe-{TRACE}-{PARENT}-01", (TRACE, PARENT)),
        (f"00-{'0' * 31}1-{'0' * 15}1-01", ("0" * 31 + "1", "0" * 15 + "1")),
    ],
)
def test_valid_traceparent_values(value, expected):
    """Values the specification lets a receiver accept give (trace_id, parent_id)."""
    assert expected == parse_traceparent(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "00",
        HEADER[:-1],
        f"ff-{TRACE}-{PARENT}-01",
        f"FF-{TRACE}-{PARENT}-01",
        f"0A-{TRACE}-{PARENT}-01",
        f"00-{TRACE.upper()}-{PARENT}-01",
        f"00-{TRACE}-{PARENT.upper()}-01",
        f"00-{TRACE}-{PARENT}-0A",
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE}-{PARENT}-01-",
        f"00-{TRACE}-{PARENT}-01-extra",
        f"00-{TRACE}-{PARENT}-01x",
        f"01-{TRACE}-{PARENT}-01x",
        f"01-{TRACE}-{PARENT}-01.more",
        f"{HEADER},{HEADER}",
        f"{HEADER}, {HEADER}",
        f"01-{TRACE}-{PARENT}-01-a,b",
        f"00_{TRACE}_{PARENT}_01",
        f"00-{TRACE}{PARENT}-01",
        f"00-{TRACE[:-1]}g-{PARENT}-01",
        f"00-{TRACE}-{PARENT[:-1]}-01",
        f"0-{TRACE}-{PARENT}-01",
        f"000-{TRACE}-{PARENT}-01",
        f"{HEADER}\n",
        f"\r\n{HEADER}",
        f"{HEADER}\x00",
        f"00-{TRACE[:-1]}\u0661-{PARENT}-01",  # an Arabic-Indic digit is not hex
        f"00-{TRACE[:-1]}\uff41-{PARENT}-01",  # nor is a fullwidth "a"
        f"00-{TRACE}-{PARENT}-01\u00a0",  # no-break space is not OWS
    ],
)
def test_invalid_traceparent_values(value):
    """Anything the specification tells a receiver to ignore gives None."""
    assert parse_traceparent(value) is None


_HEXLC = st.text(alphabet="0123456789abcdef", min_size=1, max_size=40)


@given(
    st.one_of(
        st.text(max_size=120),
        st.builds(
            "-".join,
            st.lists(st.one_of(_HEXLC, st.text(max_size=4)), min_size=1, max_size=6),
        ),
    )
)
def test_parser_never_raises_and_returns_only_well_formed_ids(value):
    """Whatever comes in, the result is None or a non-zero 32-hex and 16-hex pair from the value."""
    result = parse_traceparent(value)

    if result is not None:
        trace_id, parent_id = result
        assert re.fullmatch("[0-9a-f]{32}", trace_id) and trace_id != "0" * 32
        assert re.fullmatch("[0-9a-f]{16}", parent_id) and parent_id != "0" * 16
        assert f"-{trace_id}-{parent_id}-" in value


@given(
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).filter(lambda s: s != "0" * 32),
    st.text(alphabet="0123456789abcdef", min_size=16, max_size=16).filter(lambda s: s != "0" * 16),
    st.text(alphabet="0123456789abcdef", min_size=2, max_size=2),
)
def test_every_well_formed_version_00_value_is_accepted(trace_id, parent_id, flags):
    """A version 00 value of lowercase hex ids that are not all zero is always accepted."""
    assert (trace_id, parent_id) == parse_traceparent(f"00-{trace_id}-{parent_id}-{flags}")


# --- helpers -----------------------------------------------------------------------------------


class Lines(logging.Handler):
    """Keep records and lines formatted with the trace fields; optionally with a ContextFilter."""

    FORMAT = "%(request_id)s %(trace_id)s %(span_id)s %(message)s"

    def __init__(self, *, context_filter: bool = True) -> None:
        super().__init__(logging.DEBUG)
        if context_filter:
            self.addFilter(ctxlog.ContextFilter())
        self.setFormatter(logging.Formatter(self.FORMAT))
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "asyncio":  # "Using selector: ..." from asyncio.run()
            return
        self.records.append(record)
        self.lines.append(self.format(record))

    def named(self, name: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == name]


@pytest.fixture
def lines():
    handler = Lines()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def otel_span(trace_id: int = OTEL_TRACE, span_id: int = OTEL_SPAN):
    """Make an OpenTelemetry span with these ids the current span (the API alone, no SDK)."""
    return trace.use_span(
        NonRecordingSpan(SpanContext(trace_id=trace_id, span_id=span_id, is_remote=False))
    )


def wsgi_view(environ, start_response):
    log.info("in view")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def wsgi_get(headers=None, environ=None, app=wsgi_view, **options):
    options.setdefault("access_log", True)
    client = webtest.TestApp(ctxlog.WSGIMiddleware(app, **options))
    return client.get("/", headers=headers or {}, extra_environ=environ or {})


async def asgi_view(scope, receive, send):
    log.info("in view")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def asgi_get(headers=(), app=asgi_view, **options):
    """Serve one GET through ASGIMiddleware; return the response headers it sent."""
    options.setdefault("access_log", True)
    middleware = ctxlog.ASGIMiddleware(app, **options)
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
        "headers": list(headers),
        "client": ("192.0.2.10", 5555),
        "server": ("127.0.0.1", 80),
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return dict(sent[0]["headers"])


def ids(record: logging.LogRecord) -> tuple[str, str]:
    return record.trace_id, record.span_id


# --- off by default ----------------------------------------------------------------------------


def test_off_by_default_nothing_changes(capture):
    """Without trace_context no record gets trace fields and get_context() has the five fields."""
    seen = []

    def view(environ, start_response):
        seen.append(ctxlog.get_context())
        return wsgi_view(environ, start_response)

    wsgi_get({"traceparent": HEADER}, app=view)
    logging.getLogger("outside").info("outside")

    assert [set(FIELDS)] == [set(fields) for fields in seen]
    assert all(not hasattr(r, "trace_id") and not hasattr(r, "span_id") for r in capture.records)
    assert dict.fromkeys(FIELDS, "-") == DEFAULT_FIELDS
    assert filters._traced is None


def test_otel_span_is_not_read_while_trace_context_is_off(capture):
    """A current OpenTelemetry span adds nothing to records unless trace context is on."""
    with otel_span():
        log.info("hello")

    assert not hasattr(capture.records[0], "trace_id")


@pytest.mark.parametrize("value", ["yes", 1, 0, None, "REQUEST_ID", "trace_id", ["request_id"]])
@pytest.mark.parametrize("middleware", [ctxlog.WSGIMiddleware, ctxlog.ASGIMiddleware])
def test_bad_trace_context_fails_at_construction(middleware, value):
    """Anything but True, False or "request_id" is refused when the middleware is built."""
    with pytest.raises(ValueError, match=r"trace_context: .* is not True, False or 'request_id'"):
        middleware(wsgi_view, trace_context=value)
    assert filters._traced is None


# --- the fields of a request -------------------------------------------------------------------


def test_wsgi_valid_traceparent_on_view_and_access_records(lines):
    """A valid traceparent gives the view's records and the access line trace_id and span_id."""
    response = wsgi_get({"traceparent": HEADER, "X-Request-ID": "abc-123"}, trace_context=True)

    assert [(TRACE, PARENT)] == [ids(r) for r in lines.named("trace.app")]
    assert [(TRACE, PARENT)] == [ids(r) for r in lines.named("ctxlog.access")]
    assert "abc-123" == lines.named("trace.app")[0].request_id
    assert "abc-123" == response.headers["X-Request-ID"]


def test_asgi_valid_traceparent_on_view_and_access_records(lines):
    """The same through ASGIMiddleware."""
    headers = asgi_get(
        [(b"traceparent", HEADER.encode()), (b"x-request-id", b"abc-123")], trace_context=True
    )

    assert [(TRACE, PARENT)] == [ids(r) for r in lines.named("trace.app")]
    assert [(TRACE, PARENT)] == [ids(r) for r in lines.named("ctxlog.access")]
    assert b"abc-123" == headers[b"x-request-id"]


def test_get_context_holds_the_trace_fields(lines):
    """Inside a traced request get_context() has trace_id and span_id after the five fields."""
    seen = []

    def view(environ, start_response):
        seen.append(ctxlog.get_context())
        return wsgi_view(environ, start_response)

    wsgi_get({"traceparent": HEADER}, app=view, trace_context=True)

    assert [*FIELDS, "trace_id", "span_id"] == list(seen[0])
    assert (TRACE, PARENT) == (seen[0]["trace_id"], seen[0]["span_id"])


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"HTTP_TRACEPARENT": ""},
        {"HTTP_TRACEPARENT": f"ff-{TRACE}-{PARENT}-01"},
        {"HTTP_TRACEPARENT": HEADER.upper()},
        {"HTTP_TRACEPARENT": f"00-{'0' * 32}-{PARENT}-01"},
        # What a WSGI server puts in the environ for two traceparent lines.
        {"HTTP_TRACEPARENT": f"{HEADER},00-{'1' * 32}-{PARENT}-01"},
        {"HTTP_TRACEPARENT": f"{HEADER}, {HEADER}"},
    ],
)
def test_wsgi_missing_invalid_or_duplicate_traceparent_gives_dashes(lines, environ):
    """Without one valid traceparent both fields are '-', on view records and the access line."""
    wsgi_get(environ=environ, trace_context=True)

    assert [("-", "-"), ("-", "-")] == [ids(r) for r in lines.records]
    assert ["trace.app", "ctxlog.access"] == [r.name for r in lines.records]


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"traceparent", b"")],
        [(b"traceparent", HEADER.upper().encode())],
        [(b"traceparent", HEADER.encode() + b"\xff")],
        [(b"traceparent", HEADER.encode()), (b"traceparent", HEADER.encode())],
        [(b"traceparent", f"{HEADER},{HEADER}".encode())],
    ],
)
def test_asgi_missing_invalid_or_duplicate_traceparent_gives_dashes(lines, headers):
    """The same through ASGIMiddleware; two header lines count as a duplicate."""
    asgi_get(headers, trace_context=True)

    assert [("-", "-"), ("-", "-")] == [ids(r) for r in lines.records]


def test_asgi_websocket_gets_the_trace_fields(lines):
    """A websocket connection gets the trace fields too."""

    async def app(scope, receive, send):
        log.info("connected")
        await send({"type": "websocket.accept"})

    middleware = ctxlog.ASGIMiddleware(app, trace_context="request_id")
    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [(b"traceparent", HEADER.encode())],
        "client": ("192.0.2.10", 5555),
    }
    asyncio.run(middleware(scope, receive, send))

    assert [(TRACE, PARENT)] == [ids(r) for r in lines.named("trace.app")]
    assert TRACE.encode() == dict(sent[0]["headers"])[b"x-request-id"]


# --- trace_context="request_id" ----------------------------------------------------------------


def test_wsgi_request_id_mode_uses_the_trace_id(lines):
    """With "request_id" the trace-id is the request id (over X-Request-ID) and is echoed."""
    response = wsgi_get(
        {"traceparent": HEADER, "X-Request-ID": "abc-123"}, trace_context="request_id"
    )

    assert TRACE == response.headers["X-Request-ID"]
    assert [TRACE, TRACE] == [r.request_id for r in lines.records]
    assert [f"{TRACE} {TRACE} {PARENT} in view"] == lines.lines[:1]


def test_asgi_request_id_mode_uses_the_trace_id(lines):
    """The same through ASGIMiddleware."""
    headers = asgi_get(
        [(b"x-request-id", b"abc-123"), (b"traceparent", HEADER.encode())],
        trace_context="request_id",
    )

    assert TRACE.encode() == headers[b"x-request-id"]
    assert [TRACE, TRACE] == [r.request_id for r in lines.records]


@pytest.mark.parametrize("traceparent", [None, f"ff-{TRACE}-{PARENT}-01", f"{HEADER},{HEADER}"])
def test_request_id_mode_falls_back_to_x_request_id(lines, traceparent):
    """Without a valid traceparent the request id is X-Request-ID, as without trace context."""
    wsgi = wsgi_get(
        {"X-Request-ID": "abc-123", **({"traceparent": traceparent} if traceparent else {})},
        trace_context="request_id",
    )
    asgi = asgi_get(
        [(b"x-request-id", b"abc-123")]
        + ([(b"traceparent", traceparent.encode())] if traceparent else []),
        trace_context="request_id",
    )

    assert ("abc-123", b"abc-123") == (wsgi.headers["X-Request-ID"], asgi[b"x-request-id"])
    assert ["abc-123"] * 4 == [r.request_id for r in lines.records]
    assert [("-", "-")] * 4 == [ids(r) for r in lines.records]


def test_request_id_mode_without_any_id_makes_a_fresh_one(lines):
    """No traceparent and no X-Request-ID: a fresh 32-hex id, echoed, trace fields '-'."""
    response = wsgi_get(trace_context="request_id")

    echoed = response.headers["X-Request-ID"]
    assert HEX32.fullmatch(echoed)
    assert [(echoed, "-", "-")] * 2 == [(r.request_id, *ids(r)) for r in lines.records]


# --- records outside requests and from other middlewares ---------------------------------------


def test_trace_fields_format_outside_requests_once_enabled():
    """Once a middleware enabled trace context, %(trace_id)s %(span_id)s work on every record."""
    handler = Lines(context_filter=True)
    logger = logging.getLogger("trace.outside")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        ctxlog.WSGIMiddleware(wsgi_view, trace_context=True)
        logger.info("plain logger")
        ctxlog.get_logger("trace.outside").info("adapter")
        with ctxlog.scope(job="nightly"):
            logger.info("in a scope")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    assert ["- - - plain logger", "- - - adapter", "- - - in a scope"] == handler.lines
    assert {**dict.fromkeys(FIELDS, "-"), "trace_id": "-", "span_id": "-"} == DEFAULT_FIELDS


def test_a_middleware_without_trace_context_still_gives_dashes(lines):
    """After one middleware enabled it, requests of a middleware without it log '-' for both."""
    ctxlog.ASGIMiddleware(asgi_view, trace_context=True)
    wsgi_get({"traceparent": HEADER, "X-Request-ID": "abc-123"})

    assert ["abc-123 - - in view"] == lines.lines[:1]
    assert [("-", "-")] * 2 == [ids(r) for r in lines.records]


def test_reset_all_turns_trace_context_off():
    """reset_all() undoes what trace_context switched on, so every test starts with it off."""
    ctxlog.WSGIMiddleware(wsgi_view, trace_context=True)
    assert filters._traced is not None
    assert "trace_id" in DEFAULT_FIELDS

    reset_all()

    assert (None, None) == (filters._traced, filters._current_span)
    assert dict.fromkeys(FIELDS, "-") == DEFAULT_FIELDS
    record = logging.makeLogRecord({})
    filters.stamp(record)
    assert not hasattr(record, "trace_id")


def test_import_ctxlog_does_not_import_opentelemetry():
    """OpenTelemetry is imported when trace context is enabled, never by import ctxlog."""
    import subprocess
    import sys

    code = "import sys, ctxlog; print('opentelemetry' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert "False" == out.stdout.strip()


# --- OpenTelemetry -----------------------------------------------------------------------------


def test_otel_span_wins_over_the_request_fields_in_a_view(lines):
    """A span current at log time gives its ids; the access line, outside it, the header's."""

    def view(environ, start_response):
        with otel_span():
            log.info("in span")
        log.info("after span")
        start_response("200 OK", [])
        return [b"ok"]

    wsgi_get({"traceparent": HEADER}, app=view, trace_context=True)

    assert [OTEL_IDS, (TRACE, PARENT), (TRACE, PARENT)] == [ids(r) for r in lines.records]
    assert "ctxlog.access" == lines.records[-1].name


def test_otel_span_in_an_asgi_view(lines):
    """The same through ASGIMiddleware, also when the request had no traceparent."""

    async def app(scope, receive, send):
        with otel_span():
            log.info("in span")
        await asgi_view(scope, receive, send)

    asgi_get(app=app, trace_context=True)

    assert [OTEL_IDS, ("-", "-"), ("-", "-")] == [ids(r) for r in lines.records]


def test_otel_span_outside_requests_through_the_filter(lines):
    """Outside requests a ContextFilter takes the span's ids, and '-' again after the span."""
    ctxlog.ASGIMiddleware(asgi_view, trace_context=True)
    with otel_span():
        logging.getLogger("plain").info("in span")
    logging.getLogger("plain").info("after")

    assert [OTEL_IDS, ("-", "-")] == [ids(r) for r in lines.records]


def test_otel_span_through_get_logger_without_a_filter():
    """get_logger() stamps the span's ids itself; no ContextFilter is needed."""
    handler = Lines(context_filter=False)
    logger = logging.getLogger("trace.adapter")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        ctxlog.ASGIMiddleware(asgi_view, trace_context=True)
        with otel_span():
            ctxlog.get_logger("trace.adapter").info("in span")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    assert [f"- {OTEL_IDS[0]} {OTEL_IDS[1]} in span"] == handler.lines


def test_otel_span_through_nonblocking():
    """nonblocking() captures the span's ids in the logging thread, before the queue."""
    sink = Lines(context_filter=False)
    handler = ctxlog.nonblocking([sink])
    logger = logging.getLogger("trace.queued")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        ctxlog.ASGIMiddleware(asgi_view, trace_context=True)
        with otel_span():
            logger.info("in span")
        logger.info("after")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        handler.close()

    assert [OTEL_IDS, ("-", "-")] == [ids(r) for r in sink.records]


def test_a_records_own_trace_id_wins_over_the_span(lines):
    """A caller's extra trace_id is kept; the span still gives the span_id it did not set."""
    ctxlog.ASGIMiddleware(asgi_view, trace_context=True)
    with otel_span():
        logging.getLogger("plain").info("extra", extra={"trace_id": "mine"})
        log.info("adapter extra", extra={"trace_id": "mine", "span_id": "my-span"})

    assert [("mine", OTEL_IDS[1]), ("mine", "my-span")] == [ids(r) for r in lines.records]


def test_invalid_span_context_leaves_the_request_fields(lines):
    """A current span whose context is not valid (all-zero ids) is ignored."""

    def view(environ, start_response):
        with trace.use_span(trace.INVALID_SPAN):
            log.info("invalid span")
        start_response("200 OK", [])
        return [b"ok"]

    wsgi_get({"traceparent": HEADER}, app=view, trace_context=True)

    assert [(TRACE, PARENT)] * 2 == [ids(r) for r in lines.records]


class BrokenSpan(NonRecordingSpan):
    """A span whose context cannot be read, as a faulty OpenTelemetry plug-in might give."""

    def get_span_context(self):
        msg = "tracer is broken"
        raise RuntimeError(msg)


def test_otel_that_raises_is_tolerated_and_reported_once(lines, capsys):
    """A failing span never breaks a log call: the request's fields are used, stderr says once."""

    def view(environ, start_response):
        with trace.use_span(BrokenSpan(SpanContext(OTEL_TRACE, OTEL_SPAN, is_remote=False))):
            log.info("first")
            log.info("second")
        start_response("200 OK", [])
        return [b"ok"]

    wsgi_get({"traceparent": HEADER}, app=view, trace_context=True)

    assert [(TRACE, PARENT)] * 3 == [ids(r) for r in lines.records]
    err = capsys.readouterr().err
    assert 1 == err.count("reading the current OpenTelemetry span raised")
    assert "tracer is broken" in err
