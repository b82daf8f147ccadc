"""
One request id from the web app, through a Celery task, into a call to a second service.

    python examples/follow_request.py [--broker redis://127.0.0.1:6379/0]

It runs three parts in one process, each as it would run on its own: the shop (Starlette under
uvicorn), a Celery worker (a thread, solo pool) and the pricing service (Starlette under
uvicorn). It sends one order to the shop as alice; the shop publishes a task, the task asks
the pricing service for a price with httpx. Every line printed carries the same request id:

    4be1c0d2... alice  -          shop: order 7 received
    4be1c0d2... alice  shop.price shop.tasks: pricing order 7
    4be1c0d2... -      -          pricing: price asked for order 7
    4be1c0d2... alice  shop.price shop.tasks: order 7 costs 12 EUR

Needs Redis (``apt install redis-server``) and ``pip install ctxlog[celery] starlette uvicorn
httpx``.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
import time

import httpx
import uvicorn
from celery import Celery
from celery.contrib.testing.worker import start_worker
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import ctxlog
import ctxlog.celery
import ctxlog.outgoing

FORMAT = "%(request_id)s %(user)-6s %(task_name)-10s %(name)s: %(message)s"

celery = Celery("shop")
celery.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)
ctxlog.celery.install(celery)
log = ctxlog.get_logger("shop")
pricing = {"url": ""}  # set by main() once the pricing service listens
done = threading.Event()  # set by the task, which runs in this process's worker thread


# --- the shop: takes an order, hands the pricing to a task --------------------------------------


async def order(request):
    ctxlog.bind(user=request.query_params.get("user", "-"))  # stands for your authentication
    number = request.query_params["order"]
    log.info("order %s received", number)
    price.delay(number)
    return PlainTextResponse("accepted\n")


shop = ctxlog.ASGIMiddleware(Starlette(routes=[Route("/order", order)]))


# --- the task: runs in the worker, calls the pricing service ------------------------------------


@celery.task(name="shop.price")
def price(number):
    tasks = ctxlog.get_logger("shop.tasks")
    tasks.info("pricing order %s", number)
    with httpx.Client(event_hooks=ctxlog.outgoing.httpx_hooks()) as client:
        amount = client.get(pricing["url"], params={"order": number}).json()["amount"]
    tasks.info("order %s costs %s EUR", number, amount)
    done.set()


# --- the pricing service: another app, taking the request id it is called with ------------------


async def quote(request):
    ctxlog.get_logger("pricing").info("price asked for order %s", request.query_params["order"])
    return JSONResponse({"amount": 12})


pricing_service = ctxlog.ASGIMiddleware(Starlette(routes=[Route("/price", quote)]))


def serve(app, name):
    """Run ``app`` under uvicorn in a thread; return its port once it listens."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return sock.getsockname()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    celery.conf.broker_url = args.broker

    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(ctxlog.RedactFilter())  # passwords, tokens, cookies masked first
    handler.addFilter(ctxlog.ContextFilter())
    handler.setFormatter(ctxlog.Formatter(FORMAT))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    for ours in ("shop", "pricing"):  # the worker sets the root logger's level: name ours
        logging.getLogger(ours).setLevel(logging.INFO)

    pricing["url"] = f"http://127.0.0.1:{serve(pricing_service, 'pricing')}/price"
    shop_port = serve(shop, "shop")
    with start_worker(celery, perform_ping_check=False, loglevel="WARNING"):
        httpx.get(f"http://127.0.0.1:{shop_port}/order", params={"order": 7, "user": "alice"})
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
    if not done.is_set():
        sys.exit("the task did not finish within 30 s: is the broker running?")


if __name__ == "__main__":
    main()
