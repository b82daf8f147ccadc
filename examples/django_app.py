"""
A one-file Django project whose every log line names the client, the user and the request.

Run it with ``python examples/django_app.py runserver`` (see examples/README.md), then::

    curl -c jar -d username=alice -d password=wonderland http://127.0.0.1:8000/login
    curl -b jar http://127.0.0.1:8000/account

``python examples/django_app.py demo`` sends a few requests through the WSGI app in-process,
and ``python examples/django_app.py check`` (or any other manage.py command) works too. For a
production server, ``application`` is the WSGI app and ``asgi_application`` the ASGI one::

    gunicorn --chdir examples django_app:application
    uvicorn --app-dir examples django_app:asgi_application

What it shows:

* The application wrapped in ``ctxlog.WSGIMiddleware`` / ``ctxlog.ASGIMiddleware``, with
  ``ctxlog.django.ContextMiddleware`` first in ``MIDDLEWARE``: the wrapper sets the context
  (and writes the access log), the Django middleware adds the logged-in user.
* A ``LOGGING`` dict with ``"()": "ctxlog.ContextFilter"`` on the handler.
* Views that never read ``request.user`` keep the session untouched: their lines say ``-`` even
  for a logged-in client. Views that read it (or await ``request.auser()``) name the user.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
from http.cookies import SimpleCookie
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import django
from django.conf import settings

import ctxlog

LOG_FORMAT = "%(asctime)s %(levelname)s %(ip)s %(user)s %(request_id)s %(name)s: %(message)s"

# What settings.py of a real project would hold.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "ctxlog.RedactFilter"},  # passwords, tokens, cookies masked first
        "context": {"()": "ctxlog.ContextFilter"},
    },
    "formatters": {"plain": {"class": "ctxlog.Formatter", "format": LOG_FORMAT}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "filters": ["redact", "context"],
            "formatter": "plain",
        },
    },
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        # Django's own records (django.request: 4xx and 5xx) go to the same handler.
        "django": {"level": "INFO", "handlers": ["console"], "propagate": False},
        # runserver's request lines are written outside the request: ctxlog.access replaces them.
        "django.server": {"level": "WARNING", "handlers": ["console"], "propagate": False},
    },
}

# Demo accounts. A real project has users in its database already.
USERS = {"alice": "wonderland", "bob": "builder"}
TRUSTED_PROXIES = os.environ.get("TRUSTED_PROXIES", "10.0.0.0/8")
DATABASE = os.environ.get(
    "DJANGO_APP_DB", str(Path(tempfile.gettempdir()) / "ctxlog-django-example.sqlite3")
)

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("SECRET_KEY", "ctxlog-example-not-secret"),
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        ROOT_URLCONF=__name__,
        WSGI_APPLICATION=f"{__name__}.application",  # what runserver serves
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        MIDDLEWARE=[
            "ctxlog.django.ContextMiddleware",  # first: everything below logs with the fields
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATABASE}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        LOGGING=LOGGING,
    )
    django.setup()

from django.contrib.auth import authenticate, login  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.http import require_POST  # noqa: E402

log = logging.getLogger("shop")


def home(request):
    log.info("home page")  # request.user is never read: no session lookup, user "-"
    return JsonResponse({"request_id": ctxlog.get_context()["request_id"]})


@require_POST
def login_view(request):
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        log.warning("failed login for %r", request.POST.get("username"))
        return HttpResponse("wrong user name or password\n", status=403)
    login(request, user)  # request.user is now this user: the next lines name them
    log.info("logged in")
    return HttpResponse("welcome\n")


def account(request):
    if not request.user.is_authenticated:
        return HttpResponse("login required\n", status=401)
    log.info("account page")
    return JsonResponse({"user": request.user.get_username()})


async def orders(request):
    user = await request.auser()
    log.info("listing orders of %s", user)
    return JsonResponse({"user": ctxlog.get_context()["user"]})


def boom(request):
    log.info("about to fail")
    msg = "something broke"
    raise RuntimeError(msg)


urlpatterns = [
    path("", home),
    path("login", login_view),
    path("account", account),
    path("orders", orders),
    path("boom", boom),
]


def prepare_database() -> None:
    """Create the tables and the demo accounts if they are missing."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    for name, password in USERS.items():
        if not User.objects.filter(username=name).exists():
            User.objects.create_user(name, password=password)


application = ctxlog.WSGIMiddleware(
    get_wsgi_application(), trusted_proxies=TRUSTED_PROXIES, access_log=True
)
# answer_lifespan: Django does not speak the lifespan protocol; ctxlog answers it for Django and
# delivers what nonblocking() handlers hold at uvicorn's shutdown.
asgi_application = ctxlog.ASGIMiddleware(
    get_asgi_application(), trusted_proxies=TRUSTED_PROXIES, access_log=True, answer_lifespan=True
)


def request(method, url, *, cookies=None, data=b"", headers=(), peer="127.0.0.1"):
    """Send one request through ``application`` (the WSGI app), as a server would."""
    environ = {}
    setup_testing_defaults(environ)
    target, _, query = url.partition("?")
    environ.update(
        REQUEST_METHOD=method,
        PATH_INFO=target,
        QUERY_STRING=query,
        REMOTE_ADDR=peer,
        CONTENT_LENGTH=str(len(data)),
        CONTENT_TYPE="application/x-www-form-urlencoded",
    )
    environ["wsgi.input"] = io.BytesIO(data)
    if cookies:
        environ["HTTP_COOKIE"] = "; ".join(f"{k}={v.value}" for k, v in cookies.items())
    for name, value in headers:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"] = status
        answer["headers"] = response_headers

    body = application(environ, start_response)
    try:
        content = b"".join(body)
    finally:
        body.close()
    if cookies is not None:
        for name, value in answer["headers"]:
            if name.lower() == "set-cookie":
                cookies.load(value)
    return answer["status"], dict(answer["headers"]), content


def demo():
    """Send a few requests through the WSGI app in this process; the log goes to stderr."""
    jar = SimpleCookie()
    request("GET", "/", headers=[("X-Request-ID", "demo-1")])
    login = b"username=alice&password=wonderland"
    request("POST", "/login", cookies=jar, data=login, headers=[("X-Request-ID", "demo-2")])
    request("GET", "/", cookies=jar, headers=[("X-Request-ID", "demo-3")])
    request("GET", "/account", cookies=jar, headers=[("X-Request-ID", "demo-4")])
    request(
        "GET",
        "/orders",
        cookies=jar,
        peer="10.0.0.1",  # a trusted proxy: the client is taken from X-Forwarded-For
        headers=[("X-Request-ID", "demo-5"), ("X-Forwarded-For", "203.0.113.7")],
    )
    request("GET", "/boom", headers=[("X-Request-ID", "demo-6")])


if __name__ == "__main__":
    prepare_database()
    if sys.argv[1:] == ["demo"]:
        demo()
    else:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
