"""
Carry the request's context into threads you start and pools you hand work to.

A new :class:`threading.Thread` starts with an empty :class:`contextvars.Context` (on Python 3.14
too, unless threads are told to inherit it), and so do the worker threads of a
:class:`concurrent.futures.ThreadPoolExecutor` and whatever ``loop.run_in_executor()`` runs on
them. Records logged there show ``-`` for every field. The helpers here run the work in a copy of
the Context of the code that handed it over:

:func:`wrap`
    For one callable: ``threading.Thread(target=ctxlog.wrap(fn))``.

:class:`ContextExecutor`
    For a pool: every ``submit()`` and ``map()`` captures the submitter's Context.

A copy of the Context refers to the same request holder as the original, so the work logs with
the request's fields, a ``bind()`` in it is seen by the rest of the request (the access line
included), and nothing is written to the worker thread's own Context: a pool thread that goes on
to run a task from elsewhere starts clean.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["ContextExecutor", "wrap"]

P = ParamSpec("P")
R = TypeVar("R")


def wrap(fn: Callable[P, R]) -> Callable[P, R]:
    """
    Return a callable that runs ``fn`` in the Context current when ``wrap()`` is called.

    Call it where the work is handed over, not at import time::

        threading.Thread(target=ctxlog.wrap(resize_images), args=(upload_id,)).start()

    Inside a request, ``fn`` logs with the request's fields, and a ``bind()`` in it reaches
    everything the request logs afterwards. Each call runs in a fresh copy of the Context
    captured by ``wrap()``, so the wrapper may be called any number of times, from several
    threads at once or recursively, and a ``scope()`` or ``bind()`` outside a request inside one
    call is not seen by the next. The thread that calls the wrapper keeps its own Context
    unchanged.

    What ``fn`` returns or raises passes through unchanged. The wrapper copies ``fn``'s name and
    docstring (:func:`functools.wraps`).

    Args:
        fn: Any callable.

    Raises:
        TypeError: ``fn`` is not callable.

    .. versionadded:: 0.2.0
    """
    if not callable(fn):
        msg = f"ctxlog.wrap() needs a callable, got {fn!r}"
        raise TypeError(msg)
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_context(*args: P.args, **kwargs: P.kwargs) -> R:
        # One Context cannot be entered by two threads at once, nor twice by one: copy per call.
        return context.copy().run(fn, *args, **kwargs)

    return run_in_context


class ContextExecutor(concurrent.futures.Executor):
    """
    Wrap an executor so that each task runs in the Context of the code that submitted it.

    ::

        pool = ctxlog.ContextExecutor(ThreadPoolExecutor(max_workers=4))

        def view(request):
            pool.submit(send_receipt, order)     # logs with this request's fields
            sizes = list(pool.map(measure, files))

    ``submit()`` copies the caller's :class:`contextvars.Context` and runs the task in that copy;
    ``map()`` submits every call the same way. Results and exceptions reach the
    :class:`~concurrent.futures.Future` unchanged. ``shutdown()``, and leaving a ``with`` block,
    shut the wrapped executor down. Share one wrapper, or one executor behind several wrappers,
    between requests: the pool's threads never keep anything of a request.

    The executor must run its tasks in this process: a :class:`~contextvars.Context` cannot be
    sent to another one.

    Args:
        executor: A :class:`~concurrent.futures.ThreadPoolExecutor` or any other executor that
            runs callables in threads of this process.

    Raises:
        TypeError: ``executor`` is a :class:`~concurrent.futures.ProcessPoolExecutor`.

    .. versionadded:: 0.2.0
    """

    def __init__(self, executor: concurrent.futures.Executor) -> None:
        if isinstance(executor, concurrent.futures.ProcessPoolExecutor):
            msg = (
                f"ContextExecutor: {executor!r} runs tasks in other processes, where a "
                "contextvars.Context cannot go; wrap a thread pool"
            )
            raise TypeError(msg)
        self._executor = executor

    @property
    def executor(self) -> concurrent.futures.Executor:
        """The wrapped executor."""
        return self._executor

    # map() is Executor.map, which calls submit() once per item, in the caller's thread, so
    # every item runs in a copy of the Context of the code that called map().
    def submit(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[R]:
        """Schedule ``fn(*args, **kwargs)`` to run in a copy of the caller's Context."""
        # A fresh copy per task, used once: no need for wrap()'s copy per call.
        context = contextvars.copy_context()
        return self._executor.submit(functools.partial(context.run, fn, *args, **kwargs))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the wrapped executor down; the arguments are passed on."""
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._executor!r})"
