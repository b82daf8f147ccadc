"""wrap() and ContextExecutor: work handed to threads and pools logs with the request's fields."""

from __future__ import annotations

import asyncio
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import httpx
import pytest
import webtest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import ctxlog
import ctxlog.testing
from ctxlog.context import RequestState, request_var

with warnings.catch_warnings():
    # Recent Starlette prefers the httpx2 package and warns once when it falls back to httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

log = ctxlog.get_logger("threads.app")
PROXY = ("10.0.0.1", 4000)
WATCHDOG = 10  # seconds a barrier or event may wait before the test fails instead of hanging


class BoomError(Exception):
    """Raised by a task to see it come back unchanged."""


def work(label: str) -> str:
    """Log one record, as code handed to a thread would."""
    log.info("work %s", label)
    return threading.current_thread().name


@pytest.fixture
def pool():
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ctxpool")
    with ctxlog.ContextExecutor(executor) as wrapped:
        yield wrapped


def fields(record) -> tuple[str, str, str]:
    return record.ip, record.user, record.request_id


def worked(capture) -> dict[str, object]:
    """The records of work(), by label."""
    return {r.args[0]: r for r in capture.named("threads.app") if r.msg == "work %s"}


# --- wrap() -----------------------------------------------------------------------------------


def test_wrap_runs_in_the_context_of_the_caller_of_wrap(capture):
    """A bare Thread running a wrapped function sees what was bound before wrap()."""
    ctxlog.bind(job="nightly")
    target = ctxlog.wrap(ctxlog.get_context)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(target()))
    thread.start()
    thread.join()

    assert [{"job": "nightly"}] == seen


def test_wrap_outside_request_is_a_snapshot():
    """Outside a request, a bind() made after wrap() does not reach the wrapped callable."""
    ctxlog.bind(a=1)
    wrapped = ctxlog.wrap(ctxlog.get_context)
    ctxlog.bind(b=2)

    assert {"a": 1} == wrapped()


def test_wrap_inside_request_sees_later_binds_and_its_binds_reach_the_request():
    """Inside a request, the wrapped callable shares the request holder both ways."""
    request_var.set(RequestState({"ip": "192.0.2.1", "user": "-", "request_id": "r1"}))

    def in_thread():
        ctxlog.bind(rows=3)
        return ctxlog.get_context()

    wrapped = ctxlog.wrap(in_thread)
    ctxlog.bind(user="alice")  # after wrap(): the holder is shared, so the thread sees it
    seen = []
    thread = threading.Thread(target=lambda: seen.append(wrapped()))
    thread.start()
    thread.join()

    assert [{"ip": "192.0.2.1", "user": "alice", "request_id": "r1", "rows": 3}] == seen
    assert 3 == ctxlog.get_context()["rows"]


def test_each_call_starts_from_the_captured_context():
    """A bind() outside a request in one call is seen neither by the next call nor the caller."""
    ctxlog.bind(base=True)

    def count():
        seen = ctxlog.get_context()
        ctxlog.bind(calls=seen.get("calls", 0) + 1)
        return ctxlog.get_context()

    wrapped = ctxlog.wrap(count)

    assert [{"base": True, "calls": 1}] * 2 == [wrapped(), wrapped()]
    assert {"base": True} == ctxlog.get_context()


def test_wrapped_callable_runs_in_two_threads_at_once():
    """Concurrent calls of one wrapper never raise 'cannot enter context'."""
    barrier = threading.Barrier(2, timeout=WATCHDOG)
    ctxlog.bind(job="shared")

    def both_inside() -> dict[str, object]:
        barrier.wait()  # both threads are inside the wrapper's Context now
        return ctxlog.get_context()

    wrapped = ctxlog.wrap(both_inside)
    with ThreadPoolExecutor(max_workers=2) as executor:
        results = [f.result() for f in [executor.submit(wrapped), executor.submit(wrapped)]]

    assert [{"job": "shared"}] * 2 == results


def test_wrapped_callable_can_call_itself():
    """A wrapper called from inside itself (recursion) enters a fresh copy, not the same one."""
    ctxlog.bind(depth="-")

    def countdown(n: int) -> int:
        return 0 if n == 0 else 1 + wrapped(n - 1)

    wrapped = ctxlog.wrap(countdown)

    assert 5 == wrapped(5)


def test_wrap_passes_arguments_results_and_exceptions_through():
    """Arguments reach fn, its result comes back, and its exception is the same object."""
    error = BoomError("no")

    def fail():
        raise error

    assert (1, 2) == ctxlog.wrap(lambda a, *, b: (a, b))(1, b=2)
    with pytest.raises(BoomError) as info:
        ctxlog.wrap(fail)()
    assert error is info.value


