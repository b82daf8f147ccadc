"""
Create the project's database: ``CTXLOG_DJANGO_DB=path python -m django_shop.prepare``.

The tables of ``django.contrib.auth``, and the users ``user-1`` ... ``user-2999`` with the
password ``secret`` (the visitors of the integration suites).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_shop.settings")
os.environ.setdefault("CTXLOG_INTEGRATION_LOG", os.devnull)

import django

#: How many users the database holds.
USERS = 3000


def main() -> None:
    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    password = make_password("secret")
    User.objects.bulk_create(
        User(username=f"user-{number}", password=password) for number in range(1, USERS)
    )


if __name__ == "__main__":
    main()
