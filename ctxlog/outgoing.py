"""
The request id (and trace context) on the calls a request makes to other services.

:func:`outgoing_headers` returns the headers to send from the current context. The glue below
adds them to every call of an HTTP client, so the other service, running ctxlog and taking the
incoming id (see ``trust_request_id``), logs under the same id:

- httpx: ``httpx.Client(event_hooks=ctxlog.outgoing.httpx_hooks())``, and
  ``httpx.AsyncClient(event_hooks=ctxlog.outgoing.httpx_async_hooks())``;
- requests: ``ctxlog.outgoing.Session()``, a :class:`requests.Session`.

A header the caller sets itself is never replaced. Neither client library is imported by
``import ctxlog`` or by this module: ``Session`` imports requests when first used.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from ctxlog.context import DEFAULT_FIELDS, MISSING, local_var, request_var

if TYPE_CHECKING:
    from requests import Session

#: outgoing_headers is public as ctxlog.outgoing_headers.
__all__ = ["REQUEST_ID_HEADER", "Session", "httpx_async_hooks", "httpx_hooks"]

#: The header that carries the request id when none is named.
REQUEST_ID_HEADER: Final = "X-Request-ID"


def outgoing_headers(*, request_id_header: str = REQUEST_ID_HEADER) -> dict[str, str]:
    """
    Return the headers that carry the current request's identity to another service.

    Inside a request (or a task run with :mod:`ctxlog.celery`): the request id under
    ``request_id_header``, and, when trace context is on and the request belongs to a trace, a
    ``traceparent`` naming a new child span of it (the trace's flags are not kept, so it says
    "sampled", ``01``). Outside any request: an empty dict.

    Args:
        request_id_header: The header name the other service reads the id from.

    .. versionadded:: 0.4.0
    """
    request = request_var.get()
    local = local_var.get()
    if request is None and not local:
        return {}
    fields = DEFAULT_FIELDS if request is None else request.fields  # the user is not needed
    request_id = local["request_id"] if "request_id" in local else fields.get("request_id")
    if request_id is None or request_id == MISSING:
        return {}
    headers = {request_id_header: str(request_id)}
    trace_id = local["trace_id"] if "trace_id" in local else fields.get("trace_id")
    if trace_id is not None and trace_id != MISSING and _is_trace_id(str(trace_id)):
        headers["traceparent"] = f"00-{trace_id}-{_new_span_id()}-01"
    return headers


def _is_trace_id(value: str) -> bool:
    return len(value) == 32 and value.isascii() and value.isalnum() and value == value.lower()


def _new_span_id() -> str:
    span_id = os.urandom(8).hex()
    return span_id if span_id != "0" * 16 else "0" * 15 + "1"


def add_to(
    headers: MutableMapping[str, Any], *, request_id_header: str = REQUEST_ID_HEADER
) -> None:
    """Add :func:`outgoing_headers` to ``headers``, keeping any the caller set (any case)."""
    present = {name.lower() for name in headers}
    for name, value in outgoing_headers(request_id_header=request_id_header).items():
        if name.lower() not in present:
            headers[name] = value


def httpx_hooks(
    *, request_id_header: str = REQUEST_ID_HEADER
) -> dict[str, list[Callable[[Any], None]]]:
    """
    Return ``event_hooks`` for :class:`httpx.Client` that add the headers to every request.

    .. versionadded:: 0.4.0
    """

    def add_headers(request: Any) -> None:
        add_to(request.headers, request_id_header=request_id_header)

    return {"request": [add_headers]}


def httpx_async_hooks(
    *, request_id_header: str = REQUEST_ID_HEADER
) -> dict[str, list[Callable[[Any], Awaitable[None]]]]:
    """
    Return ``event_hooks`` for :class:`httpx.AsyncClient` that add the headers to every request.

    The hook runs in the task that sends the request, so it sees that task's request.

    .. versionadded:: 0.4.0
    """

    async def add_headers(request: Any) -> None:
        add_to(request.headers, request_id_header=request_id_header)

    return {"request": [add_headers]}


def _make_session_class() -> type:
    import requests  # noqa: PLC0415 - only for users of requests

    class Session(requests.Session):
        """
        A :class:`requests.Session` whose every request carries :func:`ctxlog.outgoing_headers`.

        A header the caller sets is kept. Set ``request_id_header`` on an instance to send the
        id under another name. The class is made, and requests imported, on first use.

        .. versionadded:: 0.4.0
        """

        request_id_header: str = REQUEST_ID_HEADER

        def prepare_request(self, request: Any) -> Any:
            prepared = super().prepare_request(request)
            add_to(prepared.headers, request_id_header=self.request_id_header)
            return prepared

    Session.__module__ = __name__
    return Session


def __getattr__(name: str) -> Any:
    if name == "Session":
        session = globals()["Session"] = _make_session_class()
        return session
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
