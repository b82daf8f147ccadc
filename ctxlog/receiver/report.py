"""
The receiver's own voice: rejections counted by reason and reported on ``ctxlog.receiver``.

A hostile peer can make a rejection per connection, many per second; the receiver counts every
one (:attr:`Receiver.rejected`) but writes at most one line per reason every 10 seconds, so a
flood of bad frames cannot flood the receiver's own log.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Final

__all__ = ["Reporter", "log"]

_REPORT_EVERY: Final = 10.0

log = logging.getLogger("ctxlog.receiver")


class Reporter:
    """Report rejections: the first of each reason at once, then one line per 10 s."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._last: dict[str, float] = {}
        self._held: collections.Counter[str] = collections.Counter()

    def __call__(self, kind: str, peer: str, detail: str, *, closed: bool = True) -> None:
        """Count a rejection of ``kind`` from ``peer``; say so unless said lately."""
        self.counts[kind] += 1
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < _REPORT_EVERY:
            self._held[kind] += 1
            return
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        more = f" ({held} more since the last report)" if held else ""
        what = "closed connection from" if closed else "rejected a frame from"
        log.warning("%s %s: %s: %s%s", what, peer, kind, detail, more)
