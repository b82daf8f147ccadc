"""``ctxlog receive --format json [--schema ...]``: the real command, real senders, JSON lines out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_receiver import ROOT, Command, wait_for

SENDER = r"""
import logging, sys
import ctxlog
from ctxlog.handlers import JSONSocketHandler
port, count = map(int, sys.argv[1:])
handler = JSONSocketHandler("127.0.0.1", port)
handler.addFilter(ctxlog.ContextFilter())
logger = logging.getLogger("shop.checkout")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.propagate = False
hostile = 'x\n{"forged": true}\r\n\u2028\x1b[2J\ud800"'
for seq in range(count):
    with ctxlog.scope(ip="10.0.0.%d" % (seq % 250), user=hostile if seq % 2 else "alice", request_id="r-%d" % seq, method="POST", path="/pay"):
        logger.info("order %d %s", seq, hostile, extra={"seq": seq, "note": hostile})
try:
    raise KeyError(hostile)
except KeyError:
    logger.exception("failed")
handler.close()
sys.exit(1 if handler.dropped else 0)
"""
HOSTILE = 'x\n{"forged": true}\r\n\u2028\x1b[2J\ud800"'


def run_sender(port: int, count: int) -> int:
    """Send ``count`` records and one exception from a separate process; return its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SENDER, str(port), str(count)], env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert 0 == proc.wait(60)
    return proc.pid


def received(tmp_path: Path, count: int, *options: str) -> tuple[list[dict[str, Any]], int]:
    """Run the command with ``options``, a real sender of ``count`` + 1 records; return the JSON lines."""
    out = tmp_path / "received.jsonl"
    command = Command(tmp_path, "--file", str(out), "--format", "json", *options)
    try:
        command.started()
        pid = run_sender(command.port, count)
        assert wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") >= count + 1, 30)
        summary = command.stop()
    finally:
        command.kill()
    raw = out.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert count + 1 == len(lines) == summary["received"]
    assert len(lines) == len(out.read_text(encoding="utf-8").splitlines())
    return [json.loads(line) for line in lines], pid


def test_json_lines_one_per_record_with_fields_extras_peer_and_pid(tmp_path):
    """--format json: each received record is one JSON object with its fields intact, hostile values included."""
    count = 200
    records, pid = received(tmp_path, count)
    for seq, data in enumerate(records[:count]):
        assert {
            "level": "INFO", "logger": "shop.checkout", "message": f"order {seq} {HOSTILE}", "ip": f"10.0.0.{seq % 250}",
            "user": HOSTILE if seq % 2 else "alice", "request_id": f"r-{seq}", "method": "POST", "path": "/pay",
            "seq": seq, "note": HOSTILE, "process": pid,
        }.items() <= data.items(), data
        assert data["peer"].startswith("127.0.0.1:")
        assert data["time"].endswith("Z")
    failed = records[-1]
    assert ("ERROR", "failed") == (failed["level"], failed["message"])
    assert failed["exception"].startswith("Traceback (most recent call last):")
    assert "_ctxlog_stamped" not in json.dumps(records)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ("ecs", {"log.level": "info", "client": {"ip": "10.0.0.1"}, "http": {"request": {"id": "r-1", "method": "POST"}}, "url": {"path": "/pay"}}),
        ("otel", {"severity_text": "INFO", "severity_number": 9, "client.address": "10.0.0.1", "http.request.method": "POST", "url.path": "/pay"}),
        ("gcp", {"severity": "INFO", "httpRequest": {"remoteIp": "10.0.0.1", "requestMethod": "POST", "requestUrl": "/pay"}}),
    ],
)
def test_schema_names_the_fields(tmp_path, schema, expected):
    """--schema ecs|otel|gcp: the received record's fields under the schema's names."""
    records, _ = received(tmp_path, 3, "--schema", schema)
    assert expected.items() <= records[1].items(), records[1]


def test_schema_without_json_and_an_unknown_schema_exit_2(tmp_path):
    """--schema needs --format json; an unknown schema is refused by the option parser."""
    for options, says in ((["--schema", "ecs"], "--schema needs --format json"), (["--format", "json", "--schema", "xml"], "invalid choice: 'xml'")):
        command = Command(tmp_path, *options)
        try:
            status, err = command.finished(10)
        finally:
            command.kill()
        assert 2 == status, err
        assert says in err
        assert "Traceback" not in err


def test_another_format_stays_a_format_string(tmp_path):
    """--format with any other value than json is a %-style line format, as before."""
    out = tmp_path / "plain.log"
    command = Command(tmp_path, "--file", str(out), "--format", "json %(request_id)s %(message)s")
    try:
        command.started()
        run_sender(command.port, 2)
        assert wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") >= 3, 30)
        command.stop()
    finally:
        command.kill()
    assert out.read_text(encoding="utf-8").startswith("json r-0 order 0 x\\n{")
