"""ctxlog.JSONFormatter: one JSON object per line, its fields, schemas, encoders and safety."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import io
import json
import logging
import logging.config
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson  # noqa: F401 - a missing orjson fails here, under CI too
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxlog
from ctxlog.context import RESERVED, STAMPED
from ctxlog.record.jsonformat import JSONFormatter
from ctxlog.record.schemas import CTXLOG_FIELDS, severity_number

ROOT = Path(__file__).resolve().parents[1]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
REQUEST = {"ip": "203.0.113.7", "user": "alice", "request_id": "rid-1", "method": "POST", "path": "/pay"}


class Angry:
    """An object whose str() and repr() raise."""

    def __str__(self) -> str:
        raise RuntimeError("no")

    __repr__ = __str__


class Color(enum.IntEnum):
    RED = 1


def record(msg: str = "paid %s EUR", args: Any = (42,), level: int = logging.INFO, exc_info: Any = None, **attrs: Any) -> logging.LogRecord:
    made = logging.LogRecord("shop.views", level, "/app/shop/views.py", 42, msg, args, exc_info, func="pay")
    made.__dict__.update(attrs)
    return made


def line(formatter: logging.Formatter, rec: logging.LogRecord) -> dict[str, Any]:
    text = formatter.format(rec)
    assert "\n" not in text and len(text.splitlines()) == 1, text
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


def both(rec: logging.LogRecord, **options: Any) -> str:
    """The line of each encoder for ``rec``: they must be the same bytes."""
    fast = JSONFormatter(**options)
    slow = JSONFormatter(use_orjson=False, **options)
    assert fast.uses_orjson and not slow.uses_orjson
    text = fast.format(rec)
    rec.exc_text = None
    assert text == slow.format(rec)
    return text


def captured(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ctxlog.ContextFilter())
    logger = logging.getLogger(f"test_jsonformat.{id(stream):x}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, stream


# -- the line ------------------------------------------------------------------------------------


def test_a_request_record_has_time_level_message_logger_fields_and_extras():
    """Through ContextFilter: ctxlog's fields, a bound field and extra= values are keys of one line."""
    logger, stream = captured(JSONFormatter())
    before = time.time()
    with ctxlog.scope(**REQUEST, tenant="acme"):
        logger.warning("paid %s EUR", 42, extra={"order_id": 7, "amount": 42.5})
    data = json.loads(stream.getvalue())
    assert ["time", "level", "message", "logger", *REQUEST, "order_id", "amount", "tenant"] == list(data)
    assert {"level": "WARNING", "message": "paid 42 EUR", "tenant": "acme", "order_id": 7, "amount": 42.5} == {
        k: data[k] for k in ("level", "message", "tenant", "order_id", "amount")
    }
    assert ISO.match(data["time"])
    stamp = dt.datetime.strptime(data["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()
    assert before - 0.002 <= stamp <= time.time()
    assert STAMPED not in stream.getvalue()


def test_unknown_fields_are_left_out_and_trace_and_task_fields_appear_when_present():
    """A ctxlog field holding '-' (or None) is not written; trace and task fields are when known."""
    data = line(JSONFormatter(), record(ip="-", user="-", request_id="r", method=None, trace_id="a" * 32, span_id="-", task_id="t1", task_name="-"))
    assert {"request_id": "r", "trace_id": "a" * 32, "task_id": "t1"} == {k: data[k] for k in data if k in CTXLOG_FIELDS}


def test_no_internal_attribute_ever_appears():
    """The stamp mark, any _ctxlog attribute and LogRecord's own attributes are never written."""
    rec = record(**{STAMPED: True, "_ctxlog_redacted": 3, "_mine": 1})
    data = line(JSONFormatter(), rec)
    assert {"_mine": 1}.items() <= data.items()
    assert not [k for k in data if k.startswith("_ctxlog")]
    assert not (set(data) & (RESERVED - {"message"}))


def test_time_is_utc_iso_8601_with_milliseconds():
    """created=0.5 is 1970-01-01T00:00:00.500Z whatever the local time zone."""
    rec = record()
    rec.created, rec.msecs = 86400 * 365 + 0.25, 250.0
    assert "1971-01-01T00:00:00.250Z" == line(JSONFormatter(), rec)["time"]


def test_exception_and_stack_are_text_with_type_and_message():
    """exc_info gives the traceback text, the exception's type and message; stack_info the stack."""
    try:
        int("x")
    except ValueError:
        rec = record("failed", (), logging.ERROR, sys.exc_info(), stack_info="Stack (most recent call last):\n  here")
    data = line(JSONFormatter(), rec)
    assert data["exception"].startswith("Traceback (most recent call last):\n")
    assert data["exception"].endswith("ValueError: invalid literal for int() with base 10: 'x'")
    assert ("ValueError", "invalid literal for int() with base 10: 'x'") == (data["exception_type"], data["exception_message"])
    assert "Stack (most recent call last):\n  here" == data["stack"]
    assert rec.exc_text == data["exception"]  # cached for the record's other formatters, as logging does


def test_values_json_cannot_hold_are_their_str_and_never_raise():
    """NaN, infinities, bytes, sets, dates, Decimals, big ints, enums, cycles, a raising __str__: one valid line."""
    cycle: list[Any] = []
    cycle.append(cycle)
    when = dt.datetime(2026, 12, 8, 1, 2, 3, tzinfo=dt.UTC)
    values = {
        "nan": math.nan, "inf": -math.inf, "raw": b"\x00\xff", "tags": {"a"}, "when": when, "price": decimal.Decimal("1.10"),
        "big": 2**70, "color": Color.RED, "cycle": cycle, "angry": Angry(), "nested": {1: (1, 2), "k": [Angry()]},
    }
    data = line(JSONFormatter(), record(**values))
    assert {
        "nan": "nan", "inf": "-inf", "raw": "b'\\x00\\xff'", "tags": "{'a'}", "when": str(when), "price": "1.10",
        "big": str(2**70), "color": 1, "angry": "<unprintable Angry object>", "nested": {"1": [1, 2], "k": ["<unprintable Angry object>"]},
    } == {k: data[k] for k in values if k != "cycle"}
    assert isinstance(data["cycle"], list)


class ItemsRaise(dict):
    def items(self):
        raise RuntimeError("items")


class IterRaise(list):
    def __iter__(self):
        raise RuntimeError("iter")


class LenLies(list):
    def __len__(self):
        return 10**15


class LenRaises(tuple):  # noqa: SLOT001 - a test double
    def __len__(self):
        raise RuntimeError("len")


class ItemsNotPairs(dict):
    def items(self):
        return [1, 2]


class OddStr(str):
    __slots__ = ()

    def __str__(self):
        return 5  # noqa: PLE0307 - the point of the test


class SizedPairs:
    """items() of ItemsLenLies: the pairs it yields, and a length no list could be sized by."""

    def __iter__(self):
        return iter([("k", 1)])

    def __len__(self):
        return 2**62


class ItemsLenLies(dict):
    def items(self):
        return SizedPairs()


@pytest.mark.parametrize("use_orjson", [True, False], ids=["orjson", "json"])
def test_a_container_that_cannot_be_read_is_its_str_and_the_rest_of_the_line_survives(use_orjson):
    """items() or __iter__ raising, a lying __len__, items() that are no pairs, a cycle: that value alone falls back; a str subclass key is its text."""
    cycle: list[Any] = []
    cycle.append(cycle)
    values = {
        "items": ItemsRaise(a=1),
        "iter": IterRaise([1, 2]),
        "lies": LenLies([1, 2]),
        "raises": LenRaises((3, 4)),
        "pairs": ItemsNotPairs(b=2),
        "sized": ItemsLenLies(),
        "cycle": cycle,
        "deep": {"ok": 1, "bad": ItemsRaise(c=3), "list": [IterRaise([5])]},
        "keys": {OddStr("k"): 1},
    }
    for schema in (None, "ecs", "otel", "gcp"):
        data = line(
            JSONFormatter(schema=schema, use_orjson=use_orjson),
            record(**REQUEST, **values, order_id=7),
        )
        assert "paid 42 EUR" == data.get("message", data.get("body"))
        assert {
            "items": "{'a': 1}",
            "iter": "[1, 2]",
            "lies": [1, 2],
            "raises": [3, 4],
            "pairs": "{'b': 2}",
            "sized": {"k": 1},
            "deep": {"ok": 1, "bad": "{'c': 3}", "list": ["[5]"]},
            "keys": {"k": 1},
            "order_id": 7,
        } == {k: data[k] for k in (*values, "order_id") if k != "cycle"}
        assert isinstance(data["cycle"], list)


def test_a_message_that_does_not_merge_is_kept_with_its_arguments():
    """Arguments that do not fit the message give the message, the arguments and the reason."""
    data = line(JSONFormatter(), record("%d items", ("many",)))
    assert data["message"].startswith("%d items ('many',) (the arguments did not fit the message: TypeError")


def test_a_record_that_cannot_be_formatted_gives_a_line_saying_so():
    """A broken record (a msg whose __str__ raises, a level name that is no text) still gives one JSON line."""
    rec = record(Angry(), None)
    rec.created = "not a time"  # type: ignore[assignment]
    data = line(JSONFormatter(), rec)
    assert data["message"].startswith("ctxlog.JSONFormatter could not format a record: ")
    assert "INFO" == data["level"]


# -- options ---------------------------------------------------------------------------------------


def test_fields_choose_and_order_rename_and_static_add():
    """fields= picks and orders, names one extra, adds record attributes; rename= and static= apply."""
    formatter = JSONFormatter(["message", "ip", "order_id", "process", "lineno", "funcName"], rename={"ip": "client_ip"}, static={"service": "shop", "env": {"region": "eu"}})
    data = line(formatter, record(**REQUEST, order_id=3, other=4))
    assert {"message": "paid 42 EUR", "service": "shop", "env": {"region": "eu"}, "client_ip": "203.0.113.7", "order_id": 3, "process": data["process"], "lineno": 42, "funcName": "pay"} == data
    assert ["message", "service", "env", "client_ip", "order_id", "process", "lineno", "funcName"] == list(data)


def test_rename_applies_to_extras():
    """An extra field is written under its rename= key."""
    data = line(JSONFormatter(rename={"order_id": "order.id"}), record(order_id=3))
    assert 3 == data["order.id"]
    assert "order_id" not in data


def test_an_extra_never_overwrites_a_key_of_the_line():
    """extra={'time': ...} or a static key's name leaves the formatter's value in place."""
    data = line(JSONFormatter(static={"service": "shop"}), record(time="forged", service="forged", logger="forged"))
    assert ("shop", "shop.views") == (data["service"], data["logger"])
    assert ISO.match(data["time"])


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"schema": "xml"}, "schema='xml' is not one of"),
        ({"fields": "message"}, "must be a list of field names"),
        ({"fields": ["message", "msg"]}, "names 'msg', which it does not write"),
        ({"fields": ["message", STAMPED]}, "which it does not write"),
        ({"fields": ["ip", "ip"]}, "names a field twice"),
        ({"rename": {"ip": "user"}}, "'user' and 'ip' would both be written as 'user'"),
        ({"rename": {"ip": ""}}, "both must be non-empty text"),
        ({"fields": ["message"], "rename": {"ip": "client"}}, "rename= names 'ip', which fields= does not write"),
        ({"static": {"message": "x"}}, "static= key 'message' is already the key of a field"),
        ({"gcp_project": "p"}, "needs schema='gcp'"),
        *(
            ({"schema": "gcp", "gcp_project": bad}, f"gcp_project={bad!r} is not a Cloud project id")
            for bad in ("", "a/b c", "My-Project", "short", "project-", "1project", "p" * 31, "my-project\n", "example.com:p", ":my-project", 123)
        ),
    ],
)
def test_bad_configuration_fails_at_construction_saying_what_to_change(options, says):
    """Each mistake is a ValueError naming the value."""
    with pytest.raises(ValueError, match=re.escape(says)):
        JSONFormatter(**options)


