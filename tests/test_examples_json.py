"""Run examples/json_logs.py and examples/other_formatters.py as a user would, and read what they print."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REQUEST = {
    "ip": "203.0.113.7",
    "user": "alice",
    "request_id": "r-1",
    "method": "POST",
    "path": "/pay",
}
SECRETS = ("wonderland", "tok_4242", "s3cr3t-gw-pass")


def run(script: str, *args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """Run the example ``script`` with warnings as errors, after ``prelude``; return the result."""
    code = f"{prelude}\nimport runpy, sys\nsys.argv = {[script, *args]!r}\nrunpy.run_path(sys.argv[0], run_name='__main__')"
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=EXAMPLES,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def json_lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The example's standard output, each line a JSON object; it exited 0 with no secret in it."""
    assert 0 == result.returncode, result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_json_logs_prints_ecs_lines_with_fields_extras_and_a_masked_error():
    """json_logs.py: one ECS object a line, request fields nested, bound and extra values, secrets ***."""
    result = run("json_logs.py")
    assert "" == result.stderr
    login, login_access, paid, paid_access, failed, failed_access = json_lines(result)
    assert {
        "log.level": "info",
        "message": "login",
        "log": {"logger": "shop"},
        "service": {"name": "shop"},
        "client": {"ip": "203.0.113.7"},
        "user": {"name": "alice"},
        "url": {"path": "/login"},
        "password": "***",
        "remember_me": True,
    }.items() <= login.items(), login
    assert ("paid 12 EUR with token=***", 12, 7) == (
        paid["message"],
        paid["amount"],
        paid["order_id"],
    )
    assert ({"name": "bob"}, {"ip": "198.51.100.4"}) == (failed["user"], failed["client"])
    assert ("error", 8) == (failed["log.level"], failed["order_id"])
    error = failed["error"]
    assert error["type"].endswith("GatewayError")
    assert "https://shop:***@pay.example.com/refunds answered 503 for order 8" == error["message"]
    assert error["stack_trace"].startswith("Traceback (most recent call last):")
    assert error["stack_trace"].endswith(error["message"])
    for line, access, status in (
        (login, login_access, 200),
        (paid, paid_access, 200),
        (failed, failed_access, 502),
    ):
        assert "ctxlog.access" == access["log"]["logger"]
        assert status == access["status"]
        assert re.fullmatch("[0-9a-f]{32}", line["http"]["request"]["id"])
        assert (line["http"], line["user"]) == (access["http"], access["user"])
        assert {"@timestamp", "ecs.version"} <= line.keys()
    assert len({line["http"]["request"]["id"] for line in (login, paid, failed)}) == 3


def test_other_formatters_shows_the_fields_through_each_tool():
    """other_formatters.py: python-json-logger, structlog, loguru and OTel each carry the request's fields."""
    result = run("other_formatters.py")
    assert "" == result.stderr
    json_logger, structlog_event, structlog_record, loguru, otel = json_lines(result)
    fields = {**REQUEST, "order_id": 7}
    assert {
        **fields,
        "message": "paid",
        "amount": 12,
        "card_token": "***",
    }.items() <= json_logger.items()
    assert {**REQUEST, "event": "cart viewed", "items": 3}.items() <= structlog_event.items()
    assert {**fields, "event": "paid", "card_token": "***"}.items() <= structlog_record.items()
    # docs/other-formatters.md: python-json-logger leaves ctxlog's marks out, structlog too.
    assert [] == [key for key in {**json_logger, **structlog_record} if key.startswith("_")]
    assert fields == loguru["record"]["extra"]
    assert "paid 12 EUR" == loguru["record"]["message"]
    assert "paid" == otel["body"]
    assert {**fields, "card_token": "***", "_ctxlog_stamped": True}.items() <= otel[
        "attributes"
    ].items()
    assert otel["attributes"]["_ctxlog_redacted"]  # the mark docs/other-formatters.md names
    assert re.fullmatch("[0-9a-f]{32}", otel["trace_id"])
    assert otel["trace_id"] != "0" * 32


def test_other_formatters_runs_one_part_and_refuses_an_unknown_one():
    """Naming a part runs that part only; an unknown name exits with the names to choose from."""
    [line] = json_lines(run("other_formatters.py", "loguru"))
    assert "r-1" == line["record"]["extra"]["request_id"]
    result = run("other_formatters.py", "logbook")
    assert 1 == result.returncode
    assert (
        "unknown part 'logbook': choose from json-logger, structlog, loguru, otel" in result.stderr
    )


def test_other_formatters_skips_a_part_whose_package_is_missing():
    """Without a tool's package its part says what to install and the others still run."""
    hidden = "import sys\nfor name in ('pythonjsonlogger', 'loguru', 'opentelemetry'):\n    sys.modules[name] = None"
    result = run("other_formatters.py", prelude=hidden)
    assert [
        "json-logger: skipped, python-json-logger is not installed (pip install python-json-logger)",
        "loguru: skipped, loguru is not installed (pip install loguru)",
        "otel: skipped, opentelemetry-sdk is not installed (pip install opentelemetry-sdk)",
    ] == result.stderr.splitlines()
    assert ["cart viewed", "paid"] == [line["event"] for line in json_lines(result)]
