"""
:func:`get_logger`: a :class:`logging.LoggerAdapter` that adds the request's context to records.

Create it once at module level, before any request exists; the context is read at each call::

    log = ctxlog.get_logger(__name__)
    log.info("paid %s", amount)     # the record carries ip, user, request_id, method, path

It differs from the standard library's adapter in three ways a web app notices:

* the caller's ``extra=`` is merged with the context, not replaced by it (on every Python);
* an ``extra`` key that clashes with a LogRecord attribute (``name``, ``message`` ...) is logged
  as ``extra_<key>`` instead of raising ``KeyError`` from the log call;
* the level methods go to the logger in one step, so the adapter costs little over a plain
  ``logger.info`` and ``%(funcName)s``/``%(lineno)d`` still name the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ctxlog.context import RESERVED, fields_for_record

if TYPE_CHECKING:
    from logging import _ExcInfoType

__all__ = ["ContextAdapter", "get_logger"]

_DEBUG = logging.DEBUG
_INFO = logging.INFO
_WARNING = logging.WARNING
_ERROR = logging.ERROR
_CRITICAL = logging.CRITICAL


def _merge(
    static: Mapping[str, object] | None, caller: Mapping[str, object] | None
) -> Mapping[str, object]:
    base, local = fields_for_record()
    if local or static or caller:
        merged = {**static, **base, **local} if static else {**base, **local}
        if caller:
            if not RESERVED.isdisjoint(caller):
                caller = {
                    (f"extra_{key}" if key in RESERVED else key): value
                    for key, value in caller.items()
                }
            merged.update(caller)
        return merged
    return base


class ContextAdapter(logging.LoggerAdapter[logging.Logger]):
    """
    Adapt a logger so every record carries the current context.

    Args:
        logger: The logger to write to.
        extra: Fixed fields for every record of this adapter (``{"component": "billing"}``);
            the context and a call's own ``extra=`` take precedence over them.

    Raises:
        ValueError: A name in ``extra`` is an attribute every LogRecord already has.

    .. versionadded:: 0.1.0
    """

    def __init__(self, logger: logging.Logger, extra: Mapping[str, object] | None = None) -> None:
        extra = dict(extra or {})
        clash = sorted(name for name in extra if name in RESERVED)
        if clash:
            msg = f"ContextAdapter: extra names LogRecord attributes {clash}; rename them"
            raise ValueError(msg)
        super().__init__(logger, extra)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Merge the context, this adapter's fields and the caller's ``extra``."""
        kwargs["extra"] = _merge(self.extra, kwargs.get("extra"))
        return msg, kwargs

    # typeshed gives LoggerAdapter's level methods **kwargs; these take exactly the keywords
    # Logger takes (hence the type: ignore[override]), so a misspelt keyword is a TypeError.
    # Each level method calls Logger._log itself, so exactly one frame of this module stands
    # between the caller and the logger: stacklevel + 1 makes findCaller name the caller.

    def debug(  # type: ignore[override]
        self,
        msg: object,
        *args: object,
        exc_info: _ExcInfoType = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at DEBUG with the context."""
        logger = self.logger
        if logger.isEnabledFor(_DEBUG):
            logger._log(  # noqa: SLF001 - one frame less than Logger.log
                _DEBUG, msg, args, exc_info, _merge(self.extra, extra), stack_info, stacklevel + 1
            )

    def info(  # type: ignore[override]
        self,
        msg: object,
        *args: object,
        exc_info: _ExcInfoType = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at INFO with the context."""
        logger = self.logger
        if logger.isEnabledFor(_INFO):
            logger._log(  # noqa: SLF001
                _INFO, msg, args, exc_info, _merge(self.extra, extra), stack_info, stacklevel + 1
            )

    def warning(  # type: ignore[override]
        self,
        msg: object,
        *args: object,
        exc_info: _ExcInfoType = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at WARNING with the context."""
        logger = self.logger
        if logger.isEnabledFor(_WARNING):
            logger._log(  # noqa: SLF001
                _WARNING, msg, args, exc_info, _merge(self.extra, extra), stack_info, stacklevel + 1
            )

    def error(  # type: ignore[override]
        self,
        msg: object,
        *args: object,
        exc_info: _ExcInfoType = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at ERROR with the context."""
        logger = self.logger
        if logger.isEnabledFor(_ERROR):
            logger._log(  # noqa: SLF001
                _ERROR, msg, args, exc_info, _merge(self.extra, extra), stack_info, stacklevel + 1
            )

    def exception(  # type: ignore[override]
        self,
        msg: object,
        *args: object,
        exc_info: _ExcInfoType = True,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at ERROR with the context and the exception being handled."""
        logger = self.logger
        if logger.isEnabledFor(_ERROR):
            logger._log(  # noqa: SLF001
                _ERROR, msg, args, exc_info, _merge(self.extra, extra), stack_info, stacklevel + 1
            )

    def critical(  # type: ignore[override]
        self,
        msg: object,
        *args: object,
        exc_info: _ExcInfoType = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at CRITICAL with the context."""
        logger = self.logger
        if logger.isEnabledFor(_CRITICAL):
            logger._log(  # noqa: SLF001
                _CRITICAL,
                msg,
                args,
                exc_info,
                _merge(self.extra, extra),
                stack_info,
                stacklevel + 1,
            )

    fatal = critical

    def log(  # type: ignore[override]
        self,
        level: int,
        msg: object,
        *args: object,
        exc_info: _ExcInfoType = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at ``level`` with the context."""
        if not isinstance(level, int):
            if logging.raiseExceptions:
                error = f"level must be an integer, got {level!r}"
                raise TypeError(error)
            return
        logger = self.logger
        if logger.isEnabledFor(level):
            logger._log(  # noqa: SLF001
                level, msg, args, exc_info, _merge(self.extra, extra), stack_info, stacklevel + 1
            )


def get_logger(name: str | None = None) -> ContextAdapter:
    """
    Return an adapter over ``logging.getLogger(name)`` that adds the current context to records.

    Safe to call at import time: the context is read when a record is made, not when the adapter
    is created.

    .. versionadded:: 0.1.0
    """
    return ContextAdapter(logging.getLogger(name))
