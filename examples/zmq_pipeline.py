"""
Ship log records from application processes to one collector over ZeroMQ (PUSH/PULL).

Needs pyzmq (``pip install 'ctxlog[zmq]'``). In two terminals::

    python examples/zmq_pipeline.py collect     # prints every record that arrives, until Ctrl-C
    python examples/zmq_pipeline.py send        # run it as often as you like, in parallel too

Or both in one process, which sends a few records, prints them as collected and exits::

    python examples/zmq_pipeline.py demo

What it shows:

* The sender puts ``ctxlog.zmq.ZMQQueueHandler`` on the root logger: each log call stamps the
  context (``ip``, ``user``, ``request_id``, bound fields) on the record, encodes it as one
  frame and hands it to ZeroMQ without waiting. Started before the collector, it keeps the
  records in ZeroMQ's queue until the collector is up.
* The collector's ``ctxlog.zmq.ZMQQueueListener`` binds the address, checks and decodes each
  frame and gives the record to an ordinary ``StreamHandler``, which prints the sender's context
  fields and renders a traceback once.

``ZMQ_ADDRESS`` (default ``tcp://127.0.0.1:5556``) sets the address. With ``CTXLOG_SECRET`` set
(16 characters or more) on both sides, frames are signed and the collector refuses the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading

import ctxlog
from ctxlog.zmq import ZMQQueueHandler, ZMQQueueListener

LOG_FORMAT = (
    "%(asctime)s %(levelname)s %(ip)s %(user)s %(request_id)s pid=%(process)d %(name)s: %(message)s"
)
ADDRESS = os.environ.get("ZMQ_ADDRESS", "tcp://127.0.0.1:5556")
SECRET = os.environ.get("CTXLOG_SECRET") or None

log = logging.getLogger("shop")


def send(address: str = ADDRESS) -> ZMQQueueHandler:
    """Log what a request of a web app would, through a ZeroMQ handler on the root logger."""
    handler = ZMQQueueHandler(address, secret=SECRET)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # What the WSGI/ASGI middleware does for each request:
    with ctxlog.scope(ip="203.0.113.7", user="alice", request_id="4be1c0d2a9f34e6b"):
        ctxlog.bind(order=1042)
        log.info("paid %s EUR for order %s", 12, 1042)
        try:
            {}["coupon"]
        except KeyError:
            log.exception("coupon lookup failed")
    log.info("done, outside any request")
    return handler


def collect(address: str = ADDRESS) -> None:
    """Print every record that arrives at ``address`` until Ctrl-C or SIGTERM."""
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(ctxlog.Formatter(LOG_FORMAT))
    listener = ZMQQueueListener(address, console, secret=SECRET)
    listener.start()
    print(f"collecting on {listener.endpoint}; Ctrl-C to stop", file=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    listener.stop()


class _Count(logging.Handler):
    def __init__(self, expect: int) -> None:
        super().__init__()
        self.left = expect
        self.done = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.left -= 1
        if self.left <= 0:
            self.done.set()


def demo() -> int:
    """Collect on a free port, send three records to it, print them, and stop."""
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(ctxlog.Formatter(LOG_FORMAT))
    count = _Count(3)
    listener = ZMQQueueListener("tcp://127.0.0.1:*", console, count, secret=SECRET)
    listener.start()
    handler = send(str(listener.endpoint))
    arrived = count.done.wait(10)
    listener.stop()
    logging.getLogger().removeHandler(handler)
    handler.close()
    return 0 if arrived else 1


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "demo"
    if command == "collect":
        collect()
    elif command == "send":
        send()
    elif command == "demo":
        return demo()
    else:
        print(f"usage: {argv[0]} [collect | send | demo]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