def test_wrap_keeps_name_and_docstring():
    """The wrapper looks like fn (functools.wraps) and knows what it wraps."""
    wrapped = ctxlog.wrap(work)

    assert ("work", work.__doc__, work) == (wrapped.__name__, wrapped.__doc__, wrapped.__wrapped__)


def test_wrap_refuses_what_is_not_callable():
    """A non-callable is refused at once, not in the thread that would call it."""
    with pytest.raises(TypeError, match=r"needs a callable, got 'work'"):
        ctxlog.wrap("work")  # type: ignore[arg-type]


# --- ContextExecutor --------------------------------------------------------------------------


def test_submit_and_map_use_the_submitters_context(pool):
    """Each task runs in a copy of the Context of the code that submitted it."""
    with ctxlog.scope(job="a"):
        first = pool.submit(ctxlog.get_context)
        mapped = pool.map(lambda n: (n, ctxlog.get_context()), range(3))
    with ctxlog.scope(job="b"):
        second = pool.submit(ctxlog.get_context)

    assert [{"job": "a"}, {"job": "b"}] == [first.result(), second.result()]
    assert [(0, {"job": "a"}), (1, {"job": "a"}), (2, {"job": "a"})] == list(mapped)


def test_submit_passes_arguments_and_exceptions_through(pool):
    """Arguments reach the task; its exception comes out of the future as the same object."""
    error = BoomError("no")

    def fail(*args, **kwargs):
        raise error

    assert ((1,), {"b": 2}) == pool.submit(lambda *a, **k: (a, k), 1, b=2).result()
    future = pool.submit(fail, 1, b=2)
    with pytest.raises(BoomError) as info:
        future.result()
    assert error is info.value
    assert error is future.exception()
    with pytest.raises(BoomError) as from_map:
        list(pool.map(fail, [1]))
    assert error is from_map.value


def test_a_task_leaves_nothing_in_the_pool_thread():
    """bind() and scope() in a task stay in its copy; the next task on that thread starts clean."""
    executor = ThreadPoolExecutor(max_workers=1)
    wrapped = ctxlog.ContextExecutor(executor)

    def dirty():
        ctxlog.bind(leaked="bind")
        scope = ctxlog.scope(also="scope")
        scope.__enter__()  # never exited
        return ctxlog.get_context()

    with wrapped:
        with ctxlog.scope(job="first"):
            during = wrapped.submit(dirty).result()
        after_wrapped = wrapped.submit(ctxlog.get_context).result()
        after_raw = executor.submit(ctxlog.get_context).result()

    assert {"job": "first", "leaked": "bind", "also": "scope"} == during
    assert ({}, {}) == (after_wrapped, after_raw)
    assert {} == ctxlog.get_context()


def test_leaving_the_with_block_shuts_the_executor_down():
    """The wrapper is a context manager whose exit shuts the wrapped executor down."""
    executor = ThreadPoolExecutor(max_workers=1)
    with ctxlog.ContextExecutor(executor) as wrapped:
        assert executor is wrapped.executor
        assert f"ContextExecutor({executor!r})" == repr(wrapped)

    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(print)


def test_shutdown_passes_cancel_futures_on():
    """shutdown(wait=False, cancel_futures=True) cancels what the wrapped pool has not started."""
    executor = ThreadPoolExecutor(max_workers=1)
    wrapped = ctxlog.ContextExecutor(executor)
    release = threading.Event()
    running = wrapped.submit(release.wait, WATCHDOG)
    waiting = wrapped.submit(ctxlog.get_context)

    wrapped.shutdown(wait=False, cancel_futures=True)
    release.set()

    assert running.result() is True
    assert waiting.cancelled()
    executor.shutdown()


def test_process_pools_are_refused():
    """A Context cannot travel to another process: a ProcessPoolExecutor is refused."""
    with (
        ProcessPoolExecutor(max_workers=1) as processes,
        pytest.raises(TypeError, match="processes"),
    ):
        ctxlog.ContextExecutor(processes)


def test_without_the_helpers_a_thread_logs_dashes_never_another_request(capture):
    """The problem being solved: a bare Thread or pool starts with an empty Context."""
    with ctxlog.testing.request(ip="192.0.2.1", user="alice", request_id="r1"):
        thread = threading.Thread(target=work, args=("bare",))
        thread.start()
        thread.join()
        with ThreadPoolExecutor(max_workers=1) as executor:
            executor.submit(work, "raw pool").result()

    records = worked(capture)
    assert [("-", "-", "-")] * 2 == [fields(records["bare"]), fields(records["raw pool"])]


