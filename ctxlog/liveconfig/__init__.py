"""
Live reconfiguration: the Logging Cookbook's configuration server, made safe.

:func:`config_server` starts a thread that takes a new logging configuration over TCP, as
:func:`logging.config.listen` does, but applies only configurations signed with a shared secret;
:func:`push` (or ``ctxlog config push FILE``) sends one. A running application changes its
levels, and with ``allow_full_config=True`` its handlers, without a restart.

Message
-------
The listener speaks the protocol of :func:`logging.config.listen`: one message per connection,
a 4-byte unsigned big-endian length, then that many bytes; the listener closes the connection
without replying once it has handled the message. A sender written for the standard library's
listener (the Cookbook's client, for one) works unchanged. ctxlog's message (the *payload*) is::

    tag   32 bytes   HMAC-SHA256(secret, body)
    body  UTF-8 JSON: {"v": 1, "ts": <seconds since the epoch>, "nonce": "<32 hex digits>",
                       "config": {<a dictConfig, "version": 1>}}

The tag covers the body's exact bytes; the body has exactly those four keys. ``ts`` is the
sender's clock when it signed, ``nonce`` 16 random bytes in lowercase hex.

Checks, in order; the first that fails rejects the message: an announced length of at most
:data:`MAX_PAYLOAD` (checked before the body is read); the whole message within
``read_timeout`` seconds of connecting; a tag that matches (compared in constant time); a JSON
object of the shape above; ``ts`` within ``max_age`` seconds of the application's clock, either
way; a nonce not seen within that window; then the configuration. By default only level changes
pass (``root``, ``loggers`` and ``handlers`` entries whose only key is ``level``, plus
``version`` and ``"incremental": true``), and what is applied is an incremental dictConfig that
ctxlog builds from the validated levels. With ``allow_full_config=True`` any dictConfig with
``"version": 1`` is applied as it is.

A message that passes is applied as the standard library applies what its ``verify`` returns,
``logging.config.dictConfig(json.loads(result))``, in the listener's thread. Every outcome is
logged on ``ctxlog.config`` with the peer's address: WARNING ``configuration rejected from
<address>: <reason>``, INFO ``configuration applied from <address>: <summary>``, or ERROR
``configuration failed from <address>: <reason>`` when dictConfig raises (logging is then as
dictConfig left it: a full configuration may be partly applied). Rejections are counted by
reason (``ConfigServer.rejected``); after one is logged, the others of the same reason are held
back for ``report_interval`` seconds and logged as one summary line, so that junk sent without
the secret cannot flood the application's log.

Why not logging.config.listen
-----------------------------
ctxlog never calls :func:`logging.config.listen`. The standard library's listener reads a whole
message before ``verify`` sees any of it, and believes the length the peer announces: there is
no upper limit (it asks for up to 4 GiB), no timeout (a peer that sends nothing keeps a thread
waiting for as long as it stays connected), and when a peer announces a length and hangs up,
the thread calls ``recv`` in a loop that never ends, using a whole CPU core for the life of the
process (reproduced on 3.13; reported as CPython gh-156378). None of this needs the secret, and
no ``verify`` can prevent it. That listener also binds to ``localhost`` only, and
:func:`logging.config.stopListening` stops only the one started last, so a process cannot run
two.

ctxlog's listener is one thread with non-blocking sockets. It reads the 4-byte length first and
closes the connection, unread, if the length is over :data:`MAX_PAYLOAD`; it gives each peer
``read_timeout`` seconds for its whole message and closes the connection as soon as the peer
hangs up; it holds at most :data:`MAX_CONNECTIONS` connections, closing the oldest to make room
for a new one, so idle connections cannot keep a push out. It binds the address it is given, and
a process can run several.

Security
--------
The Cookbook's listener without ``verify`` runs whatever it is sent: a dictConfig names
callables to import and call (``"()"``, ``"class"``, ``ext://``), and when JSON fails the
standard library falls back to :func:`logging.config.fileConfig`, which calls ``eval``. Anyone who
can connect to the port can run code in the application. Here the bytes applied are never the
sender's bytes: they are JSON that ctxlog has serialised itself, and they only ever go to
dictConfig, never to fileConfig. Without the secret nothing is applied. With the secret, the
default applies levels only; ``allow_full_config=True`` hands dictConfig, and with it code
execution in the application, to whoever holds the secret.

The listener binds ``127.0.0.1`` unless told otherwise. Any other address puts the port on
that network: whoever can reach it cannot change the configuration without the secret, but can
send messages that are logged and rejected, and can hold up to :data:`MAX_CONNECTIONS`
connections; messages also travel in clear (signed, not encrypted). Prefer a tunnel (SSH) to a
non-loopback address.

Layout
------
:mod:`~ctxlog.liveconfig.protocol` holds what both ends share (limits, the secret, the
message); :mod:`~ctxlog.liveconfig.server` the listener, reading each
:mod:`~ctxlog.liveconfig.connection`, checking payloads with the
:mod:`~ctxlog.liveconfig.verifier` and logging rejections through
:mod:`~ctxlog.liveconfig.reports`; :mod:`~ctxlog.liveconfig.push` the client, and
:mod:`~ctxlog.liveconfig.cli` ``ctxlog config push``. Import the public names from
:mod:`ctxlog.liveconfig` itself.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from ctxlog.liveconfig.cli import push_main
from ctxlog.liveconfig.protocol import DEFAULT_PORT, MAX_PAYLOAD, MIN_SECRET, TAG_SIZE
from ctxlog.liveconfig.push import push
from ctxlog.liveconfig.server import MAX_CONNECTIONS, ConfigServer, config_server
from ctxlog.liveconfig.verifier import MAX_NAMES, MAX_NONCES

__all__ = [
    "DEFAULT_PORT",
    "MAX_CONNECTIONS",
    "MAX_NAMES",
    "MAX_NONCES",
    "MAX_PAYLOAD",
    "MIN_SECRET",
    "TAG_SIZE",
    "ConfigServer",
    "config_server",
    "push",
    "push_main",
]
