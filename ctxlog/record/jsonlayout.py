"""
Where :class:`ctxlog.JSONFormatter` writes each value of a line, worked out once, at construction.

:class:`Layout` gives each field its key (``schema=`` and ``rename=``) and checks every key a
line can hold against every other: the time, level, message and logger, ``static=`` keys and
each value inside a static object, ctxlog's fields, the exception's and the stack's keys, and
the ``rename=`` keys of extra fields. Two that would land on one key, or one inside the other
(``static={"log": "x"}`` and ``log.logger``; ``rename={"order_id": "http"}`` and
``http.request.id``), are a :class:`ValueError` naming both and what to change: one would
replace the other on every line. With ``schema="ecs"`` every dot is a level of nesting,
written either way, as Elasticsearch reads it: ``log.level`` and a static ``log`` clash too.

It also says which static objects a line writes into (``static={"httpRequest": {"protocol":
"HTTP/1.1"}}`` and the client's ``remoteIp``), so that each line starts from its own copy of
those (:func:`ctxlog.record.jsonvalue.fresh`) and never from what the line before left there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from ctxlog.record.jsonvalue import Key, Tree, plain
from ctxlog.record.schemas import ECS_VERSION, KNOWN, SCHEMAS, ecs_path, paths

__all__ = ["Layout", "check_options"]

#: What a field is called in a message about its key, for the fields with more than one key.
_LABELS: Final = {
    "exception.type": "exception",
    "exception.message": "exception",
    "level.number": "level",
}
#: Where an option a "class" dictConfig entry cannot give belongs.
_USE_FACTORY: Final = (
    '; in dictConfig give the options to "()": "ctxlog.JSONFormatter" (fields=, rename=, '
    'static=, schema=): a "class" entry gives the default formatter only'
)


def check_options(
    schema: object, gcp_project: object, datefmt: object, style: object, defaults: object
) -> None:
    """Refuse an unknown schema, and what dictConfig passes a ``"class":`` formatter in vain."""
    if schema not in SCHEMAS:
        msg = f"JSONFormatter: schema={schema!r} is not one of {list(SCHEMAS)}"
        raise ValueError(msg)
    if gcp_project is not None and schema != "gcp":
        msg = f"JSONFormatter: gcp_project={gcp_project!r} needs schema='gcp'"
        raise ValueError(msg)
    if datefmt is not None:
        msg = f"JSONFormatter: datefmt={datefmt!r}: the time is always ISO 8601 in UTC"
        raise ValueError(msg + _USE_FACTORY)
    if style != "%":
        msg = f"JSONFormatter: style={style!r}: a JSON line has no format string"
        raise ValueError(msg + _USE_FACTORY)
    if defaults is not None:
        msg = f"JSONFormatter: defaults={defaults!r}: give static= for keys on every line"
        raise ValueError(msg + _USE_FACTORY)


class Layout:
    """
    The keys of one formatter's lines: each field's, checked against the others.

    Args:
        schema: ``None``, ``"ecs"``, ``"otel"`` or ``"gcp"`` (already checked).
        names: The fields a line holds (already checked).
        rename: ``rename=`` as given.

    Raises:
        ValueError: A ``rename=`` entry that is not text, or names a field no line holds.
    """

    def __init__(
        self, schema: str | None, names: tuple[str, ...], rename: Mapping[str, str]
    ) -> None:
        self.schema = schema
        self.table = paths(schema)
        self.names = names
        for field, key in rename.items():
            if not (isinstance(field, str) and isinstance(key, str) and key):
                msg = f"JSONFormatter: rename={{{field!r}: {key!r}}}: both must be non-empty text"
                raise ValueError(msg)
            extra = "extras" in names and field not in KNOWN
            if not (field in names or field in self.table or extra):
                msg = f"JSONFormatter: rename= names {field!r}, which fields= does not write"
                raise ValueError(msg)
        #: The key each renamed field is written under.
        self.rename = dict(rename)
        #: Who writes each key: a field's name, or a static= key.
        self.used: dict[Key, str] = {}

    def key(self, field: str) -> Key:
        """Return where ``field`` is written: a key, or a path of nested objects."""
        if field in self.rename:
            key = self.rename[field]
            path = ecs_path(key) if self.schema == "ecs" else (key,)
        else:
            path = self.table.get(field, (field,))
        where: Key = path[0] if len(path) == 1 else path
        if where in self.used:
            msg = (
                f"JSONFormatter: {field!r} and {self.used[where]!r} would both be written as "
                f"{'.'.join(path)!r}; rename= one of them"
            )
            raise ValueError(msg)
        self.used[where] = field
        return where

    def statics(self, static: Mapping[str, Any], tiny: list[bool]) -> tuple[tuple[Key, Any], ...]:
        """Return where each ``static=`` value goes and the value (plain), ``ecs.version`` too."""
        values = dict(static)
        if self.schema == "ecs":
            values = {"ecs.version": ECS_VERSION, **values}
        made = []
        for key, value in values.items():
            if not isinstance(key, str) or not key:
                msg = f"JSONFormatter: static= key {key!r} must be non-empty text"
                raise ValueError(msg)
            path = ecs_path(key) if self.schema == "ecs" else (key,)
            where = path[0] if len(path) == 1 else path
            if where in self.used:
                msg = f"JSONFormatter: static= key {key!r} is already the key of a field"
                raise ValueError(msg)
            self.used[where] = key
            made.append((where, plain(value, tiny)))
        return tuple(made)

    def checked(
        self, static: tuple[tuple[Key, Any], ...]
    ) -> tuple[tuple[Key, Any, Tree | None], ...]:
        """
        Refuse two keys one inside the other; return each static key, its value, what to copy.

        What to copy, for a static object a field or another static key is written into: the
        objects inside it on the way (``{}``: the object itself). ``None`` for the others.
        """
        values = dict(static)
        writers = [
            (
                _path(where),
                f"static= key {owner!r}"
                if where in values
                else f"field {_LABELS.get(owner, owner)!r}",
                values.get(where),
            )
            for where, owner in self.used.items()
        ]
        written = [path for path, _, _ in writers]
        if "extras" in self.names:  # an extra field's rename= key: one flat key, any schema
            writers += [
                ((key,), f"extra field {field!r} (rename=)", None)
                for field, key in self.rename.items()
                if field not in self.names and field not in KNOWN
            ]
        self._check(writers, split=self.schema == "ecs")
        trees = _trees({path: value for path, _, value in writers if value is not None}, written)
        return tuple((where, value, trees.get(_path(where))) for where, value in static)

    def taken(self) -> frozenset[str]:
        """Return the top-level keys a line may hold: an extra field's key may meet one."""
        return frozenset(key if type(key) is str else key[0] for key in self.used)

    @staticmethod
    def _check(writers: list[tuple[tuple[str, ...], str, Any]], *, split: bool) -> None:
        seen: dict[tuple[str, ...], str] = {}
        for path, owner, value in writers:
            for leaf in _leaves(_parts(path, split=split), value, split=split):
                if leaf in seen:
                    _clash(seen[leaf], owner, leaf, leaf)
                seen[leaf] = owner
        for leaf, owner in seen.items():
            for end in range(1, len(leaf)):
                outer = seen.get(leaf[:end])
                if outer is not None:
                    _clash(outer, owner, leaf[:end], leaf)


