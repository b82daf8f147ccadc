"""
The user of a request: where each entry point finds it, and the one rule that names it.

A request's ``user`` field is looked up when a record is made, not when the request starts: an
authentication layer inside the middleware (Starlette's ``AuthenticationMiddleware``, Django's,
a Flask ``before_request``) has not run yet then. Each entry point knows where its framework
keeps the user:

* ASGI: ``scope["user"]`` (:func:`scope_user`);
* WSGI: ``REMOTE_USER`` (:func:`remote_user`);
* Django: ``request.user`` once the application loaded it (``ctxlog.django``);
* Flask: ``g.user`` or the Flask-Login user already loaded (``ctxlog.flask``);
* FastAPI: what the app's authentication dependency returns (``ctxlog.fastapi``);

and every one of them names what it found with :func:`user_name`. A ``user=`` callable given to
a middleware replaces the lookup; :class:`UserLookup` runs either, escapes and caps the name, and
reports a lookup that raises once instead of breaking the application's log call.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from ctxlog.context import MISSING
from ctxlog.record.escape import sanitize
from ctxlog.web.text import MAX_USER, latin1_text

__all__ = ["UserLookup", "remote_user", "scope_user", "user_name"]

_ctxlog = logging.getLogger("ctxlog")

#: Attributes that hold a user's name, in the order they are tried after ``get_username()``.
_NAME_ATTRIBUTES: Final = ("display_name", "username")


def user_name(user: Any, *, authenticated_by_default: bool = True) -> str | None:
    """
    Return the name to log for ``user``, a name or a user object, or ``None`` for no user.

    ``None``, ``""`` and an object whose ``is_authenticated`` is false are no user; an object
    without ``is_authenticated`` is one unless ``authenticated_by_default`` is false (where the
    source holds a framework's user object, whose anonymous user says so). The name is, first
    found: a string as it is; ``get_username()`` (Django); ``display_name`` (Starlette);
    ``username``; a ``"username"`` item (a ``sqlite3.Row``); ``get_id()`` (Flask-Login);
    ``email``; else ``str(user)``.
    """
    if user is None:
        return None
    if isinstance(user, str):
        return user or None
    if not getattr(user, "is_authenticated", authenticated_by_default):
        return None
    get_username = getattr(user, "get_username", None)
    if callable(get_username) and not inspect.iscoroutinefunction(get_username):
        name = get_username()
        if name:
            return str(name)
    for attribute in _NAME_ATTRIBUTES:
        name = getattr(user, attribute, None)
        if name:
            return str(name)
    return _other_name(user)


def _other_name(user: Any) -> str | None:
    """Name a user object without ``get_username()``, ``display_name`` or ``username``."""
    keys = getattr(user, "keys", None)
    # keys(): `in` on a sqlite3.Row looks through its values, not its column names.
    if callable(keys) and "username" in keys() and user["username"]:
        return str(user["username"])
    get_id = getattr(user, "get_id", None)
    if callable(get_id):
        name = get_id()
        if name:
            return str(name)
    email = getattr(user, "email", None)
    if isinstance(email, str) and email:
        return email
    return str(user) or None


def scope_user(scope: Mapping[str, Any]) -> str | None:
    """Return the name of an authenticated ``scope["user"]`` (Starlette's ``BaseUser``)."""
    return user_name(scope.get("user"), authenticated_by_default=False)


def remote_user(environ: Mapping[str, Any]) -> str | None:
    """Return ``REMOTE_USER``, set by a server or an outer middleware that authenticated."""
    user = environ.get("REMOTE_USER")
    return latin1_text(user) if user else None


class UserLookup:
    """
    Find the user of a request: with the ``user=`` callable if set, else with the default.

    Args:
        user: The middleware's ``user=`` option, called with the request's source, or ``None``.
    """

    __slots__ = ("errors", "user")

    def __init__(self, user: Callable[[Any], Any] | None) -> None:
        self.user = user
        #: How many lookups raised; the first one is reported.
        self.errors = 0

    def resolve(self, source: Any, lookup: Callable[[Any], Any]) -> str | None:
        """
        Return the request's user: from the ``user=`` callable if set, else from ``lookup``.

        ``None`` means the user is not known (yet). This runs while records are being logged,
        where an exception would break the application's log call, so an exception (from the
        callable, from a user object, from its ``__str__``) is reported once with its
        traceback, and the user is logged as ``"-"`` for that request.
        """
        try:
            value = self.user(source) if self.user is not None else lookup(source)
            if value is None or value == "":
                return None
            return sanitize(str(value), MAX_USER)
        except Exception:
            self.errors += 1
            if self.errors == 1:
                _ctxlog.exception(
                    "looking up the user (%s) raised; the user of this request is logged as "
                    "'-' (reported once)",
                    "user=" + repr(self.user) if self.user is not None else "the default lookup",
                )
            return MISSING
