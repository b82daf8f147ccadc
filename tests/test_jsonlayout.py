"""JSONFormatter's keys: clashes refused at construction, static objects per line, extras never lost."""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
import threading
from typing import Any

import pytest

from ctxlog.record.jsonformat import JSONFormatter

REQUEST = {"ip": "198.51.100.1", "request_id": "alice-req", "method": "POST", "path": "/pay"}


def record(msg: str = "paid", exc_info: Any = None, **attrs: Any) -> logging.LogRecord:
    made = logging.LogRecord(
        "shop.views", logging.INFO, "/app/shop/views.py", 42, msg, (), exc_info, func="pay"
    )
    made.__dict__.update(attrs)
    return made


def line(formatter: JSONFormatter, rec: logging.LogRecord) -> dict[str, Any]:
    data = json.loads(formatter.format(rec))
    assert isinstance(data, dict)
    return data


def failed(**attrs: Any) -> logging.LogRecord:
    try:
        raise ValueError("declined")
    except ValueError:
        return record("failed", sys.exc_info(), **attrs)


# -- static objects: each line its own copy ------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "static", "where", "request_keys"),
    [
        (
            "gcp",
            {"httpRequest": {"protocol": "HTTP/1.1"}},
            "httpRequest",
            {"remoteIp", "requestMethod", "requestUrl"},
        ),
        ("ecs", {"http": {"version": "1.1"}}, "http", {"request"}),
        ("ecs", {"http": {"version": "1.1", "request": {"referrer": "-"}}}, "http", {"request"}),
    ],
)
def test_a_static_object_a_field_is_written_into_never_carries_one_line_to_the_next(
    schema, static, where, request_keys
):
    """Alice's request fills httpRequest/http; the next record, with no request, has the static value only."""
    given = copy.deepcopy(static)
    formatter = JSONFormatter(schema=schema, static=static)
    first = line(formatter, record("alice's request", **REQUEST))
    second = line(formatter, record("bob's record (no request)"))
    assert request_keys <= set(first[where])
    assert static[where] == second[where]
    assert "198.51.100.1" not in json.dumps(second)
    assert given == static  # the caller's mapping is never changed either


