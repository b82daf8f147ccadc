"""A helper module of the gunicorn test app: its own logger, and an error to log."""

from __future__ import annotations

import logging

log = logging.getLogger("shop.pricing")


def price(seq: int, *, fail: bool = False) -> int:
    """Log the pricing of order ``seq`` and return its total; raise ValueError if ``fail``."""
    log.info("pricing seq=%d", seq)
    if fail:
        msg = f"no price for seq {seq}"
        raise ValueError(msg)
    return seq * 3 + 1
