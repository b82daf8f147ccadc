"""ctxlog.testing: the helpers users' test suites (and ours) use instead of private names."""

from __future__ import annotations

import asyncio
import logging

import pytest

import ctxlog
import ctxlog.testing


def test_request_gives_records_the_fields(capture):
    """Records logged inside request() carry its fields and what the block binds."""
    log = ctxlog.get_logger("t")
    with ctxlog.testing.request(ip="203.0.113.7", user="alice", request_id="r-1", tenant="a"):
        ctxlog.bind(order=7)
        log.info("paid")
    record = capture.records[-1]
    assert ("203.0.113.7", "alice", "r-1", "a", 7) == (
        record.ip,
        record.user,
        record.request_id,
        record.tenant,
        record.order,
    )


def test_request_is_undone_after_the_block(capture):
    """After the block the context is as before: records show '-' again."""
    with ctxlog.testing.request(user="alice"):
        pass
    logging.getLogger("t").warning("after")
    assert ("-", {}) == (capture.records[-1].user, ctxlog.get_context())


def test_request_without_an_id_gets_a_new_one():
    """Each request() without request_id= gets a fresh 32-hex-digit id."""
    with ctxlog.testing.request() as first, ctxlog.testing.request() as second:
        pass
    assert first["request_id"] != second["request_id"]
    assert 32 == len(first["request_id"])


def test_request_reaches_tasks_started_inside():
    """An asyncio task started inside the block sees the request, as a view's task does."""

    async def main() -> str:
        with ctxlog.testing.request(user="bob"):
            return await asyncio.create_task(asyncio.sleep(0, ctxlog.get_context()["user"]))

    assert "bob" == asyncio.run(main())


def test_request_refuses_reserved_names():
    """A bound name that is a LogRecord attribute is refused, as bind() refuses it."""
    with pytest.raises(ValueError, match="'msg' is reserved"), ctxlog.testing.request(msg="x"):
        pass


def test_reset_forgets_binds_and_trace_context():
    """reset() leaves no bound field and switches trace context off again."""
    ctxlog.bind(job="nightly")
    ctxlog.ASGIMiddleware(lambda *a: None, trace_context=True)
    ctxlog.testing.reset()
    record = logging.makeLogRecord({})
    ctxlog.ContextFilter().filter(record)
    assert ({}, False) == (ctxlog.get_context(), hasattr(record, "trace_id"))


def test_reset_uninstalls_the_celery_glue_only_if_loaded(monkeypatch):
    """reset() calls ctxlog.celery.uninstall() when the module is loaded, and imports nothing."""
    import sys
    import types

    calls = []
    glue = types.ModuleType("ctxlog.celery")
    glue.uninstall = lambda: calls.append("uninstall")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ctxlog.celery", glue)
    ctxlog.testing.reset()
    monkeypatch.delitem(sys.modules, "ctxlog.celery")
    ctxlog.testing.reset()

    assert ["uninstall"] == calls
