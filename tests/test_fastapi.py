"""ctxlog.fastapi.bind_user: the user of the app's own auth dependency on the request's records."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException

import ctxlog
from ctxlog.fastapi import bind_user

log = logging.getLogger("shop.api")


@dataclasses.dataclass
class User:
    username: str
    email: str = ""


def make_app(*, app_level: bool = True, sync_dependency: bool = False) -> tuple[FastAPI, list]:
    calls: list[str] = []

    async def current_user(x_token: str | None = Header(default=None)) -> User | None:
        calls.append(x_token or "")
        if x_token is None:
            return None
        if x_token == "bad":
            raise HTTPException(status_code=401, detail="bad token")
        return User(username=x_token.removeprefix("token-"))

    def current_user_sync(x_token: str | None = Header(default=None)) -> User | None:
        calls.append(x_token or "")
        return User(username=x_token.removeprefix("token-")) if x_token else None

    dependency = current_user_sync if sync_dependency else current_user
    app = FastAPI(dependencies=[Depends(bind_user(dependency))] if app_level else [])

    @app.get("/orders")
    async def orders(user: User | None = Depends(dependency)):
        log.info("listing orders")
        return {"user": user.username if user else None}

    @app.get("/sync")
    def sync_orders(user: User | None = Depends(bind_user(dependency))):
        log.info("sync view")
        return {"user": user.username if user else None}

    return ctxlog.ASGIMiddleware(app, access_log=True, trusted_proxies="127.0.0.1"), calls


async def get(app, path, **headers):
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers={k.replace("_", "-"): v for k, v in headers.items()})


def fields(capture, name):
    return [(r.user, r.request_id) for r in capture.records if r.name == name]


def test_the_dependency_user_is_on_the_view_and_access_records(capture):
    """The user the auth dependency returned is on the view's record and the access line."""
    app, calls = make_app()
    response = asyncio.run(get(app, "/orders", x_token="token-alice", x_request_id="r-1"))
    assert 200 == response.status_code
    assert [("alice", "r-1")] == fields(capture, "shop.api")
    assert [("alice", "r-1")] == fields(capture, "ctxlog.access")
    assert ["token-alice"] == calls  # FastAPI ran the app's dependency once, not twice


def test_anonymous_and_rejected_requests_log_a_dash(capture):
    """No user, or an auth dependency that refuses, leaves the user as '-'."""
    app, _ = make_app()
    anonymous = asyncio.run(get(app, "/orders", x_request_id="r-2"))
    refused = asyncio.run(get(app, "/orders", x_token="bad", x_request_id="r-3"))
    assert (200, 401) == (anonymous.status_code, refused.status_code)
    assert [("-", "r-2")] == fields(capture, "shop.api")
    assert [("-", "r-2"), ("-", "r-3")] == fields(capture, "ctxlog.access")


def test_route_level_dependency_and_sync_view(capture):
    """bind_user() used on one route, with a sync view run in the thread pool."""
    app, _ = make_app(app_level=False)
    response = asyncio.run(get(app, "/sync", x_token="token-bob", x_request_id="r-4"))
    assert {"user": "bob"} == response.json()
    assert [("bob", "r-4")] == fields(capture, "shop.api")
    assert [("bob", "r-4")] == fields(capture, "ctxlog.access")


def test_a_sync_auth_dependency(capture):
    """An auth dependency written with def (run in the thread pool) binds the same way."""
    app, _ = make_app(sync_dependency=True)
    asyncio.run(get(app, "/orders", x_token="token-carol", x_request_id="r-5"))
    assert [("carol", "r-5")] == fields(capture, "shop.api")
    assert [("carol", "r-5")] == fields(capture, "ctxlog.access")


def test_concurrent_requests_keep_their_own_users(capture):
    """200 concurrent requests from different users: every record names its own user."""
    app, _ = make_app()

    async def burst():
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await asyncio.gather(
                *(
                    client.get(
                        "/orders", headers={"x-token": f"token-u{n}", "x-request-id": f"c-{n}"}
                    )
                    for n in range(200)
                )
            )

    asyncio.run(burst())
    records = [r for r in capture.records if r.name in {"shop.api", "ctxlog.access"}]
    assert 400 == len(records)
    assert all(r.user == "u" + r.request_id.removeprefix("c-") for r in records)


def test_names_are_derived_and_escaped():
    """The default name: strings, username, get_username(), email, is_authenticated."""
    from ctxlog.web.user import user_name as _default_name

    class Anonymous:
        is_authenticated = False

    class DjangoLike:
        is_authenticated = True

        def get_username(self):
            return "dora"

    assert "eve" == _default_name("eve")
    assert None is _default_name("")
    assert None is _default_name(None)
    assert None is _default_name(Anonymous())
    assert "dora" == _default_name(DjangoLike())
    assert "f@example.com" == _default_name(User(username="", email="f@example.com"))


def test_a_forged_line_in_a_user_name_is_escaped(capture):
    """A user name with a line break is bound escaped, like names the middleware finds."""
    app, _ = make_app()
    asyncio.run(get(app, "/orders", x_token="token-mal\tlory", x_request_id="r-6"))
    assert [("mal\\tlory", "r-6")] == fields(capture, "shop.api")


def test_custom_name_and_bad_arguments(capture):
    """name= picks the field to log; a non-callable is refused at once."""

    async def current_user() -> User:
        return User(username="grace", email="grace@example.com")

    app = FastAPI(dependencies=[Depends(bind_user(current_user, name=lambda u: u.email))])

    @app.get("/")
    async def home():
        log.info("home")
        return {}

    asyncio.run(get(ctxlog.ASGIMiddleware(app), "/", x_request_id="r-7"))
    assert [("grace@example.com", "r-7")] == fields(capture, "shop.api")
    with pytest.raises(TypeError, match="not a dependency"):
        bind_user("get_current_user")
    with pytest.raises(TypeError, match="name="):
        bind_user(current_user, name="email")