def test_static_objects_under_two_threads_never_share_a_line():
    """Two threads share one formatter: no line without a request ever holds the other thread's request."""
    formatter = JSONFormatter(schema="gcp", static={"httpRequest": {"protocol": "HTTP/1.1"}})
    start = threading.Barrier(2)
    lines: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}

    def run(kind: str, attrs: dict[str, Any]) -> None:
        start.wait()
        lines[kind].extend(line(formatter, record(kind, **attrs)) for _ in range(3000))

    threads = [
        threading.Thread(target=run, args=("with", REQUEST)),
        threading.Thread(target=run, args=("without", {})),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all({"protocol": "HTTP/1.1"} == data["httpRequest"] for data in lines["without"])
    assert all("198.51.100.1" == data["httpRequest"]["remoteIp"] for data in lines["with"])


def test_a_static_object_no_field_writes_into_is_not_copied():
    """A flat static, or an object no field goes into, costs nothing per line."""
    assert () == JSONFormatter(static={"service": "shop", "app": {"v": 1}})._static_fresh
    assert () == JSONFormatter(schema="gcp", static={"labels": {"team": "pay"}})._static_fresh


def test_static_objects_and_dotted_static_keys_merge_with_the_head_and_each_other():
    """ECS: a static 'log' object keeps log.logger beside it; 'service' and 'service.version' give one object."""
    static = {
        "log": {"syslog": {"appname": "shop"}},
        "service": {"name": "shop"},
        "service.version": "1.2",
    }
    formatter = JSONFormatter(schema="ecs", static=static)
    for _ in range(2):
        data = line(formatter, record())
        assert {"logger": "shop.views", "syslog": {"appname": "shop"}} == data["log"]
        assert {"name": "shop", "version": "1.2"} == data["service"]
    assert {"name": "shop"} == static["service"]


# -- clashes refused at construction -------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (
            {"schema": "ecs", "static": {"log": "x"}},
            (
                "static= key 'log' and field 'level' would be written as 'log' and 'log.level', inside it: "
                "one would replace the other; choose another static= key, or rename= the field"
            ),
        ),
        (
            {
                "schema": "ecs",
                "fields": ["message", "request_id", "order_id"],
                "rename": {"order_id": "http"},
            },
            "field 'order_id' and field 'request_id' would be written as 'http' and 'http.request.id', inside it",
        ),
        (
            {"rename": {"a": "k", "b": "k"}},
            "extra field 'a' (rename=) and extra field 'b' (rename=) would both be written as 'k'",
        ),
        (
            {"rename": {"order_id": "message"}},
            (
                "field 'message' and extra field 'order_id' (rename=) would both be written as 'message': "
                "one would replace the other; rename= one of them"
            ),
        ),
        (
            {"rename": {"order_id": "exception_type"}},
            "field 'exception' and extra field 'order_id' (rename=)",
        ),
        (
            {"schema": "ecs", "rename": {"order_id": "client.ip"}},
            "field 'ip' and extra field 'order_id' (rename=)",
        ),
        (
            {"schema": "ecs", "rename": {"user": "client"}},
            "field 'user' and field 'ip' would be written as 'client'",
        ),
        (
            {"schema": "gcp", "static": {"httpRequest": "x"}},
            "static= key 'httpRequest' and field 'ip'",
        ),
        (
            {"schema": "gcp", "static": {"httpRequest": {"remoteIp": "0.0.0.0"}}},
            "static= key 'httpRequest' and field 'ip' would both be written as 'httpRequest.remoteIp'",
        ),
        (
            {"schema": "ecs", "static": {"service": {"name": "a"}, "service.name": "b"}},
            (
                "static= key 'service' and static= key 'service.name' would both be written as 'service.name': "
                "one would replace the other; give static= one of them only, or other keys"
            ),
        ),
        (
            {"schema": "ecs", "static": {"service": "a", "service.name": "b"}},
            "static= key 'service' and static= key 'service.name'",
        ),
        (
            {"schema": "ecs", "static": {"ecs": "x"}},
            "static= key 'ecs' and static= key 'ecs.version'",
        ),
    ],
)
def test_keys_one_inside_another_or_twice_are_refused_naming_both(options, says):
    """Each clash that would lose a value on every line is a ValueError naming both and what to change."""
    with pytest.raises(ValueError, match=re.escape(says)):
        JSONFormatter(**options)


@pytest.mark.parametrize(
    "options",
    [
        {
            "schema": "ecs",
            "static": {"http": {"version": "1.1"}, "service.name": "a", "service.version": "1"},
        },
        {"schema": "gcp", "static": {"httpRequest": {"protocol": "HTTP/1.1"}}},
        {
            "schema": "otel",
            "static": {"service.name": "a", "service": "b"},
        },  # flat keys, as OpenTelemetry's
        {
            "schema": "ecs",
            "static": {"ecs": {"build": "x"}},
        },  # beside ecs.version, as Elasticsearch merges them
        {"rename": {"order_id": "order.id", "sku": "order_sku"}},
    ],
)
def test_keys_that_fit_together_are_accepted(options):
    """Objects that merge, dotted keys under flat schemas, distinct rename= keys: no error."""
    JSONFormatter(**options)


# -- extras: written unless the line holds their key; then merged or moved -------------------------


def test_ecs_extras_named_like_ecs_objects_are_kept_when_the_line_does_not_hold_them():
    """url, error, client, trace, span as extras on a line without exception, request or trace: kept."""
    extras = {
        "url": "https://psp.example/pay",
        "error": "timeout",
        "client": "mobile",
        "trace": "t",
        "span": "s",
        "order_id": 7,
    }
    data = line(JSONFormatter(schema="ecs"), record(**extras))
    assert extras.items() <= data.items()