# --- Through the WSGI middleware --------------------------------------------------------------


def wsgi_app(pool):
    """A WSGI view handing work to a bare Thread, pool.submit() and pool.map()."""

    def enrich():
        ctxlog.bind(rows=3)  # reaches the request: its later records and the access line
        log.info("work %s", "enrich")

    def app(environ, start_response):
        thread = threading.Thread(target=ctxlog.wrap(work), args=("thread",))
        thread.start()
        thread.join()
        pool.submit(work, "submit").result()
        list(pool.map(work, ["map-0", "map-1"]))
        pool.submit(enrich).result()
        log.info("view done")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return ctxlog.WSGIMiddleware(app, access_log=True)


def test_wsgi_work_in_threads_logs_with_the_request(capture, pool):
    """Records from a Thread, submit() and map() carry the request's ip, user and request id."""
    app = webtest.TestApp(wsgi_app(pool), extra_environ={"REMOTE_ADDR": "192.0.2.7"})
    app.get("/", headers={"X-Request-ID": "w-1"}, extra_environ={"REMOTE_USER": "alice"})

    records = worked(capture)
    assert {"thread", "submit", "map-0", "map-1", "enrich"} == set(records)
    assert all(r.threadName != threading.current_thread().name for r in records.values())
    assert {("192.0.2.7", "alice", "w-1")} == {fields(r) for r in records.values()}
    view_done = next(r for r in capture.named("threads.app") if r.msg == "view done")
    access = capture.named("ctxlog.access")[0]
    assert [3, 3] == [view_done.rows, access.rows]
    assert [("192.0.2.7", "alice", "w-1")] * 2 == [fields(view_done), fields(access)]


def test_wsgi_pool_thread_is_clean_after_the_request(capture):
    """After a request, tasks submitted outside any request log '-' on the same pool thread."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="single")
    with ctxlog.ContextExecutor(executor) as pool:
        app = webtest.TestApp(wsgi_app(pool), extra_environ={"REMOTE_ADDR": "192.0.2.7"})
        app.get("/", headers={"X-Request-ID": "w-2"})
        wrapped_name = pool.submit(work, "after, wrapped").result()
        raw_name = executor.submit(work, "after, raw").result()
        context_in_pool = executor.submit(ctxlog.get_context).result()

    records = worked(capture)
    assert "single_0" == wrapped_name == raw_name == records["submit"].threadName
    assert "w-2" == records["submit"].request_id
    assert [("-", "-", "-")] * 2 == [
        fields(records["after, wrapped"]),
        fields(records["after, raw"]),
    ]
    assert {} == context_in_pool


def test_wsgi_task_finishing_after_its_request_keeps_that_request(capture):
    """A task still queued when its request ended logs its own request, not a later one."""
    executor = ThreadPoolExecutor(max_workers=1)
    release = threading.Event()
    late = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/first":
            executor.submit(release.wait, WATCHDOG)  # keeps the only worker busy
            late.append(ctxlog.ContextExecutor(executor).submit(work, "late"))
        else:
            log.info("second request")
        start_response("200 OK", [])
        return [b""]

    with executor:
        test_app = webtest.TestApp(
            ctxlog.WSGIMiddleware(app), extra_environ={"REMOTE_ADDR": "192.0.2.8"}
        )
        test_app.get("/first", headers={"X-Request-ID": "first"})
        test_app.get("/second", headers={"X-Request-ID": "second"})
        release.set()
        late[0].result()

    assert "first" == worked(capture)["late"].request_id


def test_wsgi_200_concurrent_requests_on_a_shared_pool(capture, pool):
    """200 requests served by 16 threads hand work to one pool of 4: zero mismatches."""

    def app(environ, start_response):
        i = environ["HTTP_X_REQUEST_ID"]
        thread = threading.Thread(target=ctxlog.wrap(work), args=(f"{i}:thread",))
        thread.start()
        futures = [pool.submit(work, f"{i}:submit-{n}") for n in range(2)]
        list(pool.map(work, [f"{i}:map-{n}" for n in range(2)]))
        for future in futures:
            future.result()
        thread.join()
        start_response("200 OK", [])
        return [b""]

    middleware = ctxlog.WSGIMiddleware(app)

    def request(i: int) -> None:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "REMOTE_ADDR": f"10.2.0.{i}",
            "REMOTE_USER": f"user{i}",
            "HTTP_X_REQUEST_ID": str(i),
        }
        body = middleware(environ, lambda *a: None)
        list(body)
        body.close()

    with ThreadPoolExecutor(max_workers=16) as server:
        list(server.map(request, range(200)))

    records = capture.named("threads.app")
    assert 5 * 200 == len(records)
    sent_by = [r.args[0].split(":")[0] for r in records]  # the label starts with the request
    wrong = [
        r
        for r, i in zip(records, sent_by, strict=True)
        if fields(r) != (f"10.2.0.{i}", f"user{i}", i)
    ]
    assert [] == wrong


# --- Through the ASGI middleware --------------------------------------------------------------


def asgi_app(pool):
    """A Starlette app whose async and sync views hand work to threads and the pool."""

    def enrich():
        ctxlog.bind(rows=5)
        log.info("work %s", "enrich")

    async def async_view(request):
        loop = asyncio.get_running_loop()
        thread = threading.Thread(target=ctxlog.wrap(work), args=("thread",))
        thread.start()
        await asyncio.to_thread(thread.join)
        await asyncio.wrap_future(pool.submit(work, "submit"))
        await loop.run_in_executor(pool, work, "run_in_executor")
        await asyncio.to_thread(lambda: list(pool.map(work, ["map-0", "map-1"])))
        await asyncio.wrap_future(pool.submit(enrich))
        log.info("view done")
        return JSONResponse({})

    def sync_view(request):  # Starlette runs it in its own thread pool
        pool.submit(work, "from sync view").result()
        return JSONResponse({})

    app = Starlette(routes=[Route("/async", async_view), Route("/sync", sync_view)])
    return ctxlog.ASGIMiddleware(app, access_log=True, trusted_proxies=["10.0.0.0/8"])


def test_asgi_work_in_threads_logs_with_the_request(capture, pool):
    """Records from a Thread, submit(), run_in_executor() and map() carry the request's fields."""
    with TestClient(asgi_app(pool), client=PROXY) as client:
        client.get("/async", headers={"X-Request-ID": "a-1", "X-Forwarded-For": "203.0.113.5"})
        client.get("/sync", headers={"X-Request-ID": "a-2", "X-Forwarded-For": "203.0.113.6"})

    records = worked(capture)
    assert {
        "thread",
        "submit",
        "run_in_executor",
        "map-0",
        "map-1",
        "enrich",
        "from sync view",
    } == set(records)
    assert {"ctxpool_0", "ctxpool_1", "ctxpool_2", "ctxpool_3"} >= {
        records["submit"].threadName,
        records["from sync view"].threadName,
    }
    assert {("203.0.113.5", "-", "a-1")} == {
        fields(r) for k, r in records.items() if k != "from sync view"
    }
    assert ("203.0.113.6", "-", "a-2") == fields(records["from sync view"])
    view_done = next(r for r in capture.named("threads.app") if r.msg == "view done")
    access = [r for r in capture.named("ctxlog.access") if r.request_id == "a-1"]
    assert [5, 5] == [view_done.rows, access[0].rows]


