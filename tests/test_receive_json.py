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
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
for seq in range(count):
    with ctxlog.scope(ip="10.0.0.%d" % (seq % 250), user=hostile if seq % 2 else "alice", request_id="r-%d" % seq, method="POST", path="/pay", trace_id=TRACE, span_id="00f067aa0ba902b7"):
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
        [sys.executable, "-c", SENDER, str(port), str(count)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
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
            "level": "INFO",
            "logger": "shop.checkout",
            "message": f"order {seq} {HOSTILE}",
            "ip": f"10.0.0.{seq % 250}",
            "user": HOSTILE if seq % 2 else "alice",
            "request_id": f"r-{seq}",
            "method": "POST",
            "path": "/pay",
            "seq": seq,
            "note": HOSTILE,
            "process": pid,
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
        (
            "ecs",
            {
                "log.level": "info",
                "client": {"ip": "10.0.0.1"},
                "http": {"request": {"id": "r-1", "method": "POST"}},
                "url": {"path": "/pay"},
            },
        ),
        (
            "otel",
            {
                "severity_text": "INFO",
                "severity_number": 9,
                "client.address": "10.0.0.1",
                "http.request.method": "POST",
                "url.path": "/pay",
            },
        ),
        (
            "gcp",
            {
                "severity": "INFO",
                "httpRequest": {
                    "remoteIp": "10.0.0.1",
                    "requestMethod": "POST",
                    "requestUrl": "/pay",
                },
            },
        ),
    ],
)
def test_schema_names_the_fields(tmp_path, schema, expected):
    """--schema ecs|otel|gcp: the received record's fields under the schema's names."""
    records, _ = received(tmp_path, 3, "--schema", schema)
    assert expected.items() <= records[1].items(), records[1]


def test_schema_without_json_and_an_unknown_schema_exit_2(tmp_path):
    """--schema needs --format json; an unknown schema is refused by the option parser."""
    for options, says in (
        (["--schema", "ecs"], "--schema needs --format json"),
        (["--format", "json", "--schema", "xml"], "invalid choice: 'xml'"),
    ):
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


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def refused(tmp_path: Path, *options: str) -> str:
    """Run the command with ``options``; check it exits 2 at start-up; return its last line.

    A check of the command is its one line; argparse's own (a bad value) follows the usage.
    """
    command = Command(tmp_path, *options)
    try:
        status, err = command.finished(10)
    finally:
        command.kill()
    assert 2 == status, err
    assert "Traceback" not in err
    assert "listening on" not in err
    lines = err.splitlines()
    assert len(lines) == 1 or lines[0].startswith("usage: "), err
    return lines[-1]


def test_gcp_project_writes_the_trace_as_a_resource_name(tmp_path):
    """--schema gcp --gcp-project P: the trace is projects/P/traces/ID; without it, the bare id."""
    records, _ = received(tmp_path, 2, "--schema", "gcp", "--gcp-project", "shop-prod")
    assert f"projects/shop-prod/traces/{TRACE}" == records[0]["logging.googleapis.com/trace"]
    assert "00f067aa0ba902b7" == records[0]["logging.googleapis.com/spanId"]
    (tmp_path / "bare").mkdir()
    records, _ = received(tmp_path / "bare", 2, "--schema", "gcp")
    assert TRACE == records[0]["logging.googleapis.com/trace"]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--gcp-project", "shop-prod"], "--gcp-project needs --format json --schema gcp"),
        (
            ["--format", "json", "--gcp-project", "shop-prod"],
            "--gcp-project needs --format json --schema gcp",
        ),
        (
            ["--format", "json", "--schema", "ecs", "--gcp-project", "shop-prod"],
            "--gcp-project needs --format json --schema gcp",
        ),
        (
            ["--format", "json", "--schema", "gcp", "--gcp-project", "projects/x"],
            "'projects/x' is not a Cloud project id",
        ),
        (
            ["--format", "json", "--schema", "gcp", "--gcp-project", ""],
            "'' is not a Cloud project id",
        ),
        (["--backup-count", "3"], "--backup-count needs --file and --max-bytes"),
        (
            ["--file", "out.log", "--backup-count", "3"],
            "--backup-count needs --file and --max-bytes",
        ),
    ],
    ids=[
        "no-json",
        "no-schema",
        "other-schema",
        "slash",
        "empty",
        "backups-stdout",
        "backups-no-rotation",
    ],
)
def test_an_option_without_effect_exits_2(tmp_path, options, says):
    """An option the others leave without effect is refused at start-up, not ignored."""
    assert says in refused(tmp_path, *options)
    assert not (tmp_path / "out.log").exists()


@pytest.mark.parametrize(
    ("config", "options", "expected"),
    [
        (
            "conf.json",
            ["--format", "json", "--schema", "ecs"],
            '--format and --schema have no effect with --config, which sets up the output: drop them and give conf.json a formatter {"()": "ctxlog.receiver.json_formatter", "schema": "ecs"}',
        ),
        (
            "conf.toml",
            ["--format", "%(message)s"],
            '--format has no effect with --config, which sets up the output: drop it and give conf.toml a formatter { "()" = "ctxlog.receiver.LineFormatter", fmt = "%(message)s" }',
        ),
        (
            "conf.json",
            ["--gcp-project", "shop-prod", "--max-bytes", "1MB", "--backup-count", "3"],
            '--gcp-project, --max-bytes and --backup-count have no effect with --config, which sets up the output: drop them and give conf.json a formatter {"()": "ctxlog.receiver.json_formatter", "gcp_project": "shop-prod"} and a handler {"class": "logging.handlers.RotatingFileHandler", "maxBytes": 1000000, "backupCount": 3}',
        ),
    ],
    ids=["json-schema", "line-format-toml", "gcp-project-and-rotation"],
)
def test_output_options_beside_config_exit_2_saying_where_they_go(
    tmp_path, config, options, expected
):
    """--config sets up the output: --format, --schema, --gcp-project, rotation beside it are refused."""
    (tmp_path / "conf.json").write_text(json.dumps({"version": 1}))
    (tmp_path / "conf.toml").write_text("version = 1\n")
    assert f"ctxlog receive: {expected}" == refused(tmp_path, "--config", config, *options)


def test_the_formatter_the_refusal_names_works_in_the_config_file(tmp_path):
    """The formatter the message proposes, pasted into --config, writes gcp lines with the project."""
    (tmp_path / "conf.json").write_text(json.dumps({"version": 1}))
    line = refused(
        tmp_path,
        "--config",
        "conf.json",
        "--format",
        "json",
        "--schema",
        "gcp",
        "--gcp-project",
        "shop-prod",
    )
    formatter = json.loads(line.split(" a formatter ", 1)[1])
    out = tmp_path / "received.jsonl"
    config = {
        "version": 1,
        "formatters": {"gcp": formatter},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(out), "formatter": "gcp"}
        },
        "root": {"handlers": ["file"]},
    }
    (tmp_path / "conf.json").write_text(json.dumps(config))
    command = Command(tmp_path, "--config", "conf.json")
    try:
        command.started()
        pid = run_sender(command.port, 2)
        assert wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") >= 3, 30)
        command.stop()
    finally:
        command.kill()
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert {
        "severity": "INFO",
        "logging.googleapis.com/trace": f"projects/shop-prod/traces/{TRACE}",
        "httpRequest": {"remoteIp": "10.0.0.0", "requestMethod": "POST", "requestUrl": "/pay"},
        "process": pid,
    }.items() <= first.items(), first
