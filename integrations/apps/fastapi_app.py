"""
The FastAPI integration app: the user comes from the app's own auth dependency, via bind_user.

Run it as ``uvicorn fastapi_app:app`` or ``hypercorn fastapi_app:app`` from this folder, with
``integrations/`` on ``PYTHONPATH`` and a ``--log-config`` (see ``integrations/README.md``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import _shop
from fastapi import BackgroundTasks, Depends, FastAPI, Header, WebSocket
from fastapi.responses import PlainTextResponse, StreamingResponse

from ctxlog.fastapi import bind_user


@dataclasses.dataclass(frozen=True)
class User:
    username: str


async def current_user(x_user: str | None = Header(default=None)) -> User | None:
    """The app's authentication: the X-User header the (trusted) front proxy sets."""
    return User(x_user) if x_user else None


api = FastAPI(dependencies=[Depends(bind_user(current_user))], lifespan=_shop.lifespan)


@api.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    return "ok\n"


@api.get("/visit")
async def visit(
    tasks: BackgroundTasks, seq: str | None = None, user: User | None = Depends(current_user)
) -> Any:
    tasks.add_task(_shop.after_response, seq)
    return await _shop.visit("async", seq)


@api.get("/visit-sync")
def visit_sync(seq: str | None = None) -> Any:
    return _shop.visit_sync(seq)


@api.get("/boom")
async def boom(seq: str | None = None) -> Any:
    _shop.fail(seq)


@api.get("/stream")
async def stream(seq: str | None = None) -> StreamingResponse:
    return StreamingResponse(_shop.chunks(3, seq), media_type="text/plain")


@api.get("/slow")
async def slow() -> StreamingResponse:
    return StreamingResponse(_shop.slow(), media_type="text/plain")


@api.get("/burst")
def burst(count: int = 100) -> Any:
    return _shop.burst(count)


@api.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await _shop.websocket_session(websocket.receive_text, websocket.send_text)
    await websocket.close()


app = _shop.wrap(api)
