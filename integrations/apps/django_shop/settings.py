"""
Settings of the integration suites' Django project: what a project's settings.py would hold.

``ctxlog.django.ContextMiddleware`` comes after ``AuthenticationMiddleware`` and the project's
own HTTP basic auth (``django_shop.auth``); the WSGI and ASGI applications are wrapped in
ctxlog's middleware (``wsgi.py``, ``asgi.py``), as the documentation recommends. ``LOGGING`` is
``_applog``'s: every logger, Django's included, to one JSON-lines file behind
``ctxlog.nonblocking()``.

The database is a SQLite file (``CTXLOG_DJANGO_DB``) that ``python -m django_shop.prepare``
fills with the users ``user-1`` ... ``user-2999``, password ``secret``.
"""

from __future__ import annotations

import os

import _applog

SECRET_KEY = "ctxlog-integrations-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "django_shop.urls"
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_shop.auth.basic_auth",
    "ctxlog.django.ContextMiddleware",
]
# Sessions in signed cookies: no session table to create or write.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CTXLOG_DJANGO_DB", "django_shop.sqlite3"),
    }
}
# A fast hasher: 200 logins at once with PBKDF2 would take the machine for seconds. Tests only.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
TEMPLATES: list[dict[str, object]] = []
# The request fields reach Django's records through the filter in _applog's configuration.
LOGGING = _applog.logging_config(
    os.environ[_applog.LOG_ENV], pause=float(os.environ.get(_applog.PAUSE_ENV, "0"))
)
