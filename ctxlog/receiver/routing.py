"""
Where a received record goes: the nearest logger the receiver's configuration made, else root.

A record's logger name comes from the network. The receiver never creates a logger for it (a
peer could fill the process with loggers) and never hands it to one of its own
(``ctxlog.receiver``: a sender could pass off its lines as the receiver's): ``shop.payments.
refunds`` goes to ``shop.payments`` if the configuration names that logger, else up the dots,
else to the root logger.
"""

from __future__ import annotations

import logging
from typing import Final

__all__ = ["Router"]

#: Names of records up to this length keep their route in a cache.
_ROUTE_NAME_CAP: Final = 256
#: The most routes cached; the cache starts over when full.
_ROUTES_CACHED: Final = 4096


class Router:
    """Hand each record to the nearest configured logger for its name, caching the answer."""

    def __init__(self) -> None:
        self._routes: dict[str, logging.Logger] = {}

    def route(self, record: logging.LogRecord) -> None:
        """Hand ``record`` to the nearest configured logger (see the module's docstring)."""
        name = record.name
        logger = self._routes.get(name)
        if logger is None:
            logger = nearest(name)
            # Only short names are kept: 4096 names of a megabyte each would hold 4 GiB.
            if len(name) <= _ROUTE_NAME_CAP:
                if len(self._routes) >= _ROUTES_CACHED:
                    self._routes.clear()
                self._routes[name] = logger
        logger.handle(record)


def nearest(name: str) -> logging.Logger:
    """Return the logger already configured for ``name`` or its nearest parent, else root."""
    existing = logging.Logger.manager.loggerDict
    parts = name.split(".", 32)[:32]
    while parts:
        candidate = existing.get(".".join(parts))
        if isinstance(candidate, logging.Logger) and not candidate.name.startswith(
            "ctxlog.receiver"
        ):
            return candidate
        parts.pop()
    return logging.getLogger()
