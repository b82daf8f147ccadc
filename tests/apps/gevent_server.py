"""
A WSGI app under gevent's own server, with the standard library monkey-patched (test_gevent.py).

Usage: ``python gevent_server.py LOG_FILE REQUESTS``. It serves ``REQUESTS`` concurrent requests
from greenlets of its own over 127.0.0.1, every view and every step of its streamed body yielding
to the others between its log calls, then prints one JSON line: the ``nonblocking()`` counters once flushed. Records go to ``LOG_FILE``
through ``ctxlog.nonblocking()`` as ``request_id user kind seen_request_id`` lines.
"""

from gevent import monkey

monkey.patch_all()

import http.client  # noqa: E402 - after patch_all, as gevent requires
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.pywsgi  # noqa: E402

import ctxlog  # noqa: E402

log = ctxlog.get_logger("gevent.app")


def app(environ, start_response):
    seen = environ["HTTP_X_REQUEST_ID"]
    for step in range(3):
        log.info("step%d %s", step, seen)
        gevent.sleep(0.001 * (hash(seen) % 5))
    # gevent gives a spawned greenlet an empty context: only a wrapped function keeps the fields.
    gevent.spawn(log.info, "spawned %s", seen).join()
    gevent.spawn(ctxlog.wrap(log.info), "wrapped %s", seen).join()
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        # Steps of the body, yielding to the other greenlets in between and inside a step.
        for part in range(2):
            gevent.sleep(0.001 * (hash(seen) % 3))
            log.info("body%d %s", part, seen)
            yield b"ok"

    return body()


def visit(port: int, seq: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/", headers={"X-Request-ID": f"g-{seq}", "X-User": f"user-{seq}"})
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"request {seq}: status {response.status}")


def main() -> None:
    path, count = sys.argv[1], int(sys.argv[2])
    target = logging.FileHandler(path, encoding="utf-8")
    target.setFormatter(logging.Formatter("%(request_id)s %(user)s %(message)s"))
    handler = ctxlog.nonblocking([target])
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    middleware = ctxlog.WSGIMiddleware(app, user=lambda environ: environ.get("HTTP_X_USER"))
    server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), middleware, log=None, error_log=None)
    server.start()
    gevent.joinall([gevent.spawn(visit, server.server_port, seq) for seq in range(count)])
    server.stop()
    handler.flush(timeout=30)
    print(json.dumps(handler.stats()))


if __name__ == "__main__":
    main()
