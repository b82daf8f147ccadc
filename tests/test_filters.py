"""ContextFilter: the fields on every record a handler sees."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager

import pytest

import ctxlog
import ctxlog.testing
from ctxlog.context import STAMPED

FIELDS = ("ip", "user", "request_id", "method", "path")


def _in_request(**fields: object) -> AbstractContextManager[dict[str, object]]:
    base = {"ip": "203.0.113.7", "user": "alice", "request_id": "rid-1", "path": "/p"}
    return ctxlog.testing.request(**{**base, **fields})


def test_fields_are_dash_outside_a_request(capture):
    """Outside a request every standard field is '-', so a %(ip)s format never fails."""
    logging.getLogger("app").info("hello")

    assert ["- - - - - hello"] == capture.lines


def test_fields_come_from_the_request(capture):
    """Inside a request the record carries the request's fields."""
    with _in_request():
        logging.getLogger("app").info("hello")

    assert ["203.0.113.7 alice rid-1 GET /p hello"] == capture.lines


def test_records_of_child_and_third_party_loggers_get_fields(capture):
    """A filter on the handler sees records of every logger that propagates to it."""
    with _in_request():
        logging.getLogger("app.child.grandchild").info("a")
        logging.getLogger("uvicorn.error").info("b")
        logging.getLogger().info("c")

    assert 3 == len(capture.records)
    assert all(r.user == "alice" and r.request_id == "rid-1" for r in capture.records)


def test_bound_and_scoped_fields_are_added(capture):
    """Fields bound or scoped appear on records as attributes."""
    ctxlog.bind(tenant="acme")
    with ctxlog.scope(job="nightly"):
        logging.getLogger("app").info("x")

    record = capture.records[0]
    assert ("acme", "nightly") == (record.tenant, record.job)


def test_context_is_read_when_the_record_is_made(capture):
    """The same filter gives each record the context of the moment it was logged."""
    log = logging.getLogger("app")
    with _in_request(user="alice"):
        log.info("one")
    with _in_request(user="bob"):
        log.info("two")

    assert ["alice", "bob"] == [r.user for r in capture.records]


def test_filter_never_overwrites_existing_attributes(capture):
    """A caller's extra= for a context field is kept."""
    with _in_request():
        ctxlog.bind(tenant="acme")
        logging.getLogger("app").info("x", extra={"user": "explicit", "tenant": "t2"})

    record = capture.records[0]
    assert ("explicit", "t2", "rid-1") == (record.user, record.tenant, record.request_id)


def test_filter_always_lets_the_record_through():
    """filter() returns True (it enriches, it never drops)."""
    record = logging.makeLogRecord({"msg": "x"})

    assert ctxlog.ContextFilter().filter(record) is True
    assert all(getattr(record, name) == "-" for name in FIELDS)


def test_defaults_fill_missing_and_placeholder_fields():
    """defaults= gives values for fields the context lacks, and replaces '-'."""
    flt = ctxlog.ContextFilter(defaults={"tenant": "none", "user": "anonymous"})
    outside = logging.makeLogRecord({})
    flt.filter(outside)
    with _in_request(user="alice"):
        inside = logging.makeLogRecord({})
        flt.filter(inside)

    assert ("none", "anonymous", "-") == (outside.tenant, outside.user, outside.ip)
    assert ("none", "alice") == (inside.tenant, inside.user)


def test_defaults_with_logrecord_names_are_rejected():
    """A default named like a LogRecord attribute fails at construction."""
    with pytest.raises(ValueError, match="msg"):
        ctxlog.ContextFilter(defaults={"msg": "x"})


def test_filter_in_dictconfig():
    """The filter can be configured by name from dictConfig, with defaults."""
    import logging.config

    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"ctx": {"()": "ctxlog.ContextFilter", "defaults": {"tenant": "-"}}},
            "handlers": {"null": {"class": "logging.NullHandler", "filters": ["ctx"]}},
            "loggers": {"cfgtest": {"handlers": ["null"], "propagate": False}},
        }
    )
    handler = logging.getLogger("cfgtest").handlers[0]
    record = logging.makeLogRecord({})
    handler.filter(record)

    assert ("-", "-") == (record.tenant, record.ip)


def test_defaults_also_apply_to_records_from_get_logger(capture):
    """A record from get_logger() already holds '-'; the filter's defaults still replace it."""
    flt = ctxlog.ContextFilter(defaults={"user": "anonymous"})
    record = ctxlog.get_logger("app")  # noqa: F841 - made like a user would
    seen = []

    class Keep(logging.Handler):
        def emit(self, rec):
            seen.append(rec.user)

    handler = Keep()
    handler.addFilter(flt)
    logger = logging.getLogger("defaults.adapter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        ctxlog.get_logger("defaults.adapter").info("x")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    assert ["anonymous"] == seen


# --- one stamp per record ----------------------------------------------------------------------


def test_a_record_is_stamped_once_and_keeps_its_first_context():
    """A record stamped in a request and filtered again later keeps the request's fields."""
    record = logging.makeLogRecord({"msg": "hi"})
    with ctxlog.testing.request(user="alice", request_id="r-1"), ctxlog.scope(job="a"):
        ctxlog.ContextFilter().filter(record)
    with ctxlog.testing.request(user="bob", request_id="r-2"), ctxlog.scope(job="b", late=1):
        ctxlog.ContextFilter().filter(record)

    assert ("alice", "r-1", "a", False) == (
        record.user,
        record.request_id,
        record.job,
        hasattr(record, "late"),
    )


def test_defaults_still_fill_a_stamped_record():
    """A filter's defaults fill a record another filter stamped before."""
    record = logging.makeLogRecord({"msg": "hi"})
    ctxlog.ContextFilter().filter(record)
    ctxlog.ContextFilter(defaults={"user": "nobody", "tenant": "none"}).filter(record)

    assert ("nobody", "none", "-") == (record.user, record.tenant, record.ip)


def test_the_stamp_mark_cannot_be_bound():
    """bind() refuses the name of the stamp's mark, as it refuses LogRecord attributes."""
    with pytest.raises(ValueError, match="reserved"):
        ctxlog.bind(**{STAMPED: "x"})


def test_the_stamp_mark_never_reaches_a_frame_or_a_line():
    """Through get_logger(), a QueueHandler and a frame, no output carries the mark."""
    import json
    import queue

    from ctxlog.queue import QueueHandler
    from ctxlog.wire import encode_body

    records: list[logging.LogRecord] = []
    handler = QueueHandler(queue.Queue())
    handler.enqueue = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("stamp.mark")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with ctxlog.testing.request(user="alice"):
            ctxlog.get_logger("stamp.mark").info("paid")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    body = json.loads(encode_body(records[0]))
    line = ctxlog.Formatter("%(user)s %(message)s").format(records[0])

    assert "alice" == body["user"]
    assert STAMPED not in json.dumps(body)
    assert STAMPED not in line
