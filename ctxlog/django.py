"""
Django glue: :class:`ContextMiddleware` puts the logged-in user on every record of a request.

Install with ``pip install 'ctxlog[django]'``. Importing :mod:`ctxlog` never imports Django;
importing this module does, and says what to install if it is missing. ::

    MIDDLEWARE = [
        "ctxlog.django.ContextMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        ...
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        ...
    ]

It works in two ways, chosen per request:

1. **Completing the context of** :class:`ctxlog.WSGIMiddleware` **or**
   :class:`ctxlog.ASGIMiddleware`, when the project's ``wsgi.py`` or ``asgi.py`` wraps Django's
   application in one of them (recommended). The wrapper's options rule; this middleware only
   adds the user. The context then also covers what Django logs after the middleware chain, the
   wrapper's access log and every step of a streaming body.
2. **Setting the context itself**, when nothing wraps the application: ``ip`` (from
   ``REMOTE_ADDR`` and, for trusted proxies, the proxy header), ``request_id`` (an acceptable
   incoming ``X-Request-ID``, else a new one, echoed in the response unless the view set that
   header itself), ``method``, ``path`` and
   the user, from the options in the ``CTXLOG`` setting. The context is reset when the
   middleware returns. Records Django logs about the response a view *returned* (a 404 or 500
   response, not an exception) are written here, inside the context, instead of after the
   middleware chain, and so is the access line (``"ACCESS_LOG": True``); a streaming body is
   iterated with the context set.

Sync and async views work under WSGI and ASGI alike: the middleware is sync- and async-capable,
so Django never adapts it into a thread of its own.

**The user.** The user is looked up when a record is made, never by the middleware: the name
comes from ``request.user`` (its ``get_username()``) once the application has loaded it, by
reading ``request.user`` or awaiting ``request.auser()``. Until then, and for an anonymous user, the
field is ``-``. Looking the user up means reading the session and the user table; doing that
for a request that never needed it would add a database query and a ``Vary: Cookie`` header to
every response (which defeats caching), so ctxlog never does it. The position of the middleware
in ``MIDDLEWARE`` does not matter for the user: a record made after the application loaded the
user names it. Put the middleware first, so that records logged by the middleware below it
carry the request's fields too. ``ctxlog.bind(user=...)`` always wins.

**Settings.** ``CTXLOG`` is an optional dict in the project's settings, read when Django
builds its middleware chain; it applies when this middleware sets the context itself (2.)::

    CTXLOG = {
        "TRUSTED_PROXIES": ["10.0.0.0/8"],     # default: none
        "PROXY_HEADER": "X-Forwarded-For",     # or "Forwarded" (RFC 7239)
        "REQUEST_ID_HEADER": "X-Request-ID",
        "ACCESS_LOG": False,                   # one line per request on ctxlog.access
        "LOG_QUERY": False,                    # query strings in the access log
        "TRACE_CONTEXT": False,                # True, or "request_id": W3C traceparent
    }

An unknown key or a bad value raises :class:`~django.core.exceptions.ImproperlyConfigured` at
start-up, not on the first request.

**Security.** The rules of :class:`ctxlog.ASGIMiddleware` apply: the proxy header is read
only when ``REMOTE_ADDR`` is one of ``TRUSTED_PROXIES``, and from the right; values taken from
the request are escaped and length-capped; an incoming request id is used only when it is 1-200
printable ASCII characters without spaces or commas. The user name is escaped too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Final

try:
    from asgiref.sync import (  # type: ignore[import-untyped,unused-ignore]
        iscoroutinefunction,
        markcoroutinefunction,
    )
    from django.conf import settings as django_settings  # type: ignore[import-untyped]
    from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
    from django.utils.functional import LazyObject, empty  # type: ignore[import-untyped]
    from django.utils.log import log_response  # type: ignore[import-untyped]
    from django.utils.module_loading import import_string  # type: ignore[import-untyped]
except ImportError as error:
    msg = "ctxlog.django needs Django: pip install 'ctxlog[django]'"
    raise ImportError(msg) from error

from ctxlog.context import (
    MISSING,
    RequestState,
    request_var,
    reset_request,
    tag_exception,
    write_lock,
)
from ctxlog.record.escape import sanitize
from ctxlog.web.access import write_access
from ctxlog.web.request import RequestFields, first_id
from ctxlog.web.settings import Settings, environ_key
from ctxlog.web.text import MAX_PROTOCOL, latin1_text
from ctxlog.web.user import user_name

__all__ = ["ContextMiddleware"]

#: The keys of the ``CTXLOG`` setting and the keyword arguments of Settings they become.
_OPTIONS: Final = {
    "TRUSTED_PROXIES": ("trusted_proxies", ()),
    "PROXY_HEADER": ("proxy_header", "X-Forwarded-For"),
    "REQUEST_ID_HEADER": ("request_id_header", "X-Request-ID"),
    "ACCESS_LOG": ("access_log", False),
    "LOG_QUERY": ("log_query", False),
    "TRACE_CONTEXT": ("trace_context", False),
    "REQUEST_ID_GENERATOR": ("request_id_generator", None),
    "REQUEST_ID_VALIDATOR": ("request_id_validator", None),
    "TRUST_REQUEST_ID": ("trust_request_id", "any"),
    "ECHO_REQUEST_ID": ("echo_request_id", True),
}

Request = Any  # django.http.HttpRequest: Django has no type information
Response = Any  # django.http.HttpResponseBase


def _read_settings() -> tuple[Settings, str]:
    """Return the checked ``CTXLOG`` options and the request id header as configured."""
    options = getattr(django_settings, "CTXLOG", None) or {}
    if not isinstance(options, Mapping):
        msg = f"CTXLOG: {options!r} is not a dict of ctxlog options"
        raise ImproperlyConfigured(msg)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        msg = f"CTXLOG: unknown option(s) {unknown!r}; the options are {sorted(_OPTIONS)!r}"
        raise ImproperlyConfigured(msg)
    kwargs = {name: options.get(key, default) for key, (name, default) in _OPTIONS.items()}
    for name in ("request_id_generator", "request_id_validator"):
        if isinstance(kwargs[name], str):  # a dotted path, as Django settings name callables
            kwargs[name] = _import_callable(name, kwargs[name])
    try:
        settings = Settings(user=None, **kwargs)
    except (TypeError, ValueError) as error:
        msg = f"CTXLOG: {error}"
        raise ImproperlyConfigured(msg) from error
    return settings, settings.response_id_header


def _import_callable(name: str, path: str) -> Any:
    try:
        return import_string(path)
    except ImportError as error:
        msg = f"CTXLOG: {name.upper()} {path!r} cannot be imported: {error}"
        raise ImproperlyConfigured(msg) from error


def _loaded_user(request: Request) -> str | None:
    """
    Return the name of the request's user if the application has loaded it, else ``None``.

    Never evaluates a lazy ``request.user``: that would read the session and the database.
    """
    user = request.__dict__.get("user")
    if isinstance(user, LazyObject):
        user = user._wrapped  # noqa: SLF001 - the only way to know whether it was loaded
        if user is empty:
            user = None
    if user is None:
        # An async view that awaited request.auser() leaves request.user untouched.
        user = request.__dict__.get("_acached_user")
    return user_name(user, authenticated_by_default=False)


class ContextMiddleware:
    """
    Add the Django user to the request's context, setting the context first if none is set.

    List it in ``MIDDLEWARE`` as ``"ctxlog.django.ContextMiddleware"``, preferably first. See
    the module documentation for the two ways it works and for the ``CTXLOG`` setting.

    Args:
        get_response: The rest of the middleware chain, as Django passes it.

    Raises:
        django.core.exceptions.ImproperlyConfigured: The ``CTXLOG`` setting has an unknown key
            or a bad value.

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
       A request id header the view set itself is kept instead of replaced.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Request], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        self.settings, self._id_header = _read_settings()
        self.fields = RequestFields(self.settings, _loaded_user)
        self._id_keys = tuple(environ_key(name) for name in self.settings.request_id_headers)
        header = self.settings.client_ip.header
        self._proxy_key = None if header is None else environ_key(header)

    def __call__(self, request: Request) -> Any:
        """Serve one request, sync or async as Django built the chain."""
        if self.is_async:
            return self._acall(request)
        outer = request_var.get()
        if outer is not None:
            self._complete(outer, request)
            return self.get_response(request)
        started = time.perf_counter()
        state = self._start(request)
        token = request_var.set(state)
        response = None
        try:
            response = self.get_response(request)
            return self._finish(state, request, response, started)
        except BaseException as error:
            tag_exception(error, state)
            raise
        finally:
            reset_request(token)
            if response is None:
                self._log_access(request, state, None, 0, started)

    async def _acall(self, request: Request) -> Any:
        outer = request_var.get()
        if outer is not None:
            self._complete(outer, request)
            return await self.get_response(request)
        started = time.perf_counter()
        state = self._start(request)
        token = request_var.set(state)
        response = None
        try:
            response = await self.get_response(request)
            return self._finish(state, request, response, started)
        except BaseException as error:
            tag_exception(error, state)
            raise
        finally:
            reset_request(token)
            if response is None:
                self._log_access(request, state, None, 0, started)

    def _complete(self, state: RequestState, request: Request) -> None:
        """Make the wrapper's context look for the Django user (unless the user is known)."""
        resolve = self.fields.resolve_user
        with write_lock:  # a bind(user=...) in another thread of the request is never lost
            previous = state.resolve_user
            if previous is None and state.fields.get("user", MISSING) != MISSING:
                return  # bound, or found by the wrapper already
            source = state.source

            def django_user(_: Any) -> str | None:
                name = resolve(request)
                if name is None and previous is not None:
                    return previous(source)
                return name

            state.resolve_user = django_user

    def _start(self, request: Request) -> RequestState:
        """Build the request's holder from ``request.META``."""
        meta = request.META
        return self.fields.state(
            request,
            meta.get("REMOTE_ADDR"),
            meta.get(self._proxy_key) if self._proxy_key else None,
            first_id(meta, self._id_keys),
            request.method or "GET",
            request.path or "/",
            meta.get("HTTP_TRACEPARENT"),
        )

    def _finish(
        self, state: RequestState, request: Request, response: Response, started: float
    ) -> Response:
        """Echo the id, log what Django would log after the chain, wrap a streaming body."""
        if self.settings.echo_request_id and self._id_header not in response:  # the view's is kept
            response[self._id_header] = state.fields["request_id"]
        if response.status_code >= 400:
            # Django logs a 4xx/5xx response a view returned after the whole middleware chain,
            # where this context is gone. Log it here; Django then skips it (it is marked).
            log_response(
                "%s: %s", response.reason_phrase, request.path, response=response, request=request
            )
        if not response.streaming:
            self._log_access(request, state, response, len(response.content), started)
        elif getattr(response, "file_to_stream", None) is not None:
            # A FileResponse: wrapping it would cost the server's sendfile() path, and reading
            # a file logs nothing. Its access line is written now, with the announced length.
            size = response.get("Content-Length", "")
            self._log_access(request, state, response, int(size) if size.isdigit() else 0, started)
        elif response.is_async:
            content = aiter(response.streaming_content)
            response.streaming_content = self._astream(content, state, request, response, started)
        else:
            content = iter(response.streaming_content)
            response.streaming_content = self._stream(content, state, request, response, started)
        return response

    def _stream(
        self,
        iterator: Iterator[bytes],
        state: RequestState,
        request: Request,
        response: Response,
        started: float,
    ) -> Iterator[bytes]:
        # Each step runs with the context set and reset around it: the server may iterate the
        # body in any Context (and Django under ASGI does, in a thread).
        size = 0
        try:
            while True:
                token = request_var.set(state)
                try:
                    chunk = next(iterator)
                except StopIteration:
                    return
                except BaseException as error:
                    tag_exception(error, state)  # only the server sees it, after the request
                    raise
                finally:
                    reset_request(token)
                size += len(chunk)
                yield chunk
        finally:
            self._log_access(request, state, response, size, started)

    async def _astream(
        self,
        iterator: AsyncIterator[bytes],
        state: RequestState,
        request: Request,
        response: Response,
        started: float,
    ) -> AsyncIterator[bytes]:
        size = 0
        try:
            while True:
                token = request_var.set(state)
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    return
                except BaseException as error:
                    tag_exception(error, state)
                    raise
                finally:
                    reset_request(token)
                size += len(chunk)
                yield chunk
        finally:
            self._log_access(request, state, response, size, started)

    def _log_access(
        self,
        request: Request,
        state: RequestState,
        response: Response | None,
        size: int,
        started: float,
    ) -> None:
        if not self.settings.access_log:
            return
        meta = request.META
        token = request_var.set(state) if request_var.get() is not state else None
        try:
            write_access(
                log_query=self.settings.log_query,
                method=state.fields["method"],
                path=state.fields["path"],
                query=latin1_text(meta.get("QUERY_STRING", "")),
                protocol=sanitize(meta.get("SERVER_PROTOCOL", "HTTP/1.1"), MAX_PROTOCOL),
                status=500 if response is None else response.status_code,
                size=size,
                duration_ms=(time.perf_counter() - started) * 1000.0,
                referer=latin1_text(meta.get("HTTP_REFERER", "")),
                user_agent=latin1_text(meta.get("HTTP_USER_AGENT", "")),
            )
        finally:
            if token is not None:
                reset_request(token)
