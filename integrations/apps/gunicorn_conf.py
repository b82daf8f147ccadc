"""
gunicorn settings of the integration suites (``gunicorn -c gunicorn_conf.py``).

Every process of the server, master and workers, logs through ``_applog``: gunicorn's own
loggers and the app's, to the JSON-lines file named by ``CTXLOG_INTEGRATION_LOG``, behind
``ctxlog.nonblocking()``. The bind address, the worker class and the app come from the command
line.

gunicorn writes its access line (``gunicorn.access``) after the response is sent, outside the
request's context: ctxlog's own access line (``ctxlog.access``) is the one with the request's
fields. ``%({x-request-id}o)s`` puts the request id ctxlog echoed into gunicorn's line as well,
so the two can be joined.
"""

from __future__ import annotations

import os

import _applog

workers = 2
# A worker killed at the end of graceful_timeout loses what it still has queued: leave time.
graceful_timeout = 30
timeout = 60
loglevel = "info"
logconfig_dict = _applog.logging_config(
    os.environ[_applog.LOG_ENV], pause=float(os.environ.get(_applog.PAUSE_ENV, "0"))
)
# No query string (%(r)s has it): it may carry tokens, and ctxlog.access leaves it out too.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s request_id=%({x-request-id}o)s'
# gunicorn 25.1+ opens a control socket at one path per user; servers run side by side here.
control_socket_disable = True
