"""
Handlers for slow destinations; put them behind :func:`ctxlog.nonblocking`.

:class:`DigestSMTPHandler` e-mails error digests, :class:`JSONSocketHandler` sends records to
``ctxlog receive`` as JSON frames, and :class:`SyslogHandler` sends RFC 5424 messages to a syslog
daemon.
"""

from ctxlog.handlers.jsonsocket import JSONSocketHandler
from ctxlog.handlers.smtp import DigestSMTPHandler
from ctxlog.handlers.syslog import SyslogHandler

__all__ = ["DigestSMTPHandler", "JSONSocketHandler", "SyslogHandler"]