@pytest.mark.parametrize("project", ["my-project-123", "abcdef", "a" + "b" * 29, "example.com:my-project", "corp.example.co.uk:shop-prod"])
def test_gcp_project_ids_and_domain_scoped_ids_are_accepted(project):
    """A Cloud project id (6-30 characters) or a domain-scoped one gives the trace as a resource name."""
    data = line(JSONFormatter(["trace_id"], schema="gcp", gcp_project=project), record(trace_id="a" * 32))
    assert {"logging.googleapis.com/trace": f"projects/{project}/traces/{'a' * 32}"} == data


def configured(formatter: dict[str, Any]) -> dict[str, Any]:
    """Configure a logger through dictConfig with ``formatter``; return the line of one record in a request."""
    stream = io.StringIO()
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": formatter},
        "handlers": {"out": {"class": "logging.StreamHandler", "stream": stream, "formatter": "json", "filters": ["ctx"]}},
        "filters": {"ctx": {"()": "ctxlog.ContextFilter"}},
        "loggers": {"test_jsonformat.dictconfig": {"handlers": ["out"], "level": "INFO", "propagate": False}},
    })
    logger = logging.getLogger("test_jsonformat.dictconfig")
    try:
        with ctxlog.scope(ip="198.51.100.1"):
            logger.info("hello")
    finally:
        logger.handlers.clear()
    data = json.loads(stream.getvalue())
    assert isinstance(data, dict)
    return data


