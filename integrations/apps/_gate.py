"""
A gate a view waits at until the test opens it: a request that is surely still running.

The test names a file in ``CTXLOG_INTEGRATION_GATE``; a view calling :func:`wait` returns once
the file exists (the test creates it after it has sent SIGTERM), or after ``timeout`` seconds
as a failure bound.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: The environment variable naming the gate file.
GATE_ENV = "CTXLOG_INTEGRATION_GATE"


def wait(timeout: float = 60.0) -> bool:
    """Wait until the gate file exists; return False if ``timeout`` passed first or no gate is set."""
    name = os.environ.get(GATE_ENV)
    if not name:
        return False
    gate = Path(name)
    deadline = time.monotonic() + timeout
    while not gate.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
