"""
The WSGI response as :class:`ctxlog.WSGIMiddleware` hands it to the server.

A WSGI app's code keeps running after it returns: a generator body runs a step of the app for
every chunk the server asks for, and ``close()`` runs whatever the app does at the end. The
server may run those steps in any thread and any :class:`contextvars.Context`. :class:`Response`
iterates and closes the app's body with the request's context set around each step, and puts
back what was there after each, even when a step raises; the access line is written when the
server closes it, which PEP 3333 requires once the body is sent.

Two shapes of body get less: a list or tuple runs none of the app's code while it is sent
(:class:`ListResponse` sets the context only for the access line), and a server's own file
wrapper is handed back as it is, with our ``close()`` on it, so the server keeps its
``sendfile()`` path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ctxlog.context import RequestState, local_var, request_var, reset_request, tag_exception
from ctxlog.record.escape import sanitize
from ctxlog.web.access import write_access
from ctxlog.web.settings import Settings
from ctxlog.web.text import MAX_PROTOCOL, latin1_text

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["ListBody", "ListResponse", "Response", "SizedResponse"]


class Response:
    """
    Iterate and close the app's response with the request's context set, then log access.

    Each step sets ctxlog's variables in the Context it runs in and puts back what was there,
    so it works from any thread, any Context and from inside another step (a server calling
    ``close()`` while iterating), and leaves nothing behind when it raises.
    """

    __slots__ = (
        "body",
        "environ",
        "iterator",
        "local",
        "settings",
        "size",
        "started",
        "state",
        "status",
    )

    def __init__(
        self,
        state: RequestState,
        settings: Settings,
        environ: WSGIEnvironment,
        started: float,
        local: Mapping[str, Any],
    ) -> None:
        self.state = state
        self.settings = settings
        self.environ = environ
        self.started = started
        #: The request's scope() values, carried from one step to the next.
        self.local = local
        self.status: str | None = None
        self.size = 0
        self.body: Iterable[bytes] = ()
        self.iterator: Iterator[bytes] | None = None

    def wrap(self, body: Iterable[bytes]) -> Iterable[bytes]:
        """Return what the server gets for the app's ``body``: this response, or its wrapper."""
        self.body = body
        if type(body) is list or type(body) is tuple:
            # Iterating these runs none of the app's code, and they have no close(): only the
            # access line, if any, needs the context.
            self.__class__ = ListResponse
            return self
        if hasattr(type(body), "__len__"):
            # Servers ask for len() only when the body has one (waitress, gunicorn test with
            # hasattr); an unsized body must stay unsized, so only a sized one gets __len__.
            self.__class__ = SizedResponse
        file_wrapper = self.environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            # Keep the server's fast path (sendfile): hand back its own wrapper, with our close.
            closer = _Closer(getattr(body, "close", None))
            try:
                body.close = self.close  # type: ignore[attr-defined]
            except AttributeError:  # a wrapper with __slots__: wrap it like any body
                return self
            self.body = closer
            return body
        return self

    def counting(self, write: Callable[[bytes], object]) -> Callable[[bytes], object]:
        """Return the server's ``write`` counting the bytes the app writes with it."""

        def counted(data: bytes) -> object:
            self.size += len(data)
            return write(data)

        return counted

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __bool__(self) -> bool:
        return True

    def __next__(self) -> bytes:
        outer = local_var.get()  # before any set(): a cache hit
        token = request_var.set(self.state)
        local = self.local
        if local is not outer:
            local_var.set(local)
        try:
            if self.iterator is None:
                self.iterator = iter(self.body)
            chunk = next(self.iterator)
        except StopIteration:
            raise
        except BaseException as error:
            tag_exception(error, self.state)
            if self.status is None:
                self.status = "500 Internal Server Error"
            raise
        finally:
            local = self.local = local_var.get()
            if local is not outer:
                local_var.set(outer)
            # reset_request(), inline: this runs for every step of every body.
            try:  # noqa: SIM105 - a plain try is cheaper than contextlib.suppress
                request_var.reset(token)
            except (ValueError, RuntimeError):
                pass
        self.size += len(chunk)
        return chunk

    def close(self) -> None:
        """Close the app's response and write the access log, with the request's context set."""
        outer = local_var.get()
        token = request_var.set(self.state)
        if self.local is not outer:
            local_var.set(self.local)
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        except BaseException as error:
            tag_exception(error, self.state)
            raise
        finally:
            try:
                if self.settings.access_log:
                    self.log()
            finally:
                local = self.local = local_var.get()
                if local is not outer:
                    local_var.set(outer)
                reset_request(token)

    def failed(self) -> None:
        """Log access for an app that raised instead of returning a response."""
        self.status = "500 Internal Server Error"
        self.log()

    def log(self) -> None:
        """Write the access line, once, if the middleware writes them."""
        settings = self.settings
        if not settings.access_log or self.started < 0:
            return
        started, self.started = self.started, -1.0  # once only
        environ = self.environ
        status = self.status.split(" ", 1)[0] if self.status else "500"
        fields = self.state.fields
        write_access(
            log_query=settings.log_query,
            method=fields["method"],
            path=fields["path"],
            query=latin1_text(environ.get("QUERY_STRING", "")),
            protocol=sanitize(environ.get("SERVER_PROTOCOL", "HTTP/1.0"), MAX_PROTOCOL),
            status=int(status) if status.isdigit() else 500,
            size=self.size,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            referer=latin1_text(environ.get("HTTP_REFERER", "")),
            user_agent=latin1_text(environ.get("HTTP_USER_AGENT", "")),
        )


class SizedResponse(Response):
    """A :class:`Response` for a body with a length: servers send it as Content-Length."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.body)  # type: ignore[arg-type]


class ListResponse(SizedResponse):
    """A :class:`Response` for a list or tuple body: nothing of the app runs while it is sent."""

    __slots__ = ()

    def __next__(self) -> bytes:
        if self.iterator is None:
            self.iterator = iter(self.body)
        chunk = next(self.iterator)
        self.size += len(chunk)
        return chunk

    def close(self) -> None:
        """Write the access log, if asked for, with the request's context set."""
        if self.settings.access_log:
            super().close()


class ListBody:
    """
    A list or tuple body when no access line is written: the server iterates the list itself.

    Nothing of the app runs while it is sent, so nothing needs the request's context; what is
    left is what PEP 3333 lets a server expect of a response, a ``close()`` (here, nothing to
    do) and, for a sized body, ``len()``.
    """

    __slots__ = ("body",)

    def __init__(self, body: list[bytes] | tuple[bytes, ...]) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def __len__(self) -> int:
        return len(self.body)

    def close(self) -> None:
        """Do nothing: a list has nothing to close."""


class _Closer:
    """Stands in for a file wrapper's own close() once ours is attached to it."""

    __slots__ = ("close_body",)

    def __init__(self, close_body: Callable[[], object] | None) -> None:
        self.close_body = close_body

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        if self.close_body is not None:
            self.close_body()