def test_dictconfig_with_a_factory():
    """dictConfig builds it with '()' and its keyword options."""
    data = configured({"()": "ctxlog.JSONFormatter", "schema": "ecs", "static": {"service.name": "shop"}})
    assert ({"name": "shop"}, {"ip": "198.51.100.1"}, "hello") == (data["service"], data["client"], data["message"])


@pytest.mark.parametrize("extra", [{}, {"validate": False}, {"style": "%"}], ids=["bare", "validate", "style"])
def test_dictconfig_with_a_class_gives_the_default_formatter(extra):
    """'class': 'ctxlog.JSONFormatter' (dictConfig passes fmt, datefmt, style[, validate] by position) works."""
    data = configured({"class": "ctxlog.JSONFormatter", **extra})
    assert ("hello", "198.51.100.1", "INFO") == (data["message"], data["ip"], data["level"])


@pytest.mark.parametrize(
    ("formatter", "says"),
    [
        ({"class": "ctxlog.JSONFormatter", "format": "%(message)s"}, "fields='%(message)s' must be a list of field names"),
        ({"class": "ctxlog.JSONFormatter", "datefmt": "%H:%M"}, "datefmt='%H:%M': the time is always ISO 8601 in UTC"),
        ({"class": "ctxlog.JSONFormatter", "style": "{"}, "style='{': a JSON line has no format string"),
        ({"()": "ctxlog.JSONFormatter", "datefmt": "%H:%M"}, "datefmt='%H:%M'"),
    ],
)
def test_dictconfig_options_a_json_line_cannot_use_are_refused_pointing_at_the_factory(formatter, says):
    """A format string, a datefmt or another style: a ValueError that says to use '()' with fields=."""
    with pytest.raises(ValueError, match="Unable to configure formatter 'json'") as caught:
        configured(formatter)
    assert says in str(caught.value.__cause__)
    assert '"()": "ctxlog.JSONFormatter"' in str(caught.value.__cause__)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="dictConfig passes 'defaults' from Python 3.12")