def _path(where: Key) -> tuple[str, ...]:
    return (where,) if isinstance(where, str) else where


def _parts(path: tuple[str, ...], *, split: bool) -> tuple[str, ...]:
    return tuple(part for key in path for part in key.split(".")) if split else path


def _leaves(path: tuple[str, ...], value: Any, *, split: bool) -> Iterator[tuple[str, ...]]:
    """Yield where a value goes: an object's values one by one, anything else as a whole."""
    if type(value) is dict and value:
        for key, item in value.items():
            yield from _leaves((*path, *_parts((key,), split=split)), item, split=split)
    else:
        yield path


def _clash(first: str, second: str, outer: tuple[str, ...], inner: tuple[str, ...]) -> None:
    statics = [label.startswith("static=") for label in (first, second)]
    if all(statics):
        change = "give static= one of them only, or other keys"
    elif any(statics):
        change = "choose another static= key, or rename= the field"
    else:
        change = "rename= one of them"
    if outer == inner:
        where = f"would both be written as {'.'.join(outer)!r}"
    else:
        where = f"would be written as {'.'.join(outer)!r} and {'.'.join(inner)!r}, inside it"
    msg = f"JSONFormatter: {first} and {second} {where}: one would replace the other; {change}"
    raise ValueError(msg)


def _trees(
    statics: Mapping[tuple[str, ...], Any], written: list[tuple[str, ...]]
) -> dict[tuple[str, ...], Tree]:
    """Return, for each static object that a written path goes into, the objects on the way."""
    trees: dict[tuple[str, ...], Tree] = {}
    for where, value in statics.items():
        if type(value) is not dict:
            continue
        for path in written:
            if len(path) > len(where) and path[: len(where)] == where:
                node = trees.setdefault(where, {})
                for part in path[len(where) :]:
                    node = node.setdefault(part, {})
    return trees
