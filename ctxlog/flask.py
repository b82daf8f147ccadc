"""
Flask glue: :func:`init_app` gives every request a context and names the user your app logged in.

::

    import ctxlog.flask
    from flask import Flask

    app = Flask(__name__)
    ctxlog.flask.init_app(app, trusted_proxies=["10.0.0.0/8"], access_log=True)

Like a Flask extension, it works with an application factory: call it in ``create_app()``, once per
app. It wraps ``app.wsgi_app`` in :class:`ctxlog.WSGIMiddleware` (the ``Flask`` object stays the
same, so ``flask run``, gunicorn ``module:app`` and the test client work as before) and registers
an ``after_request`` and a ``teardown_request`` function. The middleware is stored in
``app.extensions["ctxlog"]``.

Flask is imported when :func:`init_app` runs, not when ``ctxlog`` or this module is imported;
without Flask installed, :func:`init_app` raises :class:`ImportError` naming the ``flask`` extra.

The user
--------
Flask apps authenticate inside the app, in a ``before_request`` function or in the view, long after
the middleware has started the request. The ``user`` field therefore follows your app's own
authentication: while the user is not known, each record made inside Flask's request context asks
again, and the first name found is kept for the rest of the request. So records made in views, in
``before_request`` functions that run after your authentication, in ``after_request`` and
``teardown_request`` functions carry the user. Flask's request context is gone by the time the
server closes the response, when the access log line is written (and while a streamed body is
sent); ctxlog's own ``after_request`` and ``teardown_request`` functions settle the user while the
context still exists, so those lines carry it too.

Where the name comes from, by default, first match wins:

1. ``g.user``, the convention of the Flask tutorial;
2. the user `Flask-Login <https://flask-login.readthedocs.io>`_ has *already* loaded for this
   request (its per-request cache, ``g._login_user``). ctxlog never makes Flask-Login load one:
   loading reads the session (which adds ``Vary: Cookie`` to the response), may query your
   database, or may log the user in from a remember-me cookie, none of which is a logger's job;
3. ``REMOTE_USER``, when a server or an outer middleware authenticated the request.

Pass ``user=`` to choose yourself: a callable taking no arguments, called inside Flask's request
context, returning the user or ``None``. ``user=lambda: flask_login.current_user`` names the
Flask-Login user of every request, even of views that never looked at it, at the cost described
above (once per request, in ctxlog's ``after_request`` function at the latest; Flask-Login caches
the result, so a view that used ``current_user`` pays nothing more). Your callable replaces the
default lookup; it does not fall back to it. It may be called several times per request until it
returns a user, so keep it free of side effects. If it raises, the request's user is logged as
``-``, the request goes on, and the error is reported once with its traceback on the ``ctxlog``
logger.

A user may be a string, or an object: one whose ``is_authenticated`` is false is no user
(Flask-Login's anonymous user); otherwise the first of its ``get_username()``,
``display_name`` or ``username`` attribute, its ``"username"`` item (a ``sqlite3.Row`` as in the
Flask tutorial), ``get_id()`` (any Flask-Login user) or ``email`` that gives a name is logged,
else ``str()`` of it: the rule every entry point of ctxlog uses. Whatever is logged is escaped and
length-capped. A ``ctxlog.bind(user=...)`` in your code always wins over all of this.

Security
--------
The client address is the connection's peer unless that peer is one of ``trusted_proxies``, exactly
as for :class:`ctxlog.WSGIMiddleware`; see its documentation. Use ``trusted_proxies`` *instead of*
werkzeug's ``ProxyFix``: ProxyFix believes the header whoever the peer is, and a ProxyFix placed
outside ctxlog rewrites ``REMOTE_ADDR`` before ctxlog can check it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal

from ctxlog.context import request_var
from ctxlog.web.user import remote_user, user_name
from ctxlog.web.wsgi import WSGIMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from flask import Flask
    from werkzeug.wrappers import Response

__all__ = ["init_app"]

#: The key of ``app.extensions`` that holds the app's middleware.
EXTENSION: Final = "ctxlog"


def init_app(
    app: Flask,
    *,
    user: Callable[[], Any] | None = None,
    trusted_proxies: str | Iterable[str] = (),
    proxy_header: str = "X-Forwarded-For",
    request_id_header: str | Sequence[str] = "X-Request-ID",
    access_log: bool = False,
    log_query: bool = False,
    trace_context: bool | Literal["request_id"] = False,
    request_id_generator: Callable[[], str] | None = None,
    request_id_validator: Callable[[str], bool] | None = None,
    trust_request_id: Literal["any", "proxies", "never"] = "any",
    echo_request_id: bool = True,
) -> WSGIMiddleware:
    """
    Give each request of ``app`` a context, with the user the app authenticated.

    Wraps ``app.wsgi_app`` in :class:`ctxlog.WSGIMiddleware` and registers the functions that
    settle the user while Flask's request context exists. Nothing is changed when an argument is
    wrong.

    Args:
        app: The Flask application.
        user: A callable taking no arguments, called inside Flask's request context, returning
            the user (a name, a user object) or ``None``. By default ``g.user``, else the user
            Flask-Login has already loaded, else ``REMOTE_USER``; see the module documentation.
        trusted_proxies: As for :class:`ctxlog.WSGIMiddleware`.
        proxy_header: As for :class:`ctxlog.WSGIMiddleware`.
        request_id_header: As for :class:`ctxlog.WSGIMiddleware`.
        access_log: As for :class:`ctxlog.WSGIMiddleware`.
        log_query: As for :class:`ctxlog.WSGIMiddleware`.
        trace_context: As for :class:`ctxlog.WSGIMiddleware`: ``trace_id`` and ``span_id`` from
            a W3C ``traceparent`` header, ``"request_id"`` to make its trace-id the request id.
        request_id_generator: As for :class:`ctxlog.WSGIMiddleware`.
        request_id_validator: As for :class:`ctxlog.WSGIMiddleware`.
        trust_request_id: As for :class:`ctxlog.WSGIMiddleware`.
        echo_request_id: As for :class:`ctxlog.WSGIMiddleware`.

    Returns:
        The middleware now in ``app.wsgi_app``, also stored in ``app.extensions["ctxlog"]``.

    Raises:
        ImportError: Flask is not installed.
        TypeError: ``app`` is not a Flask application, or ``user`` is not callable.
        ValueError: As :class:`ctxlog.WSGIMiddleware`, for ``trusted_proxies``,
            ``proxy_header``, ``request_id_header`` and ``trace_context``.
        RuntimeError: ``init_app`` was already called for ``app``, or ``app.wsgi_app`` is
            already a :class:`ctxlog.WSGIMiddleware`: a second one would give each request two
            contexts and two request ids.

    .. versionadded:: 0.2.0
    """
    flask = _import_flask()
    _check(flask, app, user)
    middleware = WSGIMiddleware(
        app.wsgi_app,
        trusted_proxies=trusted_proxies,
        proxy_header=proxy_header,
        request_id_header=request_id_header,
        user=_flask_user(flask, user),
        access_log=access_log,
        log_query=log_query,
        trace_context=trace_context,
        request_id_generator=request_id_generator,
        request_id_validator=request_id_validator,
        trust_request_id=trust_request_id,
        echo_request_id=echo_request_id,
    )
    app.after_request(_settle_after_request)
    app.teardown_request(_settle_at_teardown)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    app.extensions[EXTENSION] = middleware
    return middleware


def _import_flask() -> ModuleType:
    try:
        import flask  # noqa: PLC0415  (Flask is an optional extra)
    except ImportError as error:
        msg = "ctxlog.flask needs Flask: pip install 'ctxlog[flask]'"
        raise ImportError(msg) from error
    return flask


def _check(flask: ModuleType, app: Flask, user: Callable[[], Any] | None) -> None:
    """Refuse what init_app cannot install: before anything is changed."""
    if not isinstance(app, flask.Flask):
        msg = f"ctxlog.flask.init_app: app {app!r} is not a Flask application"
        raise TypeError(msg)
    if EXTENSION in app.extensions:
        msg = (
            f"ctxlog.flask.init_app was already called for {app!r}; call it once per app "
            "(app.extensions['ctxlog'] holds its middleware)"
        )
        raise RuntimeError(msg)
    if isinstance(app.wsgi_app, WSGIMiddleware):
        msg = (
            f"{app!r}: app.wsgi_app is already a ctxlog.WSGIMiddleware; use either it or "
            "ctxlog.flask.init_app, not both"
        )
        # A conflict with what is already installed, like the check above, not a bad argument.
        raise RuntimeError(msg)  # noqa: TRY004
    if user is not None and not callable(user):
        msg = (
            f"user: {user!r} is not callable; pass a function without arguments that returns "
            "the user inside Flask's request context, such as lambda: g.get('user')"
        )
        raise TypeError(msg)


def _flask_user(
    flask: ModuleType, user: Callable[[], Any] | None
) -> Callable[[WSGIEnvironment], str | None]:
    """Return the middleware's user lookup: ``user()`` or the default, in Flask's context."""
    has_request_context = flask.has_request_context
    g = flask.g

    def lookup(environ: WSGIEnvironment) -> str | None:
        # Called by the middleware while the user is unknown; errors are reported there.
        if has_request_context():
            name = user_name(user() if user is not None else _default_user(g))
            if name is not None:
                return name
        return remote_user(environ) if user is None else None

    return lookup


def _default_user(g: Any) -> Any:
    # g: flask.g, whose class Flask keeps private (flask.ctx._AppCtxGlobals).
    found = g.get("user")
    if found is None:
        # Flask-Login's per-request cache: set once something asked for current_user.
        found = g.get("_login_user")
    return found


def _settle_user() -> None:
    # Resolve a pending user now, while Flask's request context exists: the access log line
    # and a streamed body come after it is gone.
    state = request_var.get()
    if state is not None and state.resolve_user is not None:
        state.current()


def _settle_after_request(response: Response) -> Response:
    _settle_user()
    return response


def _settle_at_teardown(_error: BaseException | None) -> None:
    # after_request functions are skipped when one of them raises; teardown always runs.
    _settle_user()