def test_dictconfig_class_with_defaults_is_refused_pointing_at_static():
    """'defaults' (passed as defaults= from 3.12): a ValueError naming static=."""
    with pytest.raises(ValueError, match="Unable to configure formatter 'json'") as caught:
        configured({"class": "ctxlog.JSONFormatter", "defaults": {"user": "-"}})
    assert "give static= for keys on every line" in str(caught.value.__cause__)


def test_logging_formatter_positional_arguments_as_python_3_12_passes_them():
    """JSONFormatter(fmt, datefmt, style, validate, defaults=...): the defaults work; defaults= values are refused."""
    assert "m" == line(JSONFormatter(None, None, "%", True, defaults=None), record("m", ()))["message"]
    with pytest.raises(ValueError, match=re.escape("defaults={'user': '-'}: give static= for keys on every line")):
        JSONFormatter(None, None, "%", True, defaults={"user": "-"})


def test_import_ctxlog_does_not_load_the_json_formatter():
    """ctxlog.JSONFormatter loads on first use (PEP 562), not with import ctxlog."""
    code = "import sys, ctxlog; a = 'ctxlog.record.jsonformat' in sys.modules; ctxlog.JSONFormatter; print(a, 'ctxlog.record.jsonformat' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "False True" == out.strip()


def multi_line_error() -> str:
    """A traceback text with a chained exception and a message of two lines."""
    try:
        try:
            {}["sku"]
        except KeyError as error:
            raise shop_errors.PaymentError("card declined\n  second line") from error
    except shop_errors.PaymentError:
        return logging.Formatter().formatException(sys.exc_info())


