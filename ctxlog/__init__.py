"""
ctxlog: logs that say which client, which user, which request, in any WSGI or ASGI app.

.. versionadded:: 0.1.0
"""

from ctxlog.adapters import ContextAdapter, get_logger
from ctxlog.asgi import ASGIMiddleware
from ctxlog.context import FIELDS, bind, get_context, scope, unbind
from ctxlog.filters import ContextFilter
from ctxlog.wsgi import WSGIMiddleware

__all__ = [
    "FIELDS",
    "ASGIMiddleware",
    "ContextAdapter",
    "ContextFilter",
    "WSGIMiddleware",
    "bind",
    "get_context",
    "get_logger",
    "scope",
    "unbind",
]

__version__ = "0.1.0"
