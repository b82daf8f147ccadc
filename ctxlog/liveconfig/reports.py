"""
Rejection reports of the configuration listener: counted by reason, logged without flooding.

Every rejected message is counted by its reason (``ConfigServer.rejected``). The first
rejection of each reason is logged at once on ``ctxlog.config``; the others of that reason are
held back for ``report_interval`` seconds and then logged as one summary line naming the first
few hosts they came from. Junk sent without the secret therefore costs the application's log
one line per reason and interval, however much of it arrives.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Final

__all__ = ["Reporter"]

#: The most hosts a summary of rejections names.
_SHOWN_HOSTS: Final = 5

_log = logging.getLogger("ctxlog.config")


class _Held:
    """Rejections of one kind not logged yet: how many, and from which hosts (the first few)."""

    __slots__ = ("count", "hosts", "more_hosts")

    def __init__(self) -> None:
        self.count = 0
        self.hosts: list[str] = []
        self.more_hosts = False

    def add(self, peer: str) -> None:
        self.count += 1
        host = peer.rpartition(":")[0] or peer
        if host not in self.hosts:
            if len(self.hosts) < _SHOWN_HOSTS:
                self.hosts.append(host)
            else:
                self.more_hosts = True

    def show_hosts(self) -> str:
        return ", ".join(self.hosts) + (" and other hosts" if self.more_hosts else "")


class Reporter:
    """
    Log rejections: the first of each kind at once, then one summary per interval.

    In the listener's thread only. ``counts`` holds every rejection by kind.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.counts: collections.Counter[str] = collections.Counter()
        self._quiet_until: dict[str, float] = {}
        self._held: dict[str, _Held] = {}

    def __call__(self, kind: str, peer: str, detail: str) -> None:
        """Count a rejection of ``kind`` from ``peer``; log it unless its kind is held back."""
        self.counts[kind] += 1
        now = time.monotonic()
        if now < self._quiet_until.get(kind, 0.0):
            self._held.setdefault(kind, _Held()).add(peer)
            return
        self._quiet_until[kind] = now + self.interval
        _log.warning(
            "configuration rejected from %s: %s; the running configuration is unchanged",
            peer,
            detail,
        )

    def next_due(self) -> float | None:
        """Return when the next summary is due (monotonic seconds), or ``None``."""
        return min((self._quiet_until[kind] for kind in self._held), default=None)

    def summarise(self, *, everything: bool = False) -> None:
        """Log a summary of each kind whose interval is over (``everything``: of each kind)."""
        now = time.monotonic()
        for kind, held in list(self._held.items()):
            if everything or now >= self._quiet_until[kind]:
                del self._held[kind]
                self._quiet_until[kind] = now + self.interval
                _log.warning(
                    "configuration rejected %d more %s in the last %g s for the same reason "
                    "(%s), from %s; the running configuration is unchanged",
                    held.count,
                    "time" if held.count == 1 else "times",
                    self.interval,
                    kind,
                    held.show_hosts(),
                )
