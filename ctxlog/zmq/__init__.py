"""
Send records over ZeroMQ, in the frames of ``ctxlog receive``: an optional extra (pyzmq).

Install with ``pip install 'ctxlog[zmq]'``. Importing :mod:`ctxlog` never imports pyzmq; importing
this module does, and says what to install if it is missing.

:class:`ZMQQueueHandler` and :class:`ZMQQueueListener` are the Logging Cookbook's "subclass the
queue pair for ZeroMQ" recipe, done so that it holds up in a web app:

* **One wire format.** Each record travels as exactly one frame of :mod:`ctxlog.wire` (the
  format of ``ctxlog receive``): length-prefixed JSON with a strict schema, optionally signed
  with HMAC-SHA256. The Cookbook sends ``json.dumps(record.__dict__)``, which fails on the first
  extra that is not JSON and which a receiver has no schema to check against. Nothing is pickled.
* **The request's context survives.** The handler is a :class:`ctxlog.QueueHandler`: ``ip``,
  ``user``, ``request_id``, ``method``, ``path`` and bound fields are stamped on the record in
  the thread that logs, the message is merged with its arguments, a traceback becomes text.
* **The socket belongs to the handler.** A ZeroMQ socket must not be used by two threads at once
  nor after a ``fork()``. The handler opens its socket on the first record a process sends, and
  in a forked child (ctxlog's fork hook, :func:`os.register_at_fork`) sets the parent's socket
  aside, so a worker forked by gunicorn ``--preload`` or :mod:`multiprocessing` sends through a
  socket of its own; sends are serialised by the handler's lock.
* **The application never waits.** Every send is non-blocking. A record that ZeroMQ cannot take
  at once (no peer, or its queue of ``hwm`` messages is full) is dropped and counted in
  :attr:`ZMQQueueHandler.dropped`; the first drop of an outage is reported on stderr.
* **Bad input never stops the listener.** A message that is not a valid frame (garbage, wrong
  signature, unsigned while a secret is set, a header announcing too big a body, a ``peer``
  field) or, with a secret, a frame seen before or signed outside ``replay_window`` is counted
  in :attr:`ZMQQueueListener.rejected` (by reason in :attr:`ZMQQueueListener.reasons`) and
  skipped; the first rejection, and then at most one a minute, is reported on stderr with the
  peer's address.

**Messages.** From a ``PUSH`` socket each message has one part, the frame. From a ``PUB``
socket it has two: a topic, then the frame. The topic is ``"<LEVELNAME>.<logger name>."`` in
UTF-8 (for example ``"ERROR.shop.payments."``), so a subscriber chooses by prefix: ``"ERROR."``
for errors, ``"ERROR.shop."`` for the errors of ``shop`` and its children, ``""`` for
everything. The topic is routing only: the listener reads the level and logger name from the
frame, where a signature covers them.

**Security.** HMAC signing (``secret=``) proves that a record comes from someone holding the
secret and was not altered, and lets the listener accept each frame once; it does not encrypt.
A frame is signed when it is handed to ZeroMQ: one that waits in ZeroMQ's queue for longer than
the listener's ``replay_window`` is refused as stale. A ``PULL`` or ``SUB`` socket bound to a
non-loopback address accepts connections from anyone who can reach it: without a secret, anyone
there can write records into your logs. The listener caps each message at the frame size limit
(``ZMQ_MAXMSGSIZE``): ZeroMQ disconnects a peer that sends more instead of buffering it.

**Layout.** :mod:`ctxlog.zmq.handler` is the sending end, :mod:`ctxlog.zmq.listener` the
receiving end, :mod:`ctxlog.zmq.sockets` what both share (option checks, opening a socket, the
sockets a forked child sets aside). Import the classes from :mod:`ctxlog.zmq`.
"""

from __future__ import annotations

try:
    import zmq  # noqa: F401 - checked here, first, so that the error says what to install
except ImportError as error:
    msg = "ctxlog.zmq needs pyzmq: pip install 'ctxlog[zmq]'"
    raise ImportError(msg) from error

from ctxlog.zmq.handler import ZMQQueueHandler
from ctxlog.zmq.listener import ZMQQueueListener

__all__ = ["ZMQQueueHandler", "ZMQQueueListener"]