class shop_errors:  # noqa: N801 - stands for a module, so the type is written with a dot
    class PaymentError(Exception):
        pass


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (lambda: 'Traceback (most recent call last):\n  File "a.py", line 1, in f\n    g()\nValueError: bad\nvalue', ("ValueError", "bad\nvalue")),
        (lambda: "KeyError: 'sku'", ("KeyError", "'sku'")),
        (lambda: 'Traceback (most recent call last):\n  File "a.py", line 1, in f\nStopIteration', ("StopIteration", "")),
        (multi_line_error, ("test_jsonformat.shop_errors.PaymentError", "card declined\n  second line")),
        (lambda: 'no exception line here\n  File "a.py", line 1', None),
        (lambda: "", None),
    ],
)
def test_type_and_message_are_read_from_a_traceback_text(text, expected):
    """A record with exc_text only (another process's, or masked by RedactFilter) still has them."""
    rec = record("failed", (), logging.ERROR, exc_text=text())
    data = line(JSONFormatter(["message", "exception"]), rec)
    found = (data["exception_type"], data["exception_message"]) if "exception_type" in data else None
    assert expected == found
    assert (text() or None) == data.get("exception")


# -- schemas ---------------------------------------------------------------------------------------


def traced_error() -> logging.LogRecord:
    try:
        raise KeyError("sku")
    except KeyError:
        return record("failed", (), logging.ERROR, sys.exc_info(), **REQUEST, trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7", order_id=9)


def test_ecs_names_nested_with_dotted_top_level_keys():
    """ECS: @timestamp, log.level, message first; log.level and ecs.version dotted; the rest nested."""
    fields = ["time", "level", "message", "logger", *CTXLOG_FIELDS, "process", "threadName", "lineno", "funcName", "filename", "exception", "extras"]
    data = line(JSONFormatter(fields, schema="ecs"), traced_error())
    assert ["@timestamp", "log.level", "message"] == list(data)[:3]
    assert ("error", "8.11.0") == (data["log.level"], data["ecs.version"])
    assert {"logger": "shop.views", "origin": {"function": "pay", "file": {"name": "views.py", "line": 42}}} == data["log"]
    assert {"ip": "203.0.113.7"} == data["client"]
    assert {"name": "alice"} == data["user"]
    assert {"request": {"id": "rid-1", "method": "POST"}} == data["http"]
    assert ({"path": "/pay"}, {"id": "4bf92f3577b34da6a3ce929d0e0e4736"}, {"id": "00f067aa0ba902b7"}) == (data["url"], data["trace"], data["span"])
    assert {"pid", "thread"} == set(data["process"])
    assert ("KeyError", "'sku'") == (data["error"]["type"], data["error"]["message"])
    assert data["error"]["stack_trace"].endswith("KeyError: 'sku'")
    assert 9 == data["order_id"]


def test_otel_names_flat_as_attributes():
    """OpenTelemetry: the log data model's top-level names and semantic-convention attribute names."""
    fields = ["time", "level", "message", "logger", *CTXLOG_FIELDS, "process", "thread", "lineno", "funcName", "pathname", "exception"]
    data = line(JSONFormatter(fields, schema="otel"), traced_error())
    assert {
        "severity_text": "ERROR", "severity_number": 17, "body": "failed", "otel.scope.name": "shop.views",
        "client.address": "203.0.113.7", "user.name": "alice", "request_id": "rid-1", "http.request.method": "POST",
        "url.path": "/pay", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
        "code.line.number": 42, "code.function.name": "pay", "code.file.path": "/app/shop/views.py",
        "exception.type": "KeyError", "exception.message": "'sku'",
    }.items() <= data.items()
    assert ISO.match(data["timestamp"])
    assert {"process.pid", "thread.id", "exception.stacktrace"} <= set(data)


def test_otel_severity_numbers():
    """The standard levels map to the first number of their range; levels between step up."""
    assert [1, 5, 9, 13, 17, 21, 10, 24] == [severity_number(n) for n in (5, 10, 20, 30, 40, 50, 21, 99)]


def test_gcp_names_with_trace_resource_and_http_request():
    """Cloud Logging: severity, time, message, the trace as a resource name, httpRequest, sourceLocation."""
    fields = ["time", "level", "message", "logger", *CTXLOG_FIELDS, "lineno", "funcName", "pathname", "exception"]
    data = line(JSONFormatter(fields, schema="gcp", gcp_project="shop-prod"), traced_error())
    assert {
        "severity": "ERROR", "message": "failed", "user": "alice", "request_id": "rid-1",
        "logging.googleapis.com/trace": "projects/shop-prod/traces/4bf92f3577b34da6a3ce929d0e0e4736",
        "logging.googleapis.com/spanId": "00f067aa0ba902b7",
        "httpRequest": {"remoteIp": "203.0.113.7", "requestMethod": "POST", "requestUrl": "/pay"},
        "logging.googleapis.com/sourceLocation": {"line": 42, "function": "pay", "file": "/app/shop/views.py"},
    }.items() <= data.items()
    assert data["stack_trace"].endswith("KeyError: 'sku'")
    assert ISO.match(data["time"])
    assert ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "DEFAULT"] == [
        line(JSONFormatter(["level"], schema="gcp"), record(level=n))["severity"] for n in (10, 20, 30, 40, 50, 5)
    ]


