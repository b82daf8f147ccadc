"""The command line: python -m ctxlog, its commands and options (the demo itself: test_demo.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ctxlog.cli import main


def test_python_dash_m_runs_the_demo_with_fewer_requests():
    """python -m ctxlog demo --requests 1 exits 0: one failing checkout per timed burst."""
    result = subprocess.run(
        [sys.executable, "-m", "ctxlog", "demo", "--requests", "1"], capture_output=True, text=True, timeout=60, check=False
    )

    assert (0, "") == (result.returncode, result.stderr)
    assert "1 checkout with a declined card" in result.stdout
    assert "nothing lost: 3/3 e-mails" in result.stdout


@pytest.mark.parametrize("value", ["0", "101", "-1", "x"])
def test_demo_requests_out_of_range_is_a_usage_error(capsys, value):
    """--requests takes 1 to 100: anything else exits 2 before the demo starts."""
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--requests", value])

    assert 2 == exit_info.value.code
    assert "is not a number of requests from 1 to 100" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    """An unknown command exits with status 2 and a usage message."""
    with pytest.raises(SystemExit) as exit_info:
        main(["nope"])

    assert 2 == exit_info.value.code
    assert "invalid choice" in capsys.readouterr().err
