"""
The replay window: each signed frame is accepted once, and only if it was signed recently.

A valid tag proves who signed a frame, not that it is new: anyone who saw it on the network
could send it again. :class:`Replay` is the receiver's memory of the (sender, sequence, time)
stamps of :mod:`ctxlog.wire.signing`, checked after the tag.
"""

from __future__ import annotations

import time
from typing import Final

from ctxlog.wire.frame import WireError

__all__ = ["REORDER", "Replay", "ReplayError"]

#: How many sequence numbers behind a sender's newest a :class:`Replay` still tells apart.
REORDER: Final = 1024
_ALL_SEEN: Final = (1 << REORDER) - 1


class ReplayError(WireError):
    """
    A signed frame that is valid but was seen before, or signed outside the replay window.

    .. versionadded:: 0.3.0
    """

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Replay:
    """
    Remember signed frames: accept each (sender, sequence) once, and only recent ones.

    A frame signed more than ``window`` seconds before (or after) this process's clock is
    rejected as stale. Within the window, a frame is accepted once: per sender, the newest
    sequence number and which of the :data:`REORDER` before it were seen are kept, so frames
    may arrive out of order by that much. A sender is forgotten once the newest time it signed
    is older than the window: any frame of it is stale by then, so forgetting opens no door,
    and the memory held is one small entry per sender heard from in the last two windows.

    Args:
        window: Seconds; how far a frame's signing time may be from this process's clock.

    .. versionadded:: 0.3.0
    """

    def __init__(self, window: float = 300.0) -> None:
        self.window = float(window)
        self._window_ms = round(self.window * 1000)
        #: Per sender id: [newest sequence, bit mask of the REORDER before it, newest time].
        self._senders: dict[bytes, list[int]] = {}
        self._next_sweep = 0

    def __len__(self) -> int:
        return len(self._senders)

    def check(self, sender: bytes, sequence: int, signed_ms: int) -> None:
        """
        Record a verified frame's stamp.

        Raises:
            ReplayError: The frame was seen before (``"replayed frame"``) or was signed outside
                the window (``"stale frame"``).
        """
        now = time.time_ns() // 1_000_000
        window = self._window_ms
        if not now - window <= signed_ms <= now + window:
            age = (now - signed_ms) / 1000
            when = f"{age:.0f} s ago" if age > 0 else f"{-age:.0f} s ahead of this clock"
            msg = f"signed {when}, outside the replay window of {self.window:g} s"
            raise ReplayError(msg, reason="stale frame")
        if now >= self._next_sweep:
            self._sweep(now)
        state = self._senders.get(sender)
        if state is None:
            self._senders[sender] = [sequence, 1, signed_ms]
            return
        newest, seen, latest = state
        if sequence > newest:
            ahead = sequence - newest
            state[0] = sequence
            state[1] = ((seen << ahead) | 1) & _ALL_SEEN if ahead < REORDER else 1
        else:
            behind = newest - sequence
            if behind >= REORDER:
                msg = f"sequence {sequence} is {behind} behind its sender's newest"
                raise ReplayError(msg, reason="replayed frame")
            bit = 1 << behind
            if seen & bit:
                msg = f"sequence {sequence} of sender {sender.hex()[:12]} was seen before"
                raise ReplayError(msg, reason="replayed frame")
            state[1] = seen | bit
        if signed_ms > latest:
            state[2] = signed_ms

    def _sweep(self, now: int) -> None:
        oldest = now - self._window_ms
        for sender in [s for s, state in self._senders.items() if state[2] < oldest]:
            del self._senders[sender]
        # Often enough that a sender outlives the window by at most a fraction of it.
        self._next_sweep = now + max(min(self._window_ms // 4, 60_000), 100)
