"""The command line: ctxlog demo, python -m ctxlog."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from ctxlog import _demo
from ctxlog.cli import main


def test_demo_prints_each_users_lines_with_their_fields():
    """The demo serves real HTTP on 127.0.0.1 and prints lines carrying each user's ip and user."""
    out = io.StringIO()

    assert 0 == _demo.run(out)

    text = out.getvalue()
    for user, (_, ip) in _demo.USERS.items():
        lines = [line for line in text.splitlines() if f" {user} " in line]
        assert lines, user
        assert all(ip in line for line in lines)
    assert "192.0.2.44" in text and "10.0.0.1 " not in text.replace("10.0.0.1, ", "")
    assert "/search\\r\\n2024-01-01 admin logged in" in text
    assert not any(line.startswith("2024-01-01") for line in text.splitlines())


def test_demo_responses_echo_request_ids():
    """Every access line in the demo carries a 32-hex request id prefix."""
    out = io.StringIO()
    _demo.run(out)

    access = [line for line in out.getvalue().splitlines() if "ctxlog.access" in line]
    assert 9 == len(access)
    assert all(re.search(r" [0-9a-f]{12} INFO", line) for line in access)


def test_python_dash_m_runs_the_demo():
    """python -m ctxlog demo exits 0 and prints the summary."""
    result = subprocess.run([sys.executable, "-m", "ctxlog", "demo"], capture_output=True, text=True, timeout=60, check=False)

    assert (0, "") == (result.returncode, result.stderr)
    assert "9 requests" in result.stdout


def test_unknown_command_is_a_usage_error(capsys):
    """An unknown command exits with status 2 and a usage message."""
    with pytest.raises(SystemExit) as exit_info:
        main(["nope"])

    assert 2 == exit_info.value.code
    assert "invalid choice" in capsys.readouterr().err
