"""
``ctxlog receive``: one process that writes the records of many.

Worker processes cannot share a log file: a :class:`~logging.handlers.RotatingFileHandler` in
each of them loses lines at every rollover. Instead every worker sends its records with
:class:`ctxlog.handlers.JSONSocketHandler` and one receiver writes them, through one logging
configuration: a rotating file by default, or any dictConfig.

The receiver reads the frames of :mod:`ctxlog.wire` (length-prefixed JSON, never pickle). It
is written for a port that hostile peers can reach:

- a frame's size is checked from its header before any body byte is kept (``max_frame``);
- a body is parsed as JSON with a strict schema (and a record dated after the year 9999, which
  no clock can print, is rejected); a message is never combined with arguments
  (``msg % args``) from the network;
- a frame must arrive whole within ``read_timeout`` seconds of its first byte, and an idle
  connection is closed after ``idle_timeout`` seconds; a connection that has not sent a valid
  frame within ``read_timeout`` of opening (a TLS handshake included) is closed;
- at most ``max_connections`` connections are served at once, TLS handshakes included. When
  all are taken, a new connection evicts the oldest one without a valid frame yet, else the
  one idle the longest; only if every connection is in the middle of a frame is it refused;
- the bytes of unfinished frames held for all connections together are capped
  (``max_buffered``); over it, the connection holding the most is closed;
- with a secret, a frame without a valid HMAC-SHA256 tag is rejected, and so is a frame seen
  before or signed outside ``replay_window`` (skipped; the connection goes on);
- a bad frame closes its connection only; it is counted by reason and reported on the logger
  ``ctxlog.receiver`` (at most one line per reason every 10 seconds);
- every record carries ``peer``, the address the frame came from, next to the ``ip``, ``user``
  and ``request_id`` the sender claims (a frame cannot set ``peer``), and a record without
  ``process``, ``thread``, ``processName`` or ``threadName`` shows ``-`` for them.

A record is handed to the nearest logger *already configured* in the receiver for its name
(``shop.payments.refunds`` goes to ``shop.payments`` if your configuration names that logger),
else to the root logger; the receiver never creates a logger for a name it reads from the
network.

The package follows a record in: :mod:`~ctxlog.receiver.server` (listening, the slots and
caps), :mod:`~ctxlog.receiver.connection` (one sender: framing, verification, deadlines),
:mod:`~ctxlog.receiver.routing` (which logger a record goes to), :mod:`~ctxlog.receiver.output`
(the line and the handlers that write it) and :mod:`~ctxlog.receiver.report` (rejections counted
and reported); :mod:`~ctxlog.receiver.thread` runs a receiver in a thread and
:mod:`~ctxlog.receiver.command` is ``ctxlog receive`` (its output set up by
:mod:`~ctxlog.receiver.configure`). Import the names below from
``ctxlog.receiver`` itself.

.. versionadded:: 0.2.0
"""

from ctxlog.receiver.command import add_arguments, main
from ctxlog.receiver.command import parse_listen as parse_listen
from ctxlog.receiver.command import parse_size as parse_size
from ctxlog.receiver.command import read_secret as read_secret
from ctxlog.receiver.output import CONTINUATION as CONTINUATION
from ctxlog.receiver.output import DEFAULT_FORMAT as DEFAULT_FORMAT
from ctxlog.receiver.output import LineFormatter, json_formatter
from ctxlog.receiver.server import Receiver
from ctxlog.receiver.thread import ReceiverThread

__all__ = [
    "LineFormatter",
    "Receiver",
    "ReceiverThread",
    "add_arguments",
    "json_formatter",
    "main",
]
