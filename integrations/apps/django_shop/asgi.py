"""
The ASGI application, wrapped in ctxlog's middleware, with a lifespan that delivers the log.

``uvicorn django_shop.asgi:application --no-proxy-headers``

After a graceful shutdown on SIGTERM, uvicorn raises the signal again with its default action:
the process ends without running ``atexit`` hooks, so ctxlog's exit hook never delivers what
``nonblocking()`` still holds. ctxlog's documentation says to call ``ctxlog.flush()`` in the
lifespan shutdown, which uvicorn runs before that; but Django's ASGI application refuses
lifespan events (uvicorn then goes on without them). So the project answers them itself, in a
few lines around Django's application, and flushes at shutdown.

uvicorn's ``--no-proxy-headers``: ctxlog, not uvicorn, decides whom to believe about the client.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_shop.settings")

from django.core.asgi import get_asgi_application

import ctxlog

django_application = ctxlog.ASGIMiddleware(
    get_asgi_application(), trusted_proxies=["127.0.0.1"], access_log=True
)


async def lifespan(receive: Any, send: Any) -> None:
    """Answer the server's lifespan events; deliver every queued record at shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # Blocks the event loop: harmless now, the server takes no more requests.
            ctxlog.flush(timeout=60)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Django's application for HTTP, the project's own lifespan."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    else:
        await django_application(scope, receive, send)
