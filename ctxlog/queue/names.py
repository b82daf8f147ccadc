"""
Find the handlers that :func:`ctxlog.nonblocking` is given by name, as ``dictConfig`` names them.

In a configuration, ``{"()": "ctxlog.nonblocking", "handlers": ["smtp", "file"]}`` names handlers
of the same configuration. ``dictConfig`` builds its handlers in the order of their names, so
one that sorts after the queue's own name does not exist yet when ``nonblocking()`` is called.
Such a name is kept as it is, and :class:`~ctxlog.queue.NonBlockingHandler` looks it up when its
first record arrives, after ``dictConfig`` has finished; a name that the configuration does not
have at all is an error at once.

A configured handler is found by its name in logging's registry of named handlers:
:func:`logging.getHandlerByName` from Python 3.12 on, the same registry read directly on 3.11.
Whether a name is still to come is read from the list ``dictConfig`` passes: a
:class:`logging.config.ConvertingList` knows its ``configurator`` and so the configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

__all__ = ["configuration_handlers", "find_handler", "resolve"]


def find_handler(name: str) -> logging.Handler | None:
    """Return the handler configured under ``name``, or ``None``."""
    get_handler_by_name = getattr(logging, "getHandlerByName", None)  # Python 3.12+
    if get_handler_by_name is not None:
        found: logging.Handler | None = get_handler_by_name(name)
        return found
    return logging._handlers.get(name)  # type: ignore[attr-defined, no-any-return]  # noqa: SLF001 - 3.11


def resolve(
    handlers: Iterable[logging.Handler | str] | logging.Handler,
    *,
    configuring: bool = False,
) -> list[logging.Handler | str]:
    """
    Return the targets ``handlers`` names: handler objects, and names yet to be configured.

    Args:
        handlers: Handler objects or names, or one of them.
        configuring: Whether a configuration is running that may still build the handlers
            named (logging's lock is held): a name that cannot be checked is then kept.

    Raises:
        ValueError: No handlers, or a name that neither a handler nor the running
            configuration has.
        TypeError: Something that is neither a handler nor a name.
    """
    given = [handlers] if isinstance(handlers, logging.Handler | str) else list(handlers)
    targets: list[logging.Handler | str] = []
    for handler in given:
        if isinstance(handler, str):
            found = find_handler(handler)
            if found is None and not _configured_later(handlers, handler, configuring):
                msg = f"nonblocking: no handler named {handler!r}"
                raise ValueError(msg)
            targets.append(handler if found is None else found)
        elif isinstance(handler, logging.Handler):
            targets.append(handler)
        else:
            msg = f"nonblocking: {handler!r} is not a logging.Handler or a handler's name"
            raise TypeError(msg)
    if not targets:
        msg = "nonblocking: give at least one handler to deliver to"
        raise ValueError(msg)
    return targets


def configuration_handlers(handlers: object) -> Mapping[str, object] | None:
    """
    Return the handlers of the configuration that passed ``handlers``, or ``None``.

    While ``dictConfig`` runs, this mapping holds each handler's settings, replaced by the
    handler once it is built. Holding it until the first record keeps alive a handler that
    only the queue uses: ``dictConfig`` keeps no reference of its own once it returns, and
    logging's registry of names holds handlers weakly.
    """
    configurator = getattr(handlers, "configurator", None)  # set by logging.config's lists
    config = getattr(configurator, "config", None)
    if isinstance(config, Mapping):
        pending = config.get("handlers")
        if isinstance(pending, Mapping):
            return pending
    return None


def _configured_later(handlers: object, name: str, configuring: bool) -> bool:
    """Tell whether the configuration that passed ``handlers`` has still to build ``name``."""
    configurator = getattr(handlers, "configurator", None)  # set by logging.config's lists
    config = getattr(configurator, "config", None)
    if isinstance(config, Mapping):
        pending = config.get("handlers")
        return isinstance(pending, Mapping) and name in pending
    # A single name (a string) does not say which configuration passed it.
    return configuring
