"""
A gate a view waits at until the test opens it: a request that is surely still running.

The test names a file in ``CTXLOG_INTEGRATION_GATE`` (``AppLog.env()`` does, ``AppLog.gate``
is the file); a view calling :func:`wait` (sync) or :func:`wait_async` (in an event loop)
returns once the file exists (the test creates it after it has sent SIGTERM), or after
``timeout`` seconds as a failure bound.

This module is imported by the server processes (``integrations/`` is on their ``PYTHONPATH``)
and by the tests, so it needs nothing but the standard library.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

#: The environment variable naming the gate file.
GATE_ENV = "CTXLOG_INTEGRATION_GATE"
#: How often a waiting view looks for the file, in seconds.
_POLL = 0.01


def _gate() -> Path | None:
    name = os.environ.get(GATE_ENV)
    return Path(name) if name else None


def wait(timeout: float = 60.0) -> bool:
    """Wait until the gate file exists; return False if ``timeout`` passed first or no gate is set."""
    gate = _gate()
    if gate is None:
        return False
    deadline = time.monotonic() + timeout
    while not gate.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL)
    return True


async def wait_async(timeout: float = 60.0) -> bool:
    """Like :func:`wait`, without blocking the event loop."""
    gate = _gate()
    if gate is None:
        return False
    deadline = time.monotonic() + timeout
    while not gate.exists():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(_POLL)
    return True


__all__ = ["GATE_ENV", "wait", "wait_async"]
