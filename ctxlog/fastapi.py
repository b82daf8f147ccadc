"""
FastAPI glue: put the user your own authentication dependency returns on the request's records.

FastAPI apps usually authenticate in a dependency (``Depends(get_current_user)``), not in a
middleware, so the user is not in ``scope["user"]`` when :class:`ctxlog.ASGIMiddleware` looks.
:func:`bind_user` wraps that dependency: it runs yours, binds the name of what it returns as
the request's ``user`` and hands the object on unchanged::

    import ctxlog
    from ctxlog.fastapi import bind_user
    from fastapi import Depends, FastAPI

    app = FastAPI(dependencies=[Depends(bind_user(get_current_user))])
    app.add_middleware(ctxlog.ASGIMiddleware, access_log=True)

    @app.get("/orders")
    async def orders(user: User = Depends(get_current_user)):
        log.info("listing orders")        # ... alice ...

FastAPI runs a dependency once per request however often it is named (``use_cache``), so the
route above does not authenticate twice. Everything the request logs after the dependency ran
carries the user, including the access log line; what it logged before (other middleware, an
earlier dependency) shows ``-``.

FastAPI is imported when :func:`bind_user` is called, never by ``import ctxlog``.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ctxlog.context import bind
from ctxlog.record.escape import sanitize
from ctxlog.web.text import MAX_USER
from ctxlog.web.user import user_name

__all__ = ["bind_user"]


def bind_user(
    dependency: Callable[..., Any], *, name: Callable[[Any], str | None] | None = None
) -> Callable[..., Any]:
    """
    Return a FastAPI dependency that runs ``dependency`` and binds its user's name.

    Args:
        dependency: Your authentication dependency (sync or async, with dependencies of its
            own). What it returns is passed on unchanged.
        name: Turns the returned object into the name to log; ``None`` (or an empty string)
            logs ``-``. By default: a string as it is; ``None`` or an object whose
            ``is_authenticated`` is false as ``-``; otherwise its ``get_username()``,
            ``display_name``, ``username``, ``"username"`` item, ``get_id()`` or ``email``,
            whichever gives a name first, else ``str(user)``: the rule every entry point of
            ctxlog uses.

    Raises:
        TypeError: ``dependency`` or ``name`` is not callable.

    .. versionadded:: 0.2.0
    """
    if not callable(dependency):
        msg = f"bind_user: {dependency!r} is not a dependency (a callable)"
        raise TypeError(msg)
    if name is not None and not callable(name):
        msg = f"bind_user: name={name!r} is not callable"
        raise TypeError(msg)
    from fastapi import Depends  # noqa: PLC0415 - FastAPI only when this glue is used

    describe = name or user_name

    async def bound_user(user: Any = Depends(dependency)) -> Any:  # noqa: B008 - FastAPI's idiom
        text = describe(user)
        if text:
            bind(user=sanitize(str(text), MAX_USER))
        return user

    bound_user.__name__ = f"bind_user({getattr(dependency, '__name__', 'dependency')})"
    bound_user.__qualname__ = bound_user.__name__
    return bound_user
