"""
The WSGI application, wrapped in ctxlog's middleware as the documentation recommends.

``gunicorn -c gunicorn_conf.py django_shop.wsgi:application``
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_shop.settings")

from django.core.wsgi import get_wsgi_application

import ctxlog

application = ctxlog.WSGIMiddleware(
    get_wsgi_application(), trusted_proxies=["127.0.0.1"], access_log=True
)
