"""
A Celery app and a Starlette app that publishes its tasks, for tests/test_celery.py.

The worker writes one line per task record to $CTXLOG_TASK_LOG, or sends it through
nonblocking([JSONSocketHandler]) to the receiver at $CTXLOG_RECEIVER (host:port).
"""

import logging
import os

from celery import Celery, signals
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import ctxlog
import ctxlog.celery

FORMAT = (
    "%(request_id)s|%(user)s|%(ip)s|%(tenant)s|%(task_name)s|%(task_id)s|%(parent_task_id)s|"
    "%(message)s"
)

celery = Celery("celery_shop", broker=os.environ["CTXLOG_BROKER"])
celery.conf.update(
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=8,
    task_default_queue=os.environ.get("CTXLOG_QUEUE", "celery"),
)
ctxlog.celery.install(celery, fields=("tenant",))
log = ctxlog.get_logger("shop.tasks")


@signals.setup_logging.connect
def setup_logging(**_):
    """In the worker: task records go to a file, or to a receiver, with the context."""
    receiver = os.environ.get("CTXLOG_RECEIVER")
    if receiver:
        from ctxlog.handlers import JSONSocketHandler

        host, port = receiver.rsplit(":", 1)
        handler = ctxlog.nonblocking([JSONSocketHandler(host, int(port))])
    else:
        handler = logging.FileHandler(os.environ["CTXLOG_TASK_LOG"], encoding="utf-8")
        handler.setFormatter(ctxlog.Formatter(FORMAT))
    handler.addFilter(ctxlog.ContextFilter(defaults={"tenant": "-"}))
    logger = logging.getLogger("shop")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


if os.environ.get("CTXLOG_LOG_AFTER"):

    @signals.task_postrun.connect
    def after_task(task_id=None, **_):
        """Runs after ctxlog's own task_postrun receiver (connected first, by install())."""
        log.info("after %s", task_id)


@celery.task(name="shop.work")
def work(n):
    log.info("work %s", n)


@celery.task(name="shop.parent")
def parent(n):
    log.info("parent %s", n)
    work.delay(f"{n}-child")


@celery.task(name="shop.flaky", bind=True, max_retries=2)
def flaky(self, n):
    if self.request.retries == 0:
        log.info("flaky %s try 0", n)
        raise self.retry(countdown=0.05)
    log.info("flaky %s retried", n)


@celery.task(name="shop.later")
def later(n):
    log.info("later %s", n)


def enqueue(request):
    """Publish the task the query names, as the user the X-User header names."""
    ctxlog.bind(user=request.headers["x-user"], tenant=request.headers.get("x-tenant", "-"))
    kind, n = request.query_params["kind"], request.query_params["n"]
    if kind == "work":
        work.delay(n)
    elif kind == "parent":
        parent.delay(n)
    elif kind == "flaky":
        flaky.delay(n)
    else:
        later.apply_async((n,), countdown=0.3)
    return PlainTextResponse("queued")


web = ctxlog.ASGIMiddleware(Starlette(routes=[Route("/enqueue", enqueue)]))
