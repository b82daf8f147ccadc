r"""
loguru glue: :func:`patch` puts ctxlog's fields into each loguru record's ``extra``.

loguru is not imported by this module nor by ``import ctxlog``; use it where loguru is
installed (``pip install loguru``). Patch the logger once, at start-up::

    from loguru import logger
    import ctxlog.loguru

    logger.configure(patcher=ctxlog.loguru.patch)
    logger.add(sys.stderr, serialize=True)

or patch one logger: ``log = logger.patch(ctxlog.loguru.patch)``. A sink's format then reads
the fields as ``{extra[ip]}``, ``{extra[request_id]}`` ...

The patcher reads the context of the thread or task that logs, as :class:`ctxlog.ContextFilter`
does: inside a request, the request's fields and what was bound to it, outside one the standard
names as ``"-"``, and what :func:`ctxlog.bind` or :func:`ctxlog.scope` added. A key ``extra``
already has (from loguru's ``bind()`` or ``contextualize()``) is never replaced.

**Security.** The fields taken from a request are escaped by the middleware, so they cannot
break a line, but loguru writes the *message* as it is: a text sink writes a message holding a
line break as two lines, and the second one can pass for a record of its own. Use
``serialize=True`` (one JSON object per line, where a line break is ``\n``), or escape what
the application logs from a request.

.. versionadded:: 0.4.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctxlog.context import fields_for_record

__all__ = ["patch"]


def patch(record: Mapping[str, Any]) -> None:
    """
    Add ctxlog's current fields to ``record["extra"]``, keeping every key it already has.

    A loguru patcher, for ``logger.patch()`` or ``logger.configure(patcher=...)``.

    Args:
        record: loguru's record dict; its ``extra`` dict is changed in place.

    .. versionadded:: 0.4.0
    """
    extra = record["extra"]
    base, local = fields_for_record()
    for fields in (local, base):  # a scope() or bind() wins over the request
        for name, value in fields.items():
            if name not in extra:
                extra[name] = value
