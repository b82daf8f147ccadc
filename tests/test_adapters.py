"""get_logger(): a LoggerAdapter that adds the context at each call."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager

import pytest

import ctxlog
import ctxlog.testing


class Plain(logging.Handler):
    """Keep records as they are made, with no filter of its own."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def plain():
    handler = Plain()
    logger = logging.getLogger("adapted")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


LOG = ctxlog.get_logger("adapted")  # at import time, as users do


def _in_request(user: str) -> AbstractContextManager[dict[str, object]]:
    return ctxlog.testing.request(ip="192.0.2.1", user=user, request_id=f"rid-{user}")


def test_adapter_made_before_any_request_reads_context_at_call_time(plain):
    """An adapter created at import logs the user current at each call."""
    with _in_request("alice"):
        LOG.info("one")
    with _in_request("bob"):
        LOG.info("two")

    assert [("alice", "rid-alice"), ("bob", "rid-bob")] == [
        (r.user, r.request_id) for r in plain.records
    ]


def test_fields_are_dash_outside_requests(plain):
    """Outside requests every standard field is '-' (no filter needed)."""
    LOG.warning("x")

    record = plain.records[0]
    assert ["-"] * 5 == [record.ip, record.user, record.request_id, record.method, record.path]


def test_caller_extra_is_merged_not_replaced(plain):
    """A call's own extra= is kept beside the context (the stdlib adapter drops it on 3.11/3.12)."""
    with _in_request("alice"):
        ctxlog.bind(tenant="acme")
        LOG.info("x", extra={"order_id": 7, "user": "override"})

    record = plain.records[0]
    assert (7, "override", "acme", "rid-alice") == (
        record.order_id,
        record.user,
        record.tenant,
        record.request_id,
    )


def test_extra_clashing_with_record_attributes_is_renamed(plain):
    """extra={'name': ..., 'message': ...} is logged as extra_name/extra_message, never KeyError."""
    LOG.info("x", extra={"name": "n", "message": "m", "asctime": "t"})

    record = plain.records[0]
    assert ("n", "m", "t", "adapted") == (
        record.extra_name,
        record.extra_message,
        record.extra_asctime,
        record.name,
    )


def test_caller_is_the_call_site(plain):
    """funcName and lineno name the code that called the adapter, not ctxlog."""

    def view():
        LOG.info("here")
        return view.__code__.co_firstlineno + 1

    line = view()
    record = plain.records[0]
    assert ("view", line, __file__) == (record.funcName, record.lineno, record.pathname)


@pytest.mark.parametrize(
    "method", ["debug", "info", "warning", "error", "exception", "critical", "fatal"]
)
def test_every_level_method_names_the_caller(plain, method):
    """Each level method reports the caller's function."""
    getattr(LOG, method)("m")

    assert "test_every_level_method_names_the_caller" == plain.records[0].funcName


def test_stacklevel_is_honoured(plain):
    """stacklevel=2 names the caller's caller, as with a plain logger."""

    def helper():
        LOG.info("from helper", stacklevel=2)

    def outer():
        helper()

    outer()

    assert "outer" == plain.records[0].funcName


def test_exception_carries_the_traceback(plain):
    """exception() attaches exc_info like Logger.exception."""
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        LOG.exception("boom %s", 1)

    record = plain.records[0]
    assert (logging.ERROR, ZeroDivisionError, "boom 1") == (
        record.levelno,
        record.exc_info[0],
        record.getMessage(),
    )


def test_levels_are_respected(plain):
    """Records below the logger's level are not made."""
    logging.getLogger("adapted").setLevel(logging.WARNING)
    LOG.info("dropped")
    LOG.log(logging.ERROR, "kept %d", 1)

    assert ["kept 1"] == [r.getMessage() for r in plain.records]


def test_log_with_a_non_integer_level_raises_like_the_stdlib():
    """LoggerAdapter.log('INFO', ...) is a TypeError, as Logger.log."""
    with pytest.raises(TypeError, match="integer"):
        LOG.log("INFO", "x")  # type: ignore[arg-type]


def test_static_extra_of_the_adapter(plain):
    """ContextAdapter(logger, extra) adds fixed fields; the context and a call's extra win over them."""
    adapter = ctxlog.ContextAdapter(logging.getLogger("adapted"), {"component": "billing", "user": "static", "tier": "a"})
    with _in_request("alice"):
        adapter.info("x", extra={"tier": "b"})

    record = plain.records[0]
    assert ("billing", "alice", "b") == (record.component, record.user, record.tier)


def test_static_extra_with_record_attribute_names_is_rejected():
    """A fixed extra named like a LogRecord attribute fails at construction, not at log time."""
    with pytest.raises(ValueError, match="name"):
        ctxlog.ContextAdapter(logging.getLogger("adapted"), {"name": "x"})


def test_stdlib_process_path_also_merges(plain):
    """process() (used by anything calling the LoggerAdapter machinery) merges the context."""
    with _in_request("alice"):
        msg, kwargs = LOG.process("m", {"extra": {"k": 1}})

    assert ("alice", 1) == (kwargs["extra"]["user"], kwargs["extra"]["k"])


def test_adapter_and_filter_together_do_not_conflict(capture):
    """Records from the adapter pass a ContextFilter unchanged."""
    with _in_request("alice"):
        ctxlog.get_logger("other").info("hi")

    assert ["192.0.2.1 alice rid-alice GET / hi"] == capture.lines
