"""The routes of the integration suites' Django project."""

from __future__ import annotations

from django.urls import path

from django_shop import views

urlpatterns = [
    path("health", views.health),
    path("view", views.view),
    path("aview", views.aview),
    path("boom", views.boom),
    path("aboom", views.aboom),
    path("stream", views.stream),
    path("astream", views.astream),
    path("stream-boom", views.stream_boom),
    path("slow", views.slow),
    path("burst", views.burst),
]
