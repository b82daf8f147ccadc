"""
The ASGI application: Django's, wrapped in ctxlog's middleware.

``uvicorn django_shop.asgi:application --no-proxy-headers``

After a graceful shutdown on SIGTERM, uvicorn raises the signal again with its default action:
the process ends without running ``atexit`` hooks, so what ``nonblocking()`` still holds must be
delivered during the lifespan shutdown. Django's ASGI application refuses lifespan events:
``answer_lifespan=True`` makes ``ctxlog.ASGIMiddleware`` answer them for it and flush at
shutdown (the SIGTERM test of the django_uvicorn pairing depends on it).

uvicorn's ``--no-proxy-headers``: ctxlog, not uvicorn, decides whom to believe about the client.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_shop.settings")

from django.core.asgi import get_asgi_application

import ctxlog

application = ctxlog.ASGIMiddleware(
    get_asgi_application(), trusted_proxies=["127.0.0.1"], access_log=True, answer_lifespan=True
)
