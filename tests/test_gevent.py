"""
gevent: greenlets get their own context (PITFALLS 8), so requests never mix; spawned ones start empty.

The app runs in a fresh interpreter (``tests/apps/gevent_server.py``): monkey-patching has to
happen before anything else is imported.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent / "apps" / "gevent_server.py"
REQUESTS = 1000


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[dict, list[list[str]]]:
    """Serve REQUESTS concurrent requests under gevent; return the counters and the lines."""
    if os.environ.get("CI") != "true":
        pytest.importorskip("gevent")
    log_file = tmp_path_factory.mktemp("gevent") / "app.log"
    result = subprocess.run(
        [sys.executable, str(APP), str(log_file), str(REQUESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    lines = [line.split() for line in log_file.read_text(encoding="utf-8").splitlines()]
    return stats, lines


def test_concurrent_greenlets_never_mix(served):
    """1,000 concurrent requests on greenlets: every step logs its own request's id and user."""
    _, lines = served
    steps = [line for line in lines if line[2].startswith("step")]
    assert 3 * REQUESTS == len(steps)
    wrong = [line for line in steps if line[0] != line[3] or line[1] != f"user-{line[3][2:]}"]
    assert [] == wrong


def test_streamed_body_steps_on_greenlets_never_mix(served):
    """Each step of a streamed body, switching greenlets mid-step, logs its own request's fields."""
    _, lines = served
    parts = [line for line in lines if line[2].startswith("body")]
    assert 2 * REQUESTS == len(parts)
    wrong = [line for line in parts if line[0] != line[3] or line[1] != f"user-{line[3][2:]}"]
    assert [] == wrong


def test_spawned_greenlet_starts_empty_and_wrap_carries_the_request(served):
    """gevent.spawn gives a greenlet an empty context; ctxlog.wrap brings the request's fields."""
    _, lines = served
    by_kind = collections.defaultdict(list)
    for line in lines:
        by_kind[line[2]].append(line)
    assert {("-", "-")} == {(line[0], line[1]) for line in by_kind["spawned"]}
    assert REQUESTS == len(by_kind["wrapped"])
    assert all(line[0] == line[3] for line in by_kind["wrapped"])


def test_nonblocking_delivers_everything_under_gevent(served):
    """nonblocking() works with patched threads: every record delivered, nothing dropped."""
    stats, lines = served
    assert (7 * REQUESTS, 0, 0) == (stats["delivered"], stats["dropped"], stats["failed"])
    assert 7 * REQUESTS == len(lines)