def test_an_extra_whose_key_the_line_holds_is_moved_to_extra_key():
    """With an exception, extra error='timeout' cannot be error: it is written as extra_error."""
    data = line(JSONFormatter(schema="ecs"), failed(error="timeout", client="mobile", **REQUEST))
    assert ("ValueError", "timeout") == (data["error"]["type"], data["extra_error"])
    assert ({"ip": "198.51.100.1"}, "mobile") == (data["client"], data["extra_client"])


def test_an_extra_never_overwrites_a_key_of_the_line_and_is_never_lost():
    """time, a static key, the logger: the line's values stay, the extras move; an extra named extra_time keeps its key."""
    data = line(
        JSONFormatter(static={"service": "shop"}),
        record(time="forged", service="other", logger="x", extra_time="mine"),
    )
    assert ("shop", "shop.views") == (data["service"], data["logger"])
    assert {
        "extra_time": "mine",
        "extra_extra_time": "forged",
        "extra_service": "other",
        "extra_logger": "x",
    }.items() <= data.items()


def test_gcp_a_user_http_request_is_merged_with_ctxlogs():
    """The Cloud Logging idiom extra={'httpRequest': {...}}: one httpRequest; ctxlog's values kept, a differing one moved."""
    formatter = JSONFormatter(schema="gcp", static={"httpRequest": {"protocol": "HTTP/1.1"}})
    given = {
        "status": 200,
        "latency": "0.120s",
        "requestMethod": "POST",
        "requestUrl": "https://shop.example/pay",
    }
    data = line(formatter, record(httpRequest=given, **REQUEST))
    assert {
        "protocol": "HTTP/1.1",
        "remoteIp": "198.51.100.1",
        "requestMethod": "POST",
        "requestUrl": "/pay",
        "status": 200,
        "latency": "0.120s",
    } == data["httpRequest"]
    assert {"requestUrl": "https://shop.example/pay"} == data["extra_httpRequest"]
    assert {"protocol": "HTTP/1.1"} == line(formatter, record())["httpRequest"]
    assert {
        "status": 200,
        "latency": "0.120s",
        "requestMethod": "POST",
        "requestUrl": "https://shop.example/pay",
    } == given


def test_gcp_a_user_http_request_without_a_request_is_written_as_given():
    """No request in context: the user's httpRequest is the line's, whole."""
    data = line(JSONFormatter(schema="gcp"), record(httpRequest={"status": 503, "latency": "1s"}))
    assert {"status": 503, "latency": "1s"} == data["httpRequest"]
    assert "extra_httpRequest" not in data


def test_ecs_an_extra_object_named_like_an_ecs_object_is_merged():
    """extra http={'response': ...} beside ctxlog's http.request: one http object, as ecs-logging merges."""
    data = line(
        JSONFormatter(schema="ecs"),
        record(http={"response": {"status_code": 200}, "request": {"id": "other"}}, **REQUEST),
    )
    assert {
        "request": {"id": "alice-req", "method": "POST"},
        "response": {"status_code": 200},
    } == data["http"]
    assert {"request": {"id": "other"}} == data["extra_http"]


def test_an_extra_renamed_onto_another_extras_name_keeps_both():
    """rename={'a': 'b'} and an extra b: one is b, the other extra_b."""
    data = line(JSONFormatter(rename={"a": "b"}), record(a=1, b=2))
    assert {"b": 1, "extra_b": 2} == {k: data[k] for k in ("b", "extra_b")}


def test_a_shape_without_clashing_extras_takes_the_fast_path():
    """Only a record shape whose extras may meet a key of the line is merged key by key."""
    formatter = JSONFormatter()
    line(formatter, record(order_id=1))
    line(formatter, record(time="x"))
    assert [False, True] == [plan[2] for plan in formatter._shapes.values()]
