r"""
Values as JSON: what :class:`ctxlog.JSONFormatter` turns a record's values into, and the line.

:func:`plain` makes any value one of the types JSON holds, the same way whichever encoder
writes it: ``str``, ``int`` (64-bit), ``float`` (finite), ``bool``, ``None``, ``dict`` with
``str`` keys, ``list``. Anything else (bytes, sets, dates, objects; ``NaN`` and the infinities;
integers past 64 bits, which most JSON readers would round; containers nested deeper than
:data:`MAX_DEPTH`; a container whose ``items()`` or ``__iter__`` raises) becomes its ``str()``,
and an object whose ``__str__`` raises becomes ``"<unprintable TYPE object>"``: a log call
never fails on a value, and one value that cannot be read never costs the rest of the line.

:class:`Encoder` writes the line with orjson when it is installed and with the standard
library's C encoder otherwise, byte for byte the same: compact separators, UTF-8 text, the
same escapes. The few things orjson writes differently are sent the standard library's way
(floats below 1e-4, which orjson writes without an exponent; lone surrogates, which orjson
refuses). Then every character ctxlog never writes raw (DEL, the C1
controls, bidi controls, U+2028/U+2029, surrogates: :mod:`ctxlog.record.escape`) is written
as a ``\uNNNN`` escape, which JSON readers turn back into the same character. JSON already
escapes the C0 controls, so a value can never end its line, and ``json.loads`` of every line
gives the record's values back.

Putting values in a line: :func:`put_path` (nested objects), :func:`fresh` and :func:`graft`
(a static object copied for the line that writes into it), :func:`add_extras` (an extra field
whose key the line holds is merged into it, or written as ``extra_KEY``: never lost).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

from ctxlog.context import MISSING

__all__ = [
    "MAX_DEPTH",
    "MOVED",
    "Encoder",
    "Key",
    "Tree",
    "add_extras",
    "add_fields",
    "fresh",
    "graft",
    "merge",
    "plain",
    "put_path",
    "shown",
]

#: Where a value goes in a line: a key, or the keys of nested objects.
Key = str | tuple[str, ...]
#: The objects inside a static object that a line writes into, by key, nested the same way.
Tree = dict[str, "Tree"]
#: What an extra field's key gets in front when the line already holds that key.
MOVED: Final = "extra_"
_ABSENT: Final = object()
#: Containers nested deeper than this are written as their ``str()``.
MAX_DEPTH: Final = 16
_INT_MAX: Final = 2**63
#: Characters JSON encoders write raw that ctxlog never writes raw (ASCII controls but DEL are
#: escaped by JSON itself).
_RAW_UNSAFE: Final = re.compile(
    "[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _u_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _refuse(value: Any) -> Any:
    msg = f"{type(value).__name__} is not a plain value"  # plain() made sure it never is
    raise TypeError(msg)


def _stdlib_dumps() -> Callable[[Any], str]:
    """
    Return the standard library's encoder of a dict: compact, UTF-8 text, no NaN.

    ``JSONEncoder.encode`` makes a new C encoder on every call; this one is made once (a tenth
    of a record's cost, measured with callgrind). Without the C accelerator: ``encode``.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # pragma: no cover - CPython always has them
        return json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
        ).encode
    # markers, default, encoder, indent, separators, sort_keys, skipkeys, allow_nan: positional.
    encoder = make(None, _refuse, basestring, None, ":", ",", False, False, False)  # noqa: FBT003
    join = "".join

    def dumps(data: Any) -> str:
        return join(encoder(data, 0))

    return dumps


def shown(value: Any) -> str:
    """Return ``str(value)``, or a placeholder naming its type if ``__str__`` fails."""
    if isinstance(value, str):  # a str subclass, whatever its __str__ returns
        return str.__str__(value)
    try:
        text = str(value)
    except Exception:  # the value's own __str__ failed: a log call must not
        return f"<unprintable {type(value).__name__} object>"
    if type(text) is not str:  # a str subclass from __str__
        return str.__str__(text)
    return text