# -- the two encoders and hostile values --------------------------------------------------------

HOSTILE = [
    "line\nbreak", "cr\rlf\r\n", '"},{"forged":"yes', "\\", "\x1b[2J\x00\x7f\x85\x9b", "\u2028\u2029\u202e\u2066",
    "\ud800 lone", "\udfff", "é€😀", "x" * 200_000, "\x0b\x0c\x1c\x1d\x1e",
]


@pytest.mark.parametrize("use_orjson", [True, False], ids=["orjson", "json"])
def test_hostile_values_never_break_one_object_per_line(tmp_path, use_orjson):
    """Through a real FileHandler: every record is one line that json.loads gives back intact, whatever it holds."""
    path = tmp_path / "app.jsonl"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JSONFormatter(use_orjson=use_orjson))
    handler.addFilter(ctxlog.ContextFilter())
    logger = logging.getLogger(f"test_jsonformat.hostile.{use_orjson}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for value in HOSTILE:
            with ctxlog.scope(user=value, path=value):
                logger.warning("search for %s", value, extra={"q": value, "nested": {"k": [value]}})
            try:
                raise ValueError(value)
            except ValueError:
                logger.exception(value)
    finally:
        handler.close()
        logger.removeHandler(handler)
    lines = path.read_bytes().split(b"\n")
    assert b"" == lines.pop()
    assert 2 * len(HOSTILE) == len(lines)
    assert len(lines) == len(path.read_text(encoding="utf-8").splitlines())  # no U+2028, NEL or FS raw
    for i, raw in enumerate(lines):
        data = json.loads(raw)
        value = HOSTILE[i // 2]
        if i % 2 == 0:
            assert (f"search for {value}", value, value, {"k": [value]}) == (data["message"], data["user"], data["q"], data["nested"])
        else:
            assert (value, "ValueError") == (data["message"], data["exception_type"])


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(message=st.text(), extra=st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), values, max_size=5), schema=st.sampled_from([None, "ecs", "otel", "gcp"]))
def test_orjson_and_json_give_the_same_bytes(message, extra, schema):
    """Any message and extras: both encoders write the same line, one line, valid JSON."""
    rec = record(message, None, **REQUEST, **{k: v for k, v in extra.items() if k not in RESERVED and k not in REQUEST})
    text = both(rec, schema=schema)
    assert 1 == len(text.splitlines())
    json.loads(text)


def test_floats_orjson_writes_otherwise_are_written_the_json_way():
    """Floats below 1e-4 (1.5e-05, 1e-07), huge ints and lone surrogates: same bytes through either encoder."""
    text = both(record(tiny=1.5e-05, small=-1e-07, big=2**64, sur="\ud83d", huge=1e300))
    assert '"tiny":1.5e-05,"small":-1e-07,"big":"18446744073709551616","sur":"\\ud83d","huge":1e+300' in text
    assert '"rate":2e-05' in both(record(), static={"rate": 2e-05})


def test_behind_nonblocking_a_line_keeps_its_fields_typed_extras_and_traceback(tmp_path):
    """Through ctxlog.nonblocking() (records copied to cross the queue): the same keys and values."""
    path = tmp_path / "queued.jsonl"
    target = logging.FileHandler(path, encoding="utf-8")
    target.setFormatter(JSONFormatter())
    handler = ctxlog.nonblocking([target])
    logger = logging.getLogger("test_jsonformat.queued")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        with ctxlog.scope(ip="192.0.2.1", user="bob"):
            logger.info("paid %s", 5, extra={"n": 3, "tags": {"a"}, "ratio": 0.5})
            try:
                raise ValueError("declined\n")
            except ValueError:
                logger.exception("failed")
    finally:
        handler.close()
        target.close()
        logger.removeHandler(handler)
    first, second = (json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines())
    assert {"message": "paid 5", "ip": "192.0.2.1", "user": "bob", "n": 3, "tags": "{'a'}", "ratio": 0.5}.items() <= first.items()
    assert ("failed", "bob") == (second["message"], second["user"])
    assert second["exception"].endswith("ValueError: declined\n")
