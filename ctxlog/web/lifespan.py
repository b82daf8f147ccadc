"""
The ASGI ``lifespan`` protocol, passed through or answered, with the queues flushed at shutdown.

:class:`ctxlog.ASGIMiddleware` gives ``lifespan`` connections to these: :func:`pass_lifespan`
when the app speaks the protocol (its messages and errors reach the server as the app made
them), :func:`answer_lifespan` when it does not (``answer_lifespan=True``). Either way, what
:func:`ctxlog.nonblocking` handlers still hold is delivered before the server hears that the app
has stopped: uvicorn ends the process after a SIGTERM without running exit handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from ctxlog.queue import flush

__all__ = ["answer_lifespan", "pass_lifespan"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SHUTDOWN_DONE: Final = frozenset({"lifespan.shutdown.complete", "lifespan.shutdown.failed"})


async def pass_lifespan(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """
    Pass the lifespan through; deliver the queued records before shutdown is reported.

    The app's messages and errors reach the server as the app made them. The flush runs in the
    event loop's thread, which holds the shutdown up until the targets have their records (or
    stop making progress). It is the server's last chance: uvicorn raises SIGTERM again once it
    hears the shutdown is complete.
    """

    async def send_flushed(message: Message) -> None:
        if message.get("type") in _SHUTDOWN_DONE:
            flush()
        await send(message)

    await app(scope, receive, send_flushed)


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """Report startup and shutdown complete for an app without lifespan, flushing at shutdown."""
    while True:
        message = await receive()
        kind = message.get("type")
        if kind == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            flush()
            await send({"type": "lifespan.shutdown.complete"})
            return