def plain(value: Any, tiny: list[bool], depth: int = 0) -> Any:
    """
    Return ``value`` as a type JSON holds (see the module's docstring).

    ``tiny`` gets ``True`` appended when a float orjson writes otherwise is met.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if -_INT_MAX <= value < _INT_MAX else shown(value)
    if kind is float:
        return _float(value, tiny)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):  # IntEnum, IntFlag...: the number
        return plain(int.__int__(value), tiny)
    if isinstance(value, float):
        return _float(float.__float__(value), tiny)
    if depth >= MAX_DEPTH:
        return shown(value)
    try:
        return _container(value, kind, tiny, depth + 1)
    except Exception:  # items(), __iter__ or an item's unpacking raised: this value only
        return shown(value)


def _container(value: Any, kind: type, tiny: list[bool], depth: int) -> Any:
    """Return a dict or list as plain values, anything else as its ``str()``."""
    if kind is dict:  # a snapshot: another thread may change it while it is read
        pairs: Any = list(value.items())
    elif isinstance(value, dict):  # its own items(), read once, never sized by its len()
        pairs = value.items()
    elif isinstance(value, list | tuple):
        return [plain(item, tiny, depth) for item in value]
    else:
        return shown(value)
    return {
        (key if type(key) is str else shown(key)): plain(item, tiny, depth) for key, item in pairs
    }


def _float(value: float, tiny: list[bool]) -> Any:
    if value - value != 0.0:  # NaN or an infinity: JSON has no way to write them
        return shown(value)
    if value and -1e-4 < value < 1e-4:
        tiny.append(True)
    return value


class Encoder:
    """
    Write a dict of plain values (:func:`plain`) as one line of JSON.

    Args:
        use_orjson: Use orjson if it is installed; ``False`` always uses the standard library.
    """

    __slots__ = ("_dumps", "_orjson", "_orjson_error")

    def __init__(self, *, use_orjson: bool = True) -> None:
        self._dumps: Callable[[Any], str] = _stdlib_dumps()
        self._orjson: Callable[[Any], bytes] | None = None
        self._orjson_error: type[Exception] = TypeError
        if use_orjson:
            try:
                import orjson  # noqa: PLC0415 - optional, ctxlog[orjson]
            except ImportError:
                pass
            else:
                self._orjson = orjson.dumps
                self._orjson_error = orjson.JSONEncodeError

    @property
    def uses_orjson(self) -> bool:
        """Whether orjson writes the lines."""
        return self._orjson is not None

    def encode(self, data: dict[str, Any], *, tiny: bool = False) -> str:
        """Return ``data`` as one line of JSON, every unsafe character escaped."""
        fast = self._orjson
        if fast is not None and not tiny:
            try:
                line = fast(data).decode()
            except self._orjson_error:  # a lone surrogate, an integer past 64 bits
                line = self._dumps(data)
        else:
            line = self._dumps(data)
        if line.isascii() and "\x7f" not in line:
            return line
        return _RAW_UNSAFE.sub(_u_escape, line)


def put_path(out: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``value`` at ``path`` in nested objects (a dotted key if a value is in the way)."""
    if len(path) == 2:  # most nested names: client.ip, user.name, url.path
        child = out.get(path[0])
        if child is None:
            out[path[0]] = {path[1]: value}
            return
        if type(child) is dict:
            child[path[1]] = value
            return
    node = out
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if type(child) is not dict:
            out[".".join(path)] = value
            return
        node = child
    node[path[-1]] = value


def add_fields(
    plan: tuple[tuple[str, Key, bool, Any], ...],
    attributes: dict[str, Any],
    out: dict[str, Any],
    tiny: list[bool],
) -> None:
    """Add ctxlog's fields, the record attributes and the named extras a record holds."""
    for name, key, known, change in plan:
        value = attributes[name]
        if type(value) is str:
            if known and value == MISSING:
                continue  # ctxlog's "unknown": left out of a line meant for a query
        elif value is None and known:
            continue
        else:
            value = plain(value, tiny)
        if change is not None:
            value = change(value)
        if isinstance(key, str):
            out[key] = value
        else:
            put_path(out, key, value)


def fresh(value: dict[str, Any], tree: Tree) -> dict[str, Any]:
    """Return a copy of a static object, and of the objects inside it that ``tree`` names."""
    made = dict(value)
    for key, inner in tree.items():
        child = made.get(key)
        if type(child) is dict:
            made[key] = fresh(child, inner)
    return made


def graft(out: dict[str, Any], key: Key, value: dict[str, Any]) -> None:
    """Put a (fresh) static object at ``key``, merged with an object a head key put there."""
    node = out
    if type(key) is tuple:
        for part in key[:-1]:
            child = node.setdefault(part, {})
            if type(child) is not dict:  # never: the formatter refused such keys
                return
            node = child
        key = key[-1]
    present = node.get(key)  # type: ignore[arg-type]
    node[key] = merge(present, value)[0] if type(present) is dict else value  # type: ignore[index]


def merge(line: dict[str, Any], extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    Return ``line`` with ``extra``'s keys added, and what of ``extra`` did not fit.

    Neither is changed: the objects on the way are copies. Objects both hold are merged the same
    way; a key both hold with the same value is no conflict; a key both hold with another value
    keeps ``line``'s, and ``extra``'s is returned as left over.
    """
    merged = dict(line)
    left: dict[str, Any] = {}
    for key, value in extra.items():
        mine = merged.get(key, _ABSENT)
        if mine is _ABSENT:
            merged[key] = value
        elif type(mine) is dict and type(value) is dict:
            merged[key], rest = merge(mine, value)
            if rest:
                left[key] = rest
        elif not (type(mine) is type(value) and mine == value):
            left[key] = value
    return merged, left


def add_extras(
    extras: tuple[tuple[str, str], ...],
    attributes: dict[str, Any],
    out: dict[str, Any],
    tiny: list[bool],
) -> None:
    """
    Add extra fields to a line that may already hold their keys.

    An extra whose key is free is written there. One whose key the line holds is merged into it
    when both are objects (the line's values kept); the rest of it, or a value that is no object,
    is written after the others under ``extra_KEY`` (``extra_extra_KEY`` if that is taken too):
    never lost, and never in the way of an extra field of that name.
    """
    moved: list[tuple[str, Any]] = []
    for name, key in extras:
        value = attributes[name]
        if type(value) is not str:
            value = plain(value, tiny)
        present = out.get(key, _ABSENT)
        if present is _ABSENT:
            out[key] = value
            continue
        if type(present) is dict and type(value) is dict:
            out[key], value = merge(present, value)
            if not value:
                continue
        moved.append((key, value))
    for key, value in moved:
        where = MOVED + key
        while where in out:
            where = MOVED + where
        out[where] = value
