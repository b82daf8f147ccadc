"""
``ctxlog demo``: the whole story on 127.0.0.1, with the standard library only.

The pieces, all in this process and on free ports:

* a small shop, a plain WSGI app behind :class:`ctxlog.WSGIMiddleware`, served by ``wsgiref``
  with one thread per request; the client plays a reverse proxy on 127.0.0.1 that appends each
  user's address to ``X-Forwarded-For``;
* a slow SMTP server (:mod:`ctxlog.demo.smtp`, 200 ms per message) that receives an e-mail for
  every ERROR record, sent by the standard library's ``SMTPHandler``;
* ``ctxlog receive`` (:class:`ctxlog.receiver.Receiver` in a thread) writing every record it is
  sent by :class:`ctxlog.handlers.JSONSocketHandler` behind :func:`ctxlog.nonblocking` to a
  temporary file.

Then: a burst of visits whose log lines are printed; the same burst of failing checkouts twice,
first with the SMTP handler attached directly, then behind :func:`ctxlog.nonblocking`, timed at
the client; and a count of what arrived. The exit status is 1 if an e-mail or a record was lost.

The demo lives in three modules: :mod:`ctxlog.demo.shop` (the app, its server, its customers),
:mod:`ctxlog.demo.delivery` (where the records go, and what arrived) and
:mod:`ctxlog.demo.story` (what it prints, step by step, and :func:`run`).
"""

from __future__ import annotations

from ctxlog.demo.delivery import MAIL_FORMAT, Delivery
from ctxlog.demo.shop import DECLINED, USERS, log, shop
from ctxlog.demo.story import CONCURRENCY, FORMAT, REQUESTS, SMTP_DELAY, run

__all__ = [
    "CONCURRENCY",
    "DECLINED",
    "FORMAT",
    "MAIL_FORMAT",
    "REQUESTS",
    "SMTP_DELAY",
    "USERS",
    "Delivery",
    "log",
    "run",
    "shop",
]
