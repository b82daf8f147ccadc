"""
The log every integration app writes: JSON lines, through ``ctxlog.nonblocking()``, to one file.

A pairing's server process configures logging with :func:`logging_config` (uvicorn
``--log-config file.json``, hypercorn ``--log-config json:file.json``, gunicorn
``logconfig_dict`` in a ``-c`` file); the test reads the file back with :func:`read_records`.
The file's path comes from ``CTXLOG_INTEGRATION_LOG`` when the app configures logging itself.

This module is imported by the server processes (``integrations/`` is on their ``PYTHONPATH``),
so it needs nothing but the standard library and ctxlog.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import time
from pathlib import Path
from typing import Any

from ctxlog.queue import NonBlockingHandler

#: The environment variable that names the log file of an integration app.
LOG_ENV = "CTXLOG_INTEGRATION_LOG"
#: The environment variable with the seconds each record takes to be written (see SlowFileHandler).
PAUSE_ENV = "CTXLOG_INTEGRATION_PAUSE"

#: Added to the log file's name: while that file exists, the destination writes nothing.
HOLD_SUFFIX = ".hold"
#: The longest a held destination waits, in seconds: a failure bound, never reached by a test.
HOLD_LIMIT = 60.0

#: The request fields ctxlog puts on records.
FIELDS = ("ip", "user", "request_id", "method", "path")

#: The loggers of the servers and frameworks: each is routed to the root's handler. A logger
#: that a process never uses costs nothing here.
SERVER_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "hypercorn.error",
    "hypercorn.access",
    "gunicorn.error",
    "gunicorn.access",
    "waitress",
    "django",
    "django.request",
    "django.server",
    "fastapi",
    "ctxlog",
    "ctxlog.access",
)


class JSONLines(logging.Formatter):
    """Format a record as one JSON object on one line, with ctxlog's request fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as JSON; a field the record lacks is ``null``."""
        exc_text = record.exc_text
        if record.exc_info and not exc_text:
            exc_text = self.formatException(record.exc_info)
        document: dict[str, Any] = {
            "level": record.levelname,
            "name": record.name,
            "message": record.getMessage(),
            **{name: getattr(record, name, None) for name in FIELDS},
            "exc_text": exc_text or None,
            "status": getattr(record, "status", None),  # on ctxlog.access records
            "pid": record.process,
            "thread": record.thread,
            "created": record.created,
        }
        return json.dumps(document, default=str)


class SlowFileHandler(logging.FileHandler):
    """
    A file handler that takes ``pause`` seconds per record: a slow destination.

    Behind ``nonblocking()`` it keeps records waiting in the queue, which is what a shutdown
    test needs to prove that they are delivered all the same. And while a file named like the
    log with ``.hold`` added exists (``AppLog.hold``), it writes nothing at all (for at most
    ``HOLD_LIMIT`` seconds): the destination is down, the records surely wait in the queue.
    """

    def __init__(self, filename: str, pause: float = 0.0) -> None:
        super().__init__(filename, encoding="utf-8")
        self.pause = pause
        self.hold = Path(self.baseFilename + HOLD_SUFFIX)

    def emit(self, record: logging.LogRecord) -> None:
        """Wait while the destination is held, and ``pause`` seconds; then write the record."""
        deadline = time.monotonic() + HOLD_LIMIT
        while self.hold.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.pause:
            time.sleep(self.pause)
        super().emit(record)


def logging_config(path: str | os.PathLike[str], *, pause: float = 0.0) -> dict[str, Any]:
    """
    Return a ``dictConfig`` dict: root and every server logger to ``nonblocking([file])``.

    Args:
        path: The JSON-lines file.
        pause: Seconds each record takes to be written (0: as fast as the disk).
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # Behind the queue, where no request exists: it must never overwrite what the queue
        # handler stamped in the logging thread (a record stamped there says "-" for all).
        "filters": {"context": {"()": "ctxlog.ContextFilter"}},
        "formatters": {"json": {"()": "_applog.JSONLines"}},
        "handlers": {
            "file": {
                "()": "_applog.SlowFileHandler",
                "filename": str(path),
                "pause": pause,
                "formatter": "json",
                "filters": ["context"],
            },
            "background": {"()": "ctxlog.nonblocking", "handlers": ["file"]},
        },
        "root": {"level": "INFO", "handlers": ["background"]},
        "loggers": {
            name: {"level": "INFO", "handlers": [], "propagate": True} for name in SERVER_LOGGERS
        },
    }


def write_logging_config(
    directory: str | os.PathLike[str], log_path: str | os.PathLike[str], *, pause: float = 0.0
) -> Path:
    """Write :func:`logging_config` as ``logging.json`` in ``directory`` and return its path."""
    target = Path(directory) / "logging.json"
    target.write_text(json.dumps(logging_config(log_path, pause=pause), indent=1), "utf-8")
    return target


def configure_from_env() -> None:
    """Apply :func:`logging_config` to the file named by ``CTXLOG_INTEGRATION_LOG``."""
    logging.config.dictConfig(
        logging_config(os.environ[LOG_ENV], pause=float(os.environ.get(PAUSE_ENV, "0")))
    )


def delivery_stats() -> dict[str, int]:
    """Return the summed ``stats()`` of the ``nonblocking()`` handlers on the root logger."""
    totals = {"handlers": 0, "queued": 0, "delivered": 0, "dropped": 0, "failed": 0}
    for handler in logging.getLogger().handlers:
        if isinstance(handler, NonBlockingHandler):
            stats = handler.stats()
            totals["handlers"] += 1
            for key in ("queued", "delivered", "dropped", "failed"):
                totals[key] += stats[key]
    return totals


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Return the records of a JSON-lines log; a line that is not a whole record raises."""
    records: list[dict[str, Any]] = []
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError as error:
            msg = f"{path}:{number}: not a JSON record: {line!r}"
            raise ValueError(msg) from error
        records.append(record)
    if text and not text.endswith("\n"):
        msg = f"{path}: the last record is cut short"
        raise ValueError(msg)
    return records


__all__ = [
    "FIELDS",
    "HOLD_LIMIT",
    "HOLD_SUFFIX",
    "LOG_ENV",
    "PAUSE_ENV",
    "SERVER_LOGGERS",
    "JSONLines",
    "SlowFileHandler",
    "configure_from_env",
    "delivery_stats",
    "logging_config",
    "read_records",
    "write_logging_config",
]
