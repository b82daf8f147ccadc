"""
ctxlog: logs that say which client, which user, which request, in any WSGI or ASGI app.

.. versionadded:: 0.1.0
"""

from ctxlog import handlers
from ctxlog.context import FIELDS, bind, get_context, scope, unbind
from ctxlog.liveconfig import config_server
from ctxlog.queue import QueueHandler, QueueListener, flush, nonblocking
from ctxlog.record.adapter import ContextAdapter, get_logger
from ctxlog.record.filter import ContextFilter
from ctxlog.record.formatter import Formatter
from ctxlog.threads import ContextExecutor, wrap
from ctxlog.web.asgi import ASGIMiddleware
from ctxlog.web.wsgi import WSGIMiddleware

__all__ = [
    "FIELDS",
    "ASGIMiddleware",
    "ContextAdapter",
    "ContextExecutor",
    "ContextFilter",
    "Formatter",
    "QueueHandler",
    "QueueListener",
    "WSGIMiddleware",
    "bind",
    "config_server",
    "flush",
    "get_context",
    "get_logger",
    "handlers",
    "nonblocking",
    "scope",
    "unbind",
    "wrap",
]

__version__ = "0.1.0"
