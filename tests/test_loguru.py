"""ctxlog.loguru: the patcher puts ctxlog's fields into loguru's extra, seen by real sinks."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import ctxlog
import ctxlog.testing

loguru = pytest.importorskip("loguru") if os.environ.get("CI") != "true" else __import__("loguru")

import ctxlog.loguru  # noqa: E402 - after the importorskip, as the test needs loguru

FORMAT = "{extra[ip]} {extra[user]} {extra[request_id]} {extra[path]} {message}"


def _no_patch(record):
    """Patch nothing: what puts loguru's global logger back as the next test expects it."""


@pytest.fixture
def logger() -> Iterator[tuple[object, list[io.StringIO]]]:
    """loguru's logger, patched by ctxlog, with its default sink removed; sinks added by tests."""
    log = loguru.logger
    log.remove()
    log.configure(patcher=ctxlog.loguru.patch)
    try:
        yield log
    finally:
        log.remove()
        log.configure(patcher=_no_patch)  # patcher=None would mean "leave it as it is"


def test_import_ctxlog_does_not_load_the_glue():
    """The loguru glue is loaded only when imported."""
    code = "import ctxlog, sys; print('ctxlog.loguru' in sys.modules, 'loguru' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "False False" == result.stdout.strip()


def test_text_sink_format_reads_the_request_fields(logger):
    """A sink formatted with {extra[request_id]} writes the request's fields."""
    out = io.StringIO()
    logger.add(out, format=FORMAT)
    with ctxlog.testing.request(ip="203.0.113.7", user="alice", request_id="r-1", path="/pay"):
        logger.info("paid")
    logger.info("outside")
    assert ["203.0.113.7 alice r-1 /pay paid", "- - - - outside"] == out.getvalue().splitlines()


def test_extra_keys_are_never_replaced_and_bound_fields_arrive(logger):
    """loguru's bind() wins over ctxlog's field; ctxlog.bind() fields are added to extra."""
    out = io.StringIO()
    logger.add(out, format="{extra[user]} {extra[order]} {message}")
    with ctxlog.testing.request(user="alice"):
        ctxlog.bind(order=42)
        logger.info("own")
        logger.bind(user="bob").info("bound")
    assert ["alice 42 own", "bob 42 bound"] == out.getvalue().splitlines()


def test_logger_patch_works_too():
    """logger.patch(ctxlog.loguru.patch) patches one logger without configure()."""
    log = loguru.logger
    log.remove()
    out = io.StringIO()
    sink = log.add(out, format="{extra[request_id]} {message}")
    try:
        with ctxlog.testing.request(request_id="r-9"):
            log.patch(ctxlog.loguru.patch).info("patched")
    finally:
        log.remove(sink)
    assert ["r-9 patched"] == out.getvalue().splitlines()


def test_serialized_sink_holds_the_fields_and_one_line_per_record(logger):
    """serialize=True writes one JSON line per record, a line break in a message included."""
    out = io.StringIO()
    logger.add(out, serialize=True)
    with ctxlog.testing.request(user="alice", request_id="r-1"):
        logger.info("paid\nINFO FORGED admin logged in")
    [line] = out.getvalue().splitlines()
    record = json.loads(line)["record"]
    assert ("alice", "r-1") == (record["extra"]["user"], record["extra"]["request_id"])
    assert "paid\nINFO FORGED admin logged in" == record["message"]


def test_text_sink_writes_a_line_break_of_the_message_as_is(logger):
    """What the docs warn of: a text sink writes a message's line break raw (a forged line)."""
    out = io.StringIO()
    logger.add(out, format="{extra[user]} {message}")
    with ctxlog.testing.request(user="alice"):
        logger.info("paid\nbob admin logged in")
    assert ["alice paid", "bob admin logged in"] == out.getvalue().splitlines()


def test_request_values_stay_escaped_in_a_real_starlette_app(logger):
    """Through ASGIMiddleware and Starlette, the request's fields reach the sink escaped."""
    out = io.StringIO()
    logger.add(out, format=FORMAT)

    async def view(request):
        logger.info("paid")
        return PlainTextResponse("ok")

    app = ctxlog.ASGIMiddleware(Starlette(routes=[Route("/pay", view)]))
    response = TestClient(app, client=("203.0.113.9", 5000)).get(
        "/pay", headers={"X-Request-ID": "req-abc", "Authorization": "x"}
    )
    assert 200 == response.status_code
    assert ["203.0.113.9 - req-abc /pay paid"] == out.getvalue().splitlines()

    async def any_path(scope, receive, send):
        logger.info("seen")
        await PlainTextResponse("ok")(scope, receive, send)

    out.seek(0)
    out.truncate()
    assert 200 == TestClient(ctxlog.ASGIMiddleware(any_path)).get("/a%0AFORGED").status_code
    [line] = out.getvalue().splitlines()
    assert line.endswith(" /a\\nFORGED seen"), line


def test_contextualize_wins_and_enqueued_sinks_get_the_logging_threads_fields(logger):
    """contextualize() keys are kept; with enqueue=True the fields are those of the log call."""
    out = io.StringIO()
    logger.add(out, format="{extra[user]} {extra[request_id]} {message}", enqueue=True)
    with ctxlog.testing.request(user="alice", request_id="r-e"):
        logger.info("queued")
        with logger.contextualize(user="job"):
            logger.info("contextualized")
    logger.complete()
    assert ["alice r-e queued", "job r-e contextualized"] == out.getvalue().splitlines()


def test_redactor_patcher_adds_the_fields_and_masks_message_and_extra(logger):
    """ctxlog.loguru.Redactor: the fields as patch() adds them, then message and extra masked."""
    out = io.StringIO()
    redact = ctxlog.RedactFilter()
    logger.configure(patcher=ctxlog.loguru.Redactor(redact))
    logger.add(out, serialize=True)
    text = io.StringIO()
    logger.add(text, format="{extra[user]} {extra[api_key]} {message}")
    with ctxlog.testing.request(user="alice", request_id="r-1"):
        ctxlog.bind(api_key="sk_live_BOUNDSECRET")
        logger.bind(form={"password": "hunter2"}).info("login password={}", "hunter2")
        logger.info("retry password=hunter2")  # the secret in loguru's template too
    assert "SECRET" not in out.getvalue() and "hunter2" not in out.getvalue()
    record, retry = (json.loads(line)["record"] for line in out.getvalue().splitlines())
    assert "login password=***" == record["message"]
    assert "retry password=***" == retry.get("template", retry["message"])
    assert {"user": "alice", "request_id": "r-1", "api_key": "***", "form": {"password": "***"}
            }.items() <= record["extra"].items()  # fmt: skip
    assert ["alice *** login password=***", "alice *** retry password=***"] == (
        text.getvalue().splitlines()
    )
    assert 2 == redact.stats()["records_redacted"]
