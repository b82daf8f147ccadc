"""
ctxlog: logs that say which client, which user, which request, in any WSGI or ASGI app.

``import ctxlog`` loads the context, the stamp, the filter and the adapter (what every log call
needs); the formatter, the middleware, the delivery queue, the handlers and live configuration
load when first used (``ctxlog.Formatter``, ``ctxlog.ASGIMiddleware``, ``ctxlog.nonblocking``,
``ctxlog.handlers.SyslogHandler`` ...), so a process that only logs pays for nothing else.

.. versionadded:: 0.1.0
"""

import importlib

from ctxlog.context import FIELDS, bind, get_context, scope, unbind
from ctxlog.record.adapter import ContextAdapter, get_logger
from ctxlog.record.filter import ContextFilter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctxlog import handlers
    from ctxlog.liveconfig import config_server
    from ctxlog.outgoing import outgoing_headers
    from ctxlog.queue import QueueHandler, QueueListener, flush, nonblocking
    from ctxlog.record.formatter import Formatter
    from ctxlog.record.jsonformat import JSONFormatter
    from ctxlog.record.redact import RedactFilter
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
    "JSONFormatter",
    "QueueHandler",
    "QueueListener",
    "RedactFilter",
    "WSGIMiddleware",
    "bind",
    "config_server",
    "flush",
    "get_context",
    "get_logger",
    "handlers",
    "nonblocking",
    "outgoing_headers",
    "scope",
    "unbind",
    "wrap",
]

__version__ = "0.1.0"

#: Where each public name that loads on first use lives (a module's own name: the module).
_LAZY = {
    "ASGIMiddleware": "ctxlog.web.asgi",
    "ContextExecutor": "ctxlog.threads",
    "Formatter": "ctxlog.record.formatter",
    "JSONFormatter": "ctxlog.record.jsonformat",
    "QueueHandler": "ctxlog.queue",
    "QueueListener": "ctxlog.queue",
    "RedactFilter": "ctxlog.record.redact",
    "WSGIMiddleware": "ctxlog.web.wsgi",
    "config_server": "ctxlog.liveconfig",
    "flush": "ctxlog.queue",
    "handlers": "ctxlog.handlers",
    "nonblocking": "ctxlog.queue",
    "outgoing_headers": "ctxlog.outgoing",
    "wrap": "ctxlog.threads",
}


def __getattr__(name: str) -> object:
    """Load a public name on first use (PEP 562)."""
    where = _LAZY.get(name)
    if where is None:
        msg = f"module 'ctxlog' has no attribute {name!r}"
        raise AttributeError(msg)
    module = importlib.import_module(where)
    value = module if where == f"ctxlog.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
