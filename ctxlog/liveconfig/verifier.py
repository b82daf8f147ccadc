"""
What a pushed configuration may do: the checks a payload passes before anything is applied.

:class:`Verifier` runs in the listener's thread on each complete payload, after the connection
has delivered it. In order: the size, the tag (compared in constant time), the envelope's shape
(:func:`ctxlog.liveconfig.protocol.open_envelope`), the timestamp's age and the nonce's novelty,
then the configuration itself. By default only levels pass, and what is applied is an
incremental dictConfig built here from the validated levels, never the sender's bytes; with
``allow_full_config=True`` any dictConfig passes as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from ctxlog.liveconfig.protocol import (
    BAD_SIGNATURE,
    MAX_PAYLOAD,
    NOT_ALLOWED,
    REPLAYED,
    STALE,
    TAG_SIZE,
    TOO_LARGE,
    TOO_MANY_MESSAGES,
    TOO_SHORT,
    VERSION,
    RejectedError,
    open_envelope,
    show,
)

__all__ = ["MAX_NAMES", "MAX_NONCES", "Verifier", "levels_only"]

#: The most loggers and handlers one levels-only configuration may name.
MAX_NAMES: Final = 1000
#: The most nonces remembered at once; more messages within ``max_age`` are refused.
MAX_NONCES: Final = 10_000

_LEVELS_ONLY_KEYS: Final = frozenset({"version", "incremental", "root", "loggers", "handlers"})
_HINT: Final = "only level changes are accepted (the application did not allow full configurations)"

_log = logging.getLogger("ctxlog.config")


class Verifier:
    """The checks a payload must pass, and the configuration it yields; in the listener's thread."""

    def __init__(self, key: bytes, *, allow_full_config: bool, max_age: float) -> None:
        self._key = key
        self._full = allow_full_config
        self._max_age = max_age
        self._clock: Callable[[], float] = time.time
        self._lock = threading.Lock()
        self._nonces: dict[str, float] = {}

    def __call__(self, payload: bytes, peer: str) -> tuple[bytes, str]:
        """
        Return the configuration to apply, as JSON, and its summary.

        Raises:
            RejectedError: The message is not to be applied; it says why.
        """
        config, summary = self._check(payload)
        _log.debug("configuration accepted from %s, applying %s", peer, summary)
        result = json.dumps(config, separators=(",", ":"), sort_keys=True).encode("ascii")
        return result, summary

    def _check(self, payload: bytes) -> tuple[dict[str, Any], str]:
        if len(payload) > MAX_PAYLOAD:
            msg = f"{len(payload)} bytes is over the limit of {MAX_PAYLOAD}"
            raise RejectedError(TOO_LARGE, msg)
        if len(payload) <= TAG_SIZE:
            msg = f"{len(payload)} bytes is too short to carry a signature"
            raise RejectedError(TOO_SHORT, msg)
        tag, body = payload[:TAG_SIZE], payload[TAG_SIZE:]
        expected = hmac.new(self._key, body, hashlib.sha256).digest()
        if not hmac.compare_digest(tag, expected):
            msg = "bad signature (unsigned, altered, or signed with another secret)"
            raise RejectedError(BAD_SIGNATURE, msg)
        envelope = open_envelope(body)
        self._check_fresh(envelope["ts"], envelope["nonce"])
        config = envelope["config"]
        if self._full:
            return config, f"a full dictConfig ({', '.join(sorted(config)) or 'empty'})"
        return levels_only(config)

    def _check_fresh(self, ts: float, nonce: str) -> None:
        now = self._clock()
        if now - ts > self._max_age:
            msg = f"timestamp is {now - ts:.1f} s old, over max_age {self._max_age:g} s"
            raise RejectedError(STALE, msg)
        if ts - now > self._max_age:
            msg = f"timestamp is {ts - now:.1f} s in the future, over max_age {self._max_age:g} s"
            raise RejectedError(STALE, msg)
        with self._lock:
            # A nonce older than the window can go: its message fails the age check anyway.
            horizon = now - self._max_age
            for old in [n for n, seen in self._nonces.items() if seen < horizon]:
                del self._nonces[old]
            if nonce in self._nonces:
                msg = "replayed: this message (its nonce) was already received"
                raise RejectedError(REPLAYED, msg)
            if len(self._nonces) >= MAX_NONCES:
                msg = f"more than {MAX_NONCES} configurations within max_age"
                raise RejectedError(TOO_MANY_MESSAGES, msg)
            self._nonces[nonce] = ts


def levels_only(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """
    Return an incremental dictConfig of the levels in ``config``, and its summary.

    Raises:
        RejectedError: ``config`` asks for more than level changes (``"not allowed"``).
    """
    for key in config:
        if key not in _LEVELS_ONLY_KEYS:
            msg = f"key {show(key)}: {_HINT}"
            raise RejectedError(NOT_ALLOWED, msg)
    if config.get("incremental", True) is not True:
        msg = f'"incremental" must be true or absent: {_HINT}'
        raise RejectedError(NOT_ALLOWED, msg)
    built: dict[str, Any] = {"version": VERSION, "incremental": True}
    changes: list[str] = []
    if "root" in config:
        built["root"] = {"level": _level_of("root", config["root"])}
        changes.append(f"root={built['root']['level']}")
    for section in ("loggers", "handlers"):
        if section in config:
            built[section] = _section_levels(section, config[section], changes)
    return built, "level changes: " + (", ".join(changes) or "none")


def _section_levels(section: str, entries: object, changes: list[str]) -> dict[str, Any]:
    """Return the levels of the ``loggers`` or ``handlers`` section; add each to ``changes``."""
    if not isinstance(entries, dict):
        msg = f"{section}: a JSON {type(entries).__name__}, not an object"
        raise RejectedError(NOT_ALLOWED, msg)
    if len(entries) > MAX_NAMES:
        msg = f"{section}: {len(entries)} names, over the limit of {MAX_NAMES}"
        raise RejectedError(NOT_ALLOWED, msg)
    levels: dict[str, Any] = {}
    for name, entry in entries.items():
        where = f"{section}.{show(name)}"
        if not name or len(name) > 200 or not name.isprintable():
            msg = f"{where}: not a usable {section[:-1]} name"
            raise RejectedError(NOT_ALLOWED, msg)
        levels[name] = {"level": _level_of(where, entry)}
        if section == "handlers" and not _handler_exists(name):
            msg = f"{where}: this application has no handler of that name"
            raise RejectedError(NOT_ALLOWED, msg)
        changes.append(f"{section[:-1]} {name}={levels[name]['level']}")
    return levels


def _level_of(where: str, entry: object) -> str | int:
    if not isinstance(entry, dict):
        msg = f"{where}: a JSON {type(entry).__name__}, not an object"
        raise RejectedError(NOT_ALLOWED, msg)
    for key in entry:
        if key != "level":
            msg = f"{where}: key {show(key)}: {_HINT}"
            raise RejectedError(NOT_ALLOWED, msg)
    if "level" not in entry:
        msg = f'{where}: no "level"'
        raise RejectedError(NOT_ALLOWED, msg)
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
    msg = f"{where}: level {show(level)} is not a level name or a number from 0 to 100"
    raise RejectedError(NOT_ALLOWED, msg)


def _handler_exists(name: str) -> bool:
    if sys.version_info >= (3, 12):
        return logging.getHandlerByName(name) is not None
    # 3.11 has no public lookup; incremental dictConfig itself looks in this dict.
    named: Mapping[str, logging.Handler] = vars(logging)["_handlers"]
    return name in named
