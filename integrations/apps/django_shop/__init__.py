"""The Django project of the integration suites (``DJANGO_SETTINGS_MODULE=django_shop.settings``)."""
