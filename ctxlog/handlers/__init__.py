"""
Handlers for slow destinations; put them behind :func:`ctxlog.nonblocking`.

:class:`DigestSMTPHandler` e-mails error digests, :class:`JSONSocketHandler` sends records to
``ctxlog receive`` as JSON frames, and :class:`SyslogHandler` sends RFC 5424 messages to a syslog
daemon.

Each handler loads with its module when first used (``ctxlog.handlers.SyslogHandler``), so
``import ctxlog.handlers`` loads neither :mod:`smtplib` nor :mod:`ssl`. The rest of the room:
the two stream handlers send through one :class:`~ctxlog.handlers.sender.StreamSender` (TCP,
TLS: buffer, back-off, reconnect, batches) and syslog over UDP through a
:class:`~ctxlog.handlers.datagram.DatagramSender` (both are a :class:`~ctxlog.handlers.link.Link`);
:mod:`~ctxlog.handlers.rfc5424` and :mod:`~ctxlog.handlers.structured_data` build a syslog
message; :mod:`~ctxlog.handlers.options` checks the options the handlers share.
"""

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctxlog.handlers.jsonsocket import JSONSocketHandler
    from ctxlog.handlers.smtp import DigestSMTPHandler
    from ctxlog.handlers.syslog import SyslogHandler

__all__ = ["DigestSMTPHandler", "JSONSocketHandler", "SyslogHandler"]

#: The module of each handler.
_LAZY = {
    "DigestSMTPHandler": "ctxlog.handlers.smtp",
    "JSONSocketHandler": "ctxlog.handlers.jsonsocket",
    "SyslogHandler": "ctxlog.handlers.syslog",
}


#: The modules of the room, loaded by ``ctxlog.handlers.<module>`` as by an import.
_MODULES = frozenset(
    {
        "datagram",
        "jsonsocket",
        "link",
        "options",
        "rfc5424",
        "sender",
        "smtp",
        "structured_data",
        "syslog",
    }
)


def __getattr__(name: str) -> object:
    """Load a handler, or a module of the room, on first use (PEP 562)."""
    where = _LAZY.get(name)
    if where is not None:
        value = getattr(importlib.import_module(where), name)
    elif name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        msg = f"module 'ctxlog.handlers' has no attribute {name!r}"
        raise AttributeError(msg)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
