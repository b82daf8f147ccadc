"""
Live reconfiguration: the Logging Cookbook's configuration server, made safe.

:func:`config_server` starts the standard library's :func:`logging.config.listen` with a
``verify`` function that accepts only configurations signed with a shared secret, and
:func:`push` (or ``ctxlog config push FILE``) sends one. A running application changes its
levels, and with ``allow_full_config=True`` its handlers, without a restart.

Message
-------
The standard library's listener reads one message per connection: a 4-byte unsigned big-endian
length, then that many bytes. ctxlog's message (the *payload*) is::

    tag   32 bytes   HMAC-SHA256(secret, body)
    body  UTF-8 JSON: {"v": 1, "ts": <seconds since the epoch>, "nonce": "<32 hex digits>",
                       "config": {<a dictConfig, "version": 1>}}

The tag covers the body's exact bytes; the body has exactly those four keys. ``ts`` is the
sender's clock when it signed, ``nonce`` 16 random bytes in lowercase hex. The listener closes
the connection without replying once it has handled the message.

Checks, in order; the first that fails rejects the message: size at most :data:`MAX_PAYLOAD`;
a tag that matches (compared in constant time); a JSON object of the shape above; ``ts`` within
``max_age`` seconds of the application's clock, either way; a nonce not seen within that window;
then the configuration. By default only level changes pass (``root``, ``loggers`` and
``handlers`` entries whose only key is ``level``, plus ``version`` and ``"incremental": true``),
and what is applied is an incremental dictConfig that ctxlog builds from the validated levels.
With ``allow_full_config=True`` any dictConfig with ``"version": 1`` is applied as it is.

Security
--------
The Cookbook's listener without ``verify`` runs whatever it is sent: a dictConfig names
callables to import and call (``"()"``, ``"class"``, ``ext://``), and when JSON fails the
standard library falls back to :func:`logging.config.fileConfig`, which calls ``eval``. Anyone who
can connect to the port can run code in the application. Here ``verify`` never returns the
sender's bytes: it returns JSON that it has serialised itself, always one line, so the fileConfig
fallback never finds a section to evaluate. Without the secret nothing is applied. With the
secret, the default applies levels only; ``allow_full_config=True`` hands dictConfig, and with
it code execution in the application, to whoever holds the secret.

The standard library binds the listener to ``localhost`` and reads each message in full before
``verify`` sees it, without a size limit or a timeout. A local process that does not know the
secret can therefore hold a connection (and one thread) open, make the listener allocate the
length it announces, and, by announcing a length and closing the connection, make one thread
spin forever (CPython gh-156378). ctxlog cannot change that without replacing the standard
library's listener; only run it where local processes are trusted with that much.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import logging.config
import math
import os
import re
import secrets
import socket
import struct
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

__all__ = [
    "DEFAULT_PORT",
    "MAX_PAYLOAD",
    "ConfigServer",
    "config_server",
    "push",
    "push_main",
]

#: The port of the standard library's configuration listener, and ctxlog's default.
DEFAULT_PORT: Final = logging.config.DEFAULT_LOGGING_CONFIG_PORT
#: The largest payload (tag and body) accepted, in bytes.
MAX_PAYLOAD: Final = 1024 * 1024
#: The shortest secret accepted, in bytes.
MIN_SECRET: Final = 16
TAG_SIZE: Final = 32
#: The most loggers and handlers one levels-only configuration may name.
MAX_NAMES: Final = 1000
#: The most nonces remembered at once; more messages within ``max_age`` are refused.
MAX_NONCES: Final = 10_000

_VERSION: Final = 1
_ENVELOPE_KEYS: Final = frozenset({"v", "ts", "nonce", "config"})
_LEVELS_ONLY_KEYS: Final = frozenset({"version", "incremental", "root", "loggers", "handlers"})
_NONCE: Final = re.compile(r"[0-9a-f]{32}")
_LOCAL_HOSTS: Final = ("127.0.0.1", "localhost")
_START_TIMEOUT: Final = 5.0

_log = logging.getLogger("ctxlog.config")

# The standard library keeps its listener in one module-global variable (stopListening() stops
# whichever listener started last), so a process has at most one; this is ctxlog's.
_state_lock = threading.Lock()
_active: ConfigServer | None = None


class _RejectedError(Exception):
    """A message that is not applied; the argument says why."""


class ConfigServer:
    """
    A running configuration listener, as returned by :func:`config_server`.

    Stop it with :meth:`stop`, or use it as a context manager.

    .. versionadded:: 0.2.0
    """

    def __init__(self, thread: threading.Thread, port: int) -> None:
        self._thread = thread
        self._port = port
        self._stopped = False

    @property
    def port(self) -> int:
        """The port the listener is bound to (the real one when 0 was asked for)."""
        return self._port

    def stop(self, timeout: float = 5.0) -> None:
        """
        Stop listening and wait up to ``timeout`` seconds for the listener's thread to end.

        Calling it again does nothing. If the thread has not ended in time (the standard
        library waits for every open connection first), a warning is logged on
        ``ctxlog.config`` and the port is free again anyway.

        Args:
            timeout: Seconds to wait for the thread.
        """
        global _active  # noqa: PLW0603 - the one place that holds the process's listener
        with _state_lock:
            if self._stopped:
                return
            self._stopped = True
            if _active is self:
                _active = None
        deadline = time.monotonic() + timeout
        while self._thread.is_alive():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _log.warning(
                    "the configuration listener on port %d did not stop within %.1f s; "
                    "a connection to it is still open",
                    self._port,
                    timeout,
                )
                return
            # The listener registers itself just after it is ready, and looks at the stop
            # flag once a second or when a connection arrives: ask again, and knock.
            logging.config.stopListening()
            _knock(self._port)
            self._thread.join(min(0.1, remaining))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "listening"
        return f"<ConfigServer localhost:{self._port} {state}>"


def config_server(
    port: int = DEFAULT_PORT,
    *,
    secret: bytes | str | os.PathLike[str],
    host: str = "127.0.0.1",
    allow_full_config: bool = False,
    max_age: float = 60.0,
) -> ConfigServer:
    """
    Start listening for signed logging configurations; return the running listener.

    Every message must carry an HMAC-SHA256 tag made with ``secret``, a timestamp within
    ``max_age`` seconds of this process's clock and a nonce not used before (the format is in
    :doc:`/live-config`). A message that fails any check is logged on
    ``ctxlog.config`` at WARNING with the reason and changes nothing. An accepted one is logged
    at INFO just before the standard library applies it.

    Args:
        port: The TCP port, on ``localhost``; 0 picks a free one (see ``.port``).
        secret: The shared secret, 16 bytes or more: bytes, a str (used as UTF-8), or a path
            to a file holding it, read like ``ctxlog config push --secret-file`` reads it (one
            trailing newline removed).
        host: ``"127.0.0.1"`` or ``"localhost"``. The standard library's listener binds to
            ``localhost`` only; to reach it from elsewhere, forward the port (SSH, for one).
        allow_full_config: Apply any dictConfig, not just level changes. A dictConfig names
            classes and callables to import and call: this lets whoever holds the secret run
            code in this process.
        max_age: How far, in seconds, a message's timestamp may be from this process's clock,
            in the past or the future; also how long nonces are remembered.

    Raises:
        ValueError: If the secret is too short or unreadable, or ``host``, ``port`` or
            ``max_age`` is not acceptable.
        RuntimeError: If this process already has a configuration listener, or ``localhost``
            is not a loopback address here.
        OSError: If the port cannot be bound.
        TypeError: If ``secret`` is not bytes, a str or a path.

    .. versionadded:: 0.2.0
    """
    global _active  # noqa: PLW0603 - the one place that holds the process's listener
    key = _load_secret(secret)
    if host not in _LOCAL_HOSTS:
        msg = (
            f"host: {host!r} cannot be honoured: logging.config.listen binds to localhost only; "
            f"use '127.0.0.1' and forward the port (for example ssh -L {port}:127.0.0.1:{port})"
        )
        raise ValueError(msg)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        msg = f"port: {port!r} is not a TCP port number (0 to 65535)"
        raise ValueError(msg)
    if not (isinstance(max_age, int | float) and math.isfinite(max_age) and max_age > 0):
        msg = f"max_age: {max_age!r} is not a positive number of seconds"
        raise ValueError(msg)
    _check_localhost()
    verifier = _Verifier(key, allow_full_config=allow_full_config, max_age=float(max_age))
    with _state_lock:
        if _active is not None:
            msg = (
                f"a configuration listener is already running on port {_active.port}: the "
                "standard library allows one per process; stop() it first"
            )
            raise RuntimeError(msg)
        if port:
            _check_port_free(port)
        thread = logging.config.listen(port, verify=verifier)
        # The standard library's thread would otherwise keep the process alive at exit.
        thread.daemon = True
        thread.start()
        ready: threading.Event = thread.ready  # type: ignore[attr-defined]
        deadline = time.monotonic() + _START_TIMEOUT
        while not ready.wait(0.05):
            if not thread.is_alive() or time.monotonic() > deadline:
                msg = f"the configuration listener could not start on localhost:{port}"
                raise OSError(msg)
        bound: int = thread.port  # type: ignore[attr-defined]
        server = ConfigServer(thread, bound)
        _active = server
    mode = "full dictConfig allowed" if allow_full_config else "level changes only"
    _log.info("listening for signed configurations on localhost:%d (%s)", bound, mode)
    return server


def push(
    config: Mapping[str, Any],
    *,
    secret: bytes | str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    timeout: float = 5.0,
) -> None:
    """
    Sign ``config`` and send it to the :func:`config_server` at ``host:port``.

    Returns once the application has handled the message and closed the connection. The
    protocol has no reply: whether the configuration was applied or rejected, and why, is in
    the application's log (logger ``ctxlog.config``).

    Args:
        config: A dictConfig with ``"version": 1``.
        secret: The secret the application was started with (bytes, str or a file's path).
        host: The application's host (usually 127.0.0.1, or the local end of a tunnel).
        port: The application's port.
        timeout: Seconds allowed for connecting, sending, and the application to finish.

    Raises:
        ValueError: If the secret or the configuration is not acceptable.
        OSError: If the application cannot be reached (``TimeoutError`` if it is too slow).

    .. versionadded:: 0.2.0
    """
    key = _load_secret(secret)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        msg = f"port: {port!r} is not a TCP port number (1 to 65535)"
        raise ValueError(msg)
    if not isinstance(config, Mapping) or config.get("version") != _VERSION:
        msg = 'the configuration must be a dictConfig object with "version": 1'
        raise ValueError(msg)
    payload = _seal(config, key)
    if len(payload) > MAX_PAYLOAD:
        msg = f"the signed configuration is {len(payload)} bytes; the limit is {MAX_PAYLOAD}"
        raise ValueError(msg)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">L", len(payload)) + payload)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):  # the application closes once it has handled the message
            pass


def push_main(args: argparse.Namespace) -> int:
    """
    Run ``ctxlog config push``; return the exit status.

    0: sent and handled by the application (its log says whether it was applied); 1: the
    application could not be reached; 2: the file, the secret or an option is not usable.
    """
    try:
        secret = _read_secret_file(args.secret_file)
        config = _read_config_file(args.file)
        push(config, secret=secret, host=args.host, port=args.port)
    except ValueError as error:
        sys.stderr.write(f"ctxlog config push: {error}\n")
        return 2
    except TimeoutError:
        sys.stderr.write(f"ctxlog config push: {args.host}:{args.port} did not finish within 5 s\n")
        return 1
    except OSError as error:
        reason = error.strerror or str(error)
        sys.stderr.write(f"ctxlog config push: cannot send to {args.host}:{args.port}: {reason}\n")
        return 1
    sys.stdout.write(
        f"sent {args.file} to {args.host}:{args.port}; the application logs whether it "
        "applied it (logger ctxlog.config)\n"
    )
    return 0


class _Verifier:
    """The ``verify`` given to :func:`logging.config.listen`; called in a handler thread."""

    def __init__(self, key: bytes, *, allow_full_config: bool, max_age: float) -> None:
        self._key = key
        self._full = allow_full_config
        self._max_age = max_age
        self._clock: Callable[[], float] = time.time
        self._lock = threading.Lock()
        self._nonces: dict[str, float] = {}

    def __call__(self, payload: bytes) -> bytes | None:
        try:
            config, summary = self._check(payload)
        except _RejectedError as rejected:
            _log.warning(
                "configuration rejected: %s; the running configuration is unchanged", rejected
            )
            return None
        _log.info("configuration accepted, applying %s", summary)
        return json.dumps(config, separators=(",", ":"), sort_keys=True).encode("ascii")

    def _check(self, payload: bytes) -> tuple[dict[str, Any], str]:
        if len(payload) > MAX_PAYLOAD:
            msg = f"{len(payload)} bytes is over the limit of {MAX_PAYLOAD}"
            raise _RejectedError(msg)
        if len(payload) <= TAG_SIZE:
            msg = f"{len(payload)} bytes is too short to carry a signature"
            raise _RejectedError(msg)
        tag, body = payload[:TAG_SIZE], payload[TAG_SIZE:]
        expected = hmac.new(self._key, body, hashlib.sha256).digest()
        if not hmac.compare_digest(tag, expected):
            msg = "bad signature (unsigned, altered, or signed with another secret)"
            raise _RejectedError(msg)
        envelope = _parse_envelope(body)
        self._check_fresh(envelope["ts"], envelope["nonce"])
        config = envelope["config"]
        if self._full:
            return config, f"a full dictConfig ({', '.join(sorted(config)) or 'empty'})"
        return _levels_only(config)

    def _check_fresh(self, ts: float, nonce: str) -> None:
        now = self._clock()
        if now - ts > self._max_age:
            msg = f"timestamp is {now - ts:.1f} s old, over max_age {self._max_age:g} s"
            raise _RejectedError(msg)
        if ts - now > self._max_age:
            msg = f"timestamp is {ts - now:.1f} s in the future, over max_age {self._max_age:g} s"
            raise _RejectedError(msg)
        with self._lock:
            # A nonce older than the window can go: its message fails the age check anyway.
            horizon = now - self._max_age
            for old in [n for n, seen in self._nonces.items() if seen < horizon]:
                del self._nonces[old]
            if nonce in self._nonces:
                msg = "replayed: this message (its nonce) was already received"
                raise _RejectedError(msg)
            if len(self._nonces) >= MAX_NONCES:
                msg = f"more than {MAX_NONCES} configurations within max_age"
                raise _RejectedError(msg)
            self._nonces[nonce] = ts


def _parse_envelope(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        msg = f"signed, but not JSON: {error}"
        raise _RejectedError(msg) from None
    if not isinstance(envelope, dict):
        msg = f"signed, but a JSON {type(envelope).__name__}, not an object"
        raise _RejectedError(msg)
    if set(envelope) != _ENVELOPE_KEYS:
        msg = f"the message's keys are {sorted(envelope)}, not {sorted(_ENVELOPE_KEYS)}"
        raise _RejectedError(msg)
    if envelope["v"] != _VERSION or isinstance(envelope["v"], bool):
        msg = f"message version {envelope['v']!r} is not supported (only 1)"
        raise _RejectedError(msg)
    ts = envelope["ts"]
    try:
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            raise OverflowError  # noqa: TRY301 - one message for every kind of bad number
        envelope["ts"] = float(ts)
    except OverflowError:
        msg = f"ts: {_show(ts)} is not a number of seconds"
        raise _RejectedError(msg) from None
    nonce = envelope["nonce"]
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        msg = f"nonce: {_show(nonce)} is not 32 lowercase hex digits"
        raise _RejectedError(msg)
    config = envelope["config"]
    if not isinstance(config, dict):
        msg = f"config: a JSON {type(config).__name__}, not an object"
        raise _RejectedError(msg)
    version = config.get("version")
    if version != _VERSION or isinstance(version, bool):
        msg = f'config: "version" is {_show(version)}; dictConfig needs 1'
        raise _RejectedError(msg)
    return envelope


def _levels_only(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Return an incremental dictConfig of the levels in ``config``, or reject it."""
    hint = "only level changes are accepted (the application did not allow full configurations)"
    for key in config:
        if key not in _LEVELS_ONLY_KEYS:
            msg = f"key {_show(key)}: {hint}"
            raise _RejectedError(msg)
    if config.get("incremental", True) is not True:
        msg = f'"incremental" must be true or absent: {hint}'
        raise _RejectedError(msg)
    built: dict[str, Any] = {"version": _VERSION, "incremental": True}
    changes: list[str] = []
    if "root" in config:
        built["root"] = {"level": _level_of("root", config["root"], hint)}
        changes.append(f"root={built['root']['level']}")
    for section in ("loggers", "handlers"):
        if section not in config:
            continue
        entries = config[section]
        if not isinstance(entries, dict):
            msg = f"{section}: a JSON {type(entries).__name__}, not an object"
            raise _RejectedError(msg)
        if len(entries) > MAX_NAMES:
            msg = f"{section}: {len(entries)} names, over the limit of {MAX_NAMES}"
            raise _RejectedError(msg)
        levels: dict[str, Any] = {}
        for name, entry in entries.items():
            where = f"{section}.{_show(name)}"
            if not name or len(name) > 200 or not name.isprintable():
                msg = f"{where}: not a usable {section[:-1]} name"
                raise _RejectedError(msg)
            levels[name] = {"level": _level_of(where, entry, hint)}
            if section == "handlers" and not _handler_exists(name):
                msg = f"{where}: this application has no handler of that name"
                raise _RejectedError(msg)
            changes.append(f"{section[:-1]} {name}={levels[name]['level']}")
        built[section] = levels
    return built, "level changes: " + (", ".join(changes) or "none")


def _level_of(where: str, entry: object, hint: str) -> str | int:
    if not isinstance(entry, dict):
        msg = f"{where}: a JSON {type(entry).__name__}, not an object"
        raise _RejectedError(msg)
    for key in entry:
        if key != "level":
            msg = f"{where}: key {_show(key)}: {hint}"
            raise _RejectedError(msg)
    if "level" not in entry:
        msg = f'{where}: no "level"'
        raise _RejectedError(msg)
    level = entry["level"]
    names = logging.getLevelNamesMapping()
    if isinstance(level, str):
        for candidate in (level, level.upper()):
            if candidate in names:
                return candidate
    elif isinstance(level, int) and not isinstance(level, bool) and 0 <= level <= 100:
        name = logging.getLevelName(level)
        # dictConfig skips a handler level that is falsy, so 0 travels as "NOTSET".
        return name if name in names else level
    msg = f"{where}: level {_show(level)} is not a level name or a number from 0 to 100"
    raise _RejectedError(msg)


def _handler_exists(name: str) -> bool:
    if sys.version_info >= (3, 12):
        return logging.getHandlerByName(name) is not None
    # 3.11 has no public lookup; incremental dictConfig itself looks in this dict.
    named: Mapping[str, logging.Handler] = vars(logging)["_handlers"]
    return name in named


def _seal(
    config: Mapping[str, Any], key: bytes, *, ts: float | None = None, nonce: str | None = None
) -> bytes:
    """Return the payload (tag and body) carrying ``config``, signed with ``key``."""
    envelope = {
        "v": _VERSION,
        "ts": time.time() if ts is None else ts,
        "nonce": secrets.token_hex(16) if nonce is None else nonce,
        "config": config,
    }
    try:
        body = json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as error:
        msg = f"the configuration cannot be sent as JSON: {error}"
        raise ValueError(msg) from None
    return hmac.new(key, body, hashlib.sha256).digest() + body


def _load_secret(secret: bytes | str | os.PathLike[str]) -> bytes:
    if isinstance(secret, os.PathLike):
        return _read_secret_file(os.fspath(secret))
    if isinstance(secret, str):
        key = secret.encode("utf-8")
    elif isinstance(secret, bytes):
        key = secret
    else:
        msg = f"secret: {type(secret).__name__} is not bytes, str or a path"
        raise TypeError(msg)
    if len(key) < MIN_SECRET:
        msg = (
            f"secret: {len(key)} bytes is too short; use at least {MIN_SECRET} random bytes "
            '(for example python -c "import secrets; print(secrets.token_hex(32))")'
        )
        raise ValueError(msg)
    return key


def _read_secret_file(path: str) -> bytes:
    try:
        key = Path(path).read_bytes()
    except OSError as error:
        msg = f"cannot read the secret file {path!r}: {error.strerror or error}"
        raise ValueError(msg) from None
    key = key.removesuffix(b"\n").removesuffix(b"\r")
    if len(key) < MIN_SECRET:
        msg = f"the secret in {path!r} is {len(key)} bytes; use at least {MIN_SECRET} random bytes"
        raise ValueError(msg)
    return key


def _read_config_file(path: str) -> dict[str, Any]:
    suffix = Path(path).suffix.lower()
    if suffix not in {".json", ".toml"}:
        msg = f"{path!r}: give a .json or a .toml file"
        raise ValueError(msg)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else error
        msg = f"cannot read {path!r}: {reason or error}"
        raise ValueError(msg) from None
    try:
        config = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except ValueError as error:
        msg = f"{path!r} is not valid {suffix[1:].upper()}: {error}"
        raise ValueError(msg) from None
    if not isinstance(config, dict):
        msg = f"{path!r} holds a {type(config).__name__}, not a dictConfig object"
        raise ValueError(msg)  # noqa: TRY004 - a file's content: a usage error, exit status 2
    return config


def _check_localhost() -> None:
    try:
        address = socket.gethostbyname("localhost")
    except OSError as error:
        msg = f"'localhost' does not resolve here ({error}); the listener binds to it"
        raise RuntimeError(msg) from None
    if not address.startswith("127."):
        msg = f"'localhost' resolves to {address}, not a loopback address; refusing to listen"
        raise RuntimeError(msg)


def _check_port_free(port: int) -> None:
    # Fail here with a clear message rather than in the standard library's thread.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("localhost", port))
        except OSError as error:
            msg = f"cannot listen on localhost:{port}: {error.strerror or error}"
            raise OSError(error.errno, msg) from None


def _knock(port: int) -> None:
    """Connect and hang up, so the listener wakes and sees that it must stop."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass
    except OSError:
        pass


def _no_constant(name: str) -> None:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
