"""
The Starlette integration app: the user comes from Starlette's own AuthenticationMiddleware.

Run it as ``uvicorn starlette_app:app`` or ``hypercorn starlette_app:app`` from this folder,
with ``integrations/`` on ``PYTHONPATH`` and a ``--log-config`` (see ``integrations/README.md``).
"""

from __future__ import annotations

import _shop
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
)
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


class HeaderAuth(AuthenticationBackend):
    """Trust the X-User header the (trusted) front proxy sets after its own login."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        name = conn.headers.get("x-user")
        if not name:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(name)


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok\n")


async def visit(request: Request) -> JSONResponse:
    seq = request.query_params.get("seq")
    return JSONResponse(
        await _shop.visit("async", seq), background=BackgroundTask(_shop.after_response, seq)
    )


def visit_sync(request: Request) -> JSONResponse:
    return JSONResponse(_shop.visit_sync(request.query_params.get("seq")))


async def boom(request: Request) -> JSONResponse:
    _shop.fail(request.query_params.get("seq"))
    return JSONResponse({})  # never reached


async def stream(request: Request) -> StreamingResponse:
    chunks = _shop.chunks(3, request.query_params.get("seq"))
    return StreamingResponse(chunks, media_type="text/plain")


async def slow(request: Request) -> StreamingResponse:
    return StreamingResponse(_shop.slow(), media_type="text/plain")


def burst(request: Request) -> JSONResponse:
    return JSONResponse(_shop.burst(int(request.query_params.get("count", "100"))))


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await _shop.websocket_session(websocket.receive_text, websocket.send_text)
    await websocket.close()


shop = Starlette(
    routes=[
        Route("/health", health),
        Route("/visit", visit),
        Route("/visit-sync", visit_sync),
        Route("/boom", boom),
        Route("/stream", stream),
        Route("/slow", slow),
        Route("/burst", burst),
        WebSocketRoute("/ws", echo),
    ],
    middleware=[Middleware(AuthenticationMiddleware, backend=HeaderAuth())],
    lifespan=_shop.lifespan,
)
app = _shop.wrap(shop)
