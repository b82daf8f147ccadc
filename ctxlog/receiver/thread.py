"""
A :class:`~ctxlog.receiver.Receiver` in a background thread, for a program that is not asyncio.

The thread runs its own event loop; :meth:`ReceiverThread.start` returns once the port is bound
(or raises what binding raised) and :meth:`ReceiverThread.stop` takes in what senders already
sent before it closes, as :meth:`Receiver.stop` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Self

from ctxlog.receiver.server import Receiver

__all__ = ["ReceiverThread"]


class ReceiverThread:
    """
    Run a :class:`Receiver` in a background thread of this process.

    ``start()`` returns once the port is bound (read it from ``.receiver.port``); ``stop()``
    takes in what senders already sent and closes. Also a context manager.

    .. versionadded:: 0.2.0
    """

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._done: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the thread and wait until the receiver listens."""
        thread = threading.Thread(target=self._run, name="ctxlog-receiver", daemon=True)
        self._thread = thread
        thread.start()
        if not self._ready.wait(timeout):
            msg = "the receiver did not start in time"
            raise RuntimeError(msg)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._done = asyncio.Event()
            try:
                await self.receiver.start()
            except BaseException as error:
                self._error = error
                self._ready.set()
                return
            self._ready.set()
            await self._done.wait()

        asyncio.run(serve())

    def stop(self, grace: float = 5.0) -> None:
        """Stop the receiver (see :meth:`Receiver.stop`) and wait for the thread."""
        loop, done, thread = self._loop, self._done, self._thread
        if loop is None or done is None or thread is None or not thread.is_alive():
            return

        async def finish() -> None:
            await self.receiver.stop(grace)
            done.set()

        future = asyncio.run_coroutine_threadsafe(finish(), loop)
        with contextlib.suppress(Exception):
            future.result(grace + 10.0)
        thread.join(grace + 10.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