def test_asgi_200_concurrent_requests_on_a_shared_pool(capture, pool):
    """200 concurrent ASGI requests hand work to one pool of 4: zero mismatches, clean after."""

    async def view(request):
        i = request.path_params["i"]
        ctxlog.bind(user=f"user{i}")
        await asyncio.wrap_future(pool.submit(work, f"{i}:submit"))
        await asyncio.gather(
            *(asyncio.wrap_future(pool.submit(work, f"{i}:gather-{n}")) for n in range(2))
        )
        await asyncio.wrap_future(pool.submit(lambda: ctxlog.bind(worker=i)))
        log.info("view done")
        return JSONResponse({})

    app = ctxlog.ASGIMiddleware(
        Starlette(routes=[Route("/r/{i:int}", view)]),
        access_log=True,
        trusted_proxies=["10.0.0.0/8"],
    )

    async def main():
        transport = httpx.ASGITransport(app=app, client=PROXY)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            responses = await asyncio.gather(
                *(
                    client.get(
                        f"/r/{i}",
                        headers={"X-Request-ID": str(i), "X-Forwarded-For": f"198.51.100.{i}"},
                    )
                    for i in range(200)
                )
            )
        return [r.status_code for r in responses], pool.submit(ctxlog.get_context).result()

    statuses, after = asyncio.run(main())

    assert [200] * 200 == statuses
    records = capture.named("threads.app") + capture.named("ctxlog.access")
    assert 5 * 200 == len(records)  # 3 tasks, the view's last line, the access line
    wrong = [
        r
        for r in records
        if fields(r) != (f"198.51.100.{r.request_id}", f"user{r.request_id}", r.request_id)
    ]
    assert [] == wrong
    late = [r for r in records if r.msg == "view done" or r.name == "ctxlog.access"]
    assert [] == [r for r in late if r.worker != int(r.request_id)]
    assert {} == after
