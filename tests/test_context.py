"""The context API: bind, unbind, scope, get_context."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import ctxlog
import ctxlog.testing
from ctxlog.context import RequestState, request_var


def test_get_context_is_empty_outside_everything():
    """Outside any request or scope the snapshot is an empty dict."""
    assert {} == ctxlog.get_context()


def test_bind_outside_request_changes_current_context():
    """bind() outside a request shows in get_context()."""
    ctxlog.bind(job="nightly", run=3)

    assert {"job": "nightly", "run": 3} == ctxlog.get_context()


def test_bind_outside_request_changes_only_the_current_context():
    """A bind() in a copied Context does not reach the Context it was copied from."""
    ctxlog.bind(job="outer")

    def inner() -> dict[str, object]:
        ctxlog.bind(job="inner")
        return ctxlog.get_context()

    assert {"job": "inner"} == contextvars.copy_context().run(inner)
    assert {"job": "outer"} == ctxlog.get_context()


def test_get_context_returns_a_snapshot():
    """Changing the returned dict changes nothing in the context."""
    ctxlog.bind(a=1)
    snapshot = ctxlog.get_context()
    snapshot["a"] = 2

    assert {"a": 1} == ctxlog.get_context()


def test_unbind_removes_fields_and_ignores_unknown_names():
    """unbind() removes what was bound; unknown names are ignored."""
    ctxlog.bind(a=1, b=2)
    ctxlog.unbind("a", "nope")

    assert {"b": 2} == ctxlog.get_context()


def test_scope_restores_on_exit_even_after_an_exception():
    """scope() adds fields for its block and restores the previous ones afterwards."""
    ctxlog.bind(job="outer")
    with pytest.raises(RuntimeError), ctxlog.scope(job="inner", step=1):
        assert {"job": "inner", "step": 1} == ctxlog.get_context()
        raise RuntimeError

    assert {"job": "outer"} == ctxlog.get_context()


def test_nested_scopes():
    """Inner scopes add to and override outer ones, and unwind in order."""
    with ctxlog.scope(a=1):
        with ctxlog.scope(b=2, a=3):
            assert {"a": 3, "b": 2} == ctxlog.get_context()
        assert {"a": 1} == ctxlog.get_context()
    assert {} == ctxlog.get_context()


def test_scopes_in_concurrent_threads_are_isolated():
    """Two threads in their own scopes never see each other's fields."""
    seen: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        with ctxlog.scope(worker=name):
            barrier.wait(timeout=5)
            seen[name] = ctxlog.get_context()["worker"]

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)

    assert {"a": "a", "b": "b"} == seen


def test_scopes_in_concurrent_tasks_are_isolated():
    """Two asyncio tasks in their own scopes never see each other's fields."""

    async def work(name: str) -> object:
        with ctxlog.scope(task=name):
            await asyncio.sleep(0.01)
            return ctxlog.get_context()["task"]

    async def main() -> list[object]:
        return list(await asyncio.gather(work("a"), work("b")))

    assert ["a", "b"] == asyncio.run(main())


@pytest.mark.parametrize("name", ["msg", "name", "message", "asctime", "levelname", "taskName"])
def test_bind_rejects_logrecord_attribute_names(name):
    """A field named like a LogRecord attribute could never be logged, so it is refused."""
    with pytest.raises(ValueError, match=repr(name)):
        ctxlog.bind(**{name: "x"})


def test_scope_rejects_logrecord_attribute_names():
    """scope() refuses the same names as bind()."""
    with pytest.raises(ValueError, match="'args'"), ctxlog.scope(args=1):
        pass


def _request_state(**fields: object) -> RequestState:
    return RequestState(
        {"ip": "-", "user": "-", "request_id": "r1", "method": "GET", "path": "/", **fields}
    )


def test_bind_in_request_changes_the_shared_request_state():
    """Inside a request, bind() in a child Context (a task, a thread) is seen by the request."""
    state = _request_state()
    request_var.set(state)
    contextvars.copy_context().run(ctxlog.bind, user="alice")

    assert "alice" == ctxlog.get_context()["user"]
    assert "alice" == state.fields["user"]


def test_unbind_of_a_standard_field_in_request_gives_dash():
    """unbind('user') in a request puts the placeholder back."""
    with ctxlog.testing.request(user="alice", request_id="r1"):
        ctxlog.unbind("user")

        assert "-" == ctxlog.get_context()["user"]


def test_scope_in_request_wins_for_its_block_and_bind_updates_it():
    """A scope's value wins inside its block; a later bind() wins over both."""
    with ctxlog.testing.request(user="alice", request_id="r1"):
        with ctxlog.scope(user="job-runner"):
            assert "job-runner" == ctxlog.get_context()["user"]
            ctxlog.bind(user="bob")
            assert "bob" == ctxlog.get_context()["user"]
        assert "bob" == ctxlog.get_context()["user"]


def test_pending_user_is_resolved_lazily_and_bind_wins():
    """A user that becomes known later is picked up; once bound, the resolver is not asked."""
    source: dict[str, str] = {}
    calls = []

    def resolve(src: dict[str, str]) -> str | None:
        calls.append(1)
        return src.get("user")

    request_var.set(RequestState({"user": "-"}, resolve, source))
    assert "-" == ctxlog.get_context()["user"]
    source["user"] = "carol"
    assert "carol" == ctxlog.get_context()["user"]
    ctxlog.bind(user="dave")
    count = len(calls)
    assert "dave" == ctxlog.get_context()["user"]
    assert count == len(calls)


def test_bind_and_unbind_from_two_threads_of_one_request_lose_nothing():
    """An unbind() in one thread never undoes a bind() made meanwhile in another."""
    import sys

    state = RequestState(dict(ctxlog.context.DEFAULT_FIELDS))
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        def binder() -> None:
            for i in range(3_000):
                state.update({f"kept{i}": i})

        def unbinder() -> None:
            for i in range(3_000):
                state.update({"scratch": i})
                state.remove(("scratch",))

        threads = [threading.Thread(target=binder), threading.Thread(target=unbinder)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert 3_000 == sum(1 for name in state.fields if name.startswith("kept"))


def test_peer_is_reserved_for_the_receiver():
    """bind(peer=...) is refused: the receiver sets peer to the sender's address."""
    with pytest.raises(ValueError, match="'peer' is reserved"):
        ctxlog.bind(peer="10.0.0.1")
