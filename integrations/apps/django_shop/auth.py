"""
The project's API authentication: HTTP basic auth against the user table, for one request.

Listed after ``AuthenticationMiddleware``: a request with valid basic credentials gets that user
as ``request.user`` (and ``request.auser()``), as an API's token authentication would, without a
session; any other request keeps the session's user (here: anonymous). It authenticates with
Django's own ``authenticate()`` (``ModelBackend``), sync or async as Django calls it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.contrib.auth import aauthenticate, authenticate
from django.utils.decorators import sync_and_async_middleware


def credentials(request: Any) -> dict[str, str] | None:
    """Return the user name and password of a ``Basic`` Authorization header, or None."""
    scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return {"username": username, "password": password} if colon else None


def _use(request: Any, user: Any) -> None:
    request.user = user

    async def auser() -> Any:
        return user

    request.auser = auser


@sync_and_async_middleware
def basic_auth(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Log the request's user in from HTTP basic auth, when it carries valid credentials."""
    if iscoroutinefunction(get_response):

        async def middleware(request: Any) -> Awaitable[Any]:
            given = credentials(request)
            if given is not None:
                user = await aauthenticate(request, **given)
                if user is not None:
                    _use(request, user)
            return await get_response(request)

        return middleware

    def sync_middleware(request: Any) -> Any:
        given = credentials(request)
        if given is not None:
            user = authenticate(request, **given)
            if user is not None:
                _use(request, user)
        return get_response(request)

    return sync_middleware
