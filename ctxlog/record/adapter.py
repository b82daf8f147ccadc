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
import sys
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ctxlog.context import RESERVED, fields_for_record
from ctxlog.record.stamp import stamp

if TYPE_CHECKING:
    from logging import _ExcInfoType, _SysExcInfoType

__all__ = ["ContextAdapter", "get_logger"]

_DEBUG = logging.DEBUG
_INFO = logging.INFO
_WARNING = logging.WARNING
_ERROR = logging.ERROR
_CRITICAL = logging.CRITICAL


def _renamed(caller: Mapping[str, object] | None) -> Mapping[str, object] | None:
    """Return the caller's ``extra`` with names that clash with LogRecord attributes renamed."""
    if caller and not RESERVED.isdisjoint(caller):
        return {(f"extra_{k}" if k in RESERVED else k): value for k, value in caller.items()}
    return caller


def _merge(
    static: Mapping[str, object] | None, caller: Mapping[str, object] | None
) -> Mapping[str, object]:
    """Return everything a record gets: the context over ``static``, ``caller`` over both."""
    base, local = fields_for_record()
    merged = {**static, **base, **local} if static else {**base, **local}
    caller = _renamed(caller)
    if caller:
        merged.update(caller)
    return merged


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

    def _log_record(  # noqa: PLR0917 - Logger._log's own parameters
        self,
        level: int,
        msg: object,
        args: tuple[object, ...],
        exc_info: _ExcInfoType,
        extra: Mapping[str, object] | None,
        stack_info: bool,
        stacklevel: int,
    ) -> None:
        # What Logger._log does, with the context stamped on the record instead of passed as
        # extra= (makeRecord copies extra key by key, in Python). Two frames of this module
        # stand between the caller and findCaller: stacklevel + 2 names the caller.
        logger = self.logger
        sinfo = None
        if logging._srcfile:  # noqa: SLF001 - the stdlib's switch: None turns caller lookup off
            try:
                filename, lineno, func, sinfo = logger.findCaller(stack_info, stacklevel + 2)
            except ValueError:  # pragma: no cover - a stack shallower than stacklevel
                filename, lineno, func = "(unknown file)", 0, "(unknown function)"
        else:  # pragma: no cover - the user turned caller lookup off
            filename, lineno, func = "(unknown file)", 0, "(unknown function)"
        info: _SysExcInfoType | None = None
        if exc_info:
            if isinstance(exc_info, BaseException):
                info = (type(exc_info), exc_info, exc_info.__traceback__)
            elif isinstance(exc_info, tuple):
                info = exc_info
            else:
                info = sys.exc_info()
        if extra:  # most calls have none: no call to _renamed() for them
            extra = _renamed(extra)
        record = logger.makeRecord(
            logger.name, level, filename, lineno, msg, args, info, func, extra, sinfo
        )
        stamp(record)
        if self.extra:
            for name, value in self.extra.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        logger.handle(record)

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
            self._log_record(_DEBUG, msg, args, exc_info, extra, stack_info, stacklevel)

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
            self._log_record(_INFO, msg, args, exc_info, extra, stack_info, stacklevel)

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
            self._log_record(_WARNING, msg, args, exc_info, extra, stack_info, stacklevel)

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
            self._log_record(_ERROR, msg, args, exc_info, extra, stack_info, stacklevel)

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
            self._log_record(_ERROR, msg, args, exc_info, extra, stack_info, stacklevel)

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
            self._log_record(_CRITICAL, msg, args, exc_info, extra, stack_info, stacklevel)

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
            self._log_record(level, msg, args, exc_info, extra, stack_info, stacklevel)


def get_logger(name: str | None = None) -> ContextAdapter:
    """
    Return an adapter over ``logging.getLogger(name)`` that adds the current context to records.

    Safe to call at import time: the context is read when a record is made, not when the adapter
    is created.

    .. versionadded:: 0.1.0
    """
    return ContextAdapter(logging.getLogger(name))
