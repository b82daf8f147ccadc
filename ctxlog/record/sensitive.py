r"""
What :class:`ctxlog.RedactFilter` counts as a secret, and how it masks one.

Two rules, both documented in ``docs/redaction.md``:

* **Keys.** A key (an ``extra=`` name, a bound field, a key of a dict inside a value, a
  ``key=value`` or ``"key": value`` pair inside text) is cut into words: at ``_``, ``-``, ``.``,
  ``[``, ``]``, spaces and any other character that is not a letter or digit, and where a lower
  case letter or digit meets an upper case one (``accessToken``), after percent-decoding
  (``user%5Bpassword%5D``) and lower-casing. It is sensitive when one of the sensitive keys,
  cut the same way, appears among those words, in order: ``db_password``, ``X-Api-Key``,
  ``user[password]`` and ``accessToken`` all are; ``tokens_used`` and ``dbpassword`` are not.
* **Patterns** in text (:mod:`ctxlog.record.textmask`): ``Bearer``/``Basic`` credentials,
  a URL's password or token user (``postgres://app:pw@db``), ``Name: value`` header lines,
  ``key=value`` pairs (query strings, form bodies, logfmt, cookies) and quoted ``"key": value``
  pairs (JSON, a Python dict's repr) whose key is sensitive, and the user's own patterns.

:class:`Masker` applies both to any value: a mapping by its keys, a list, tuple or set item by
item (a ``(key, value)`` pair in one by its key), text and bytes by the patterns, and any other
object through the text it is written as, its ``str()``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, Final
from urllib.parse import unquote

from ctxlog.record.textmask import TextMasker

__all__ = ["DEFAULT_KEYS", "MAX_DEPTH", "SCALARS", "KeyRule", "Masker", "compile_patterns"]

#: The keys whose values are masked unless ``keys=`` replaces them (see :class:`KeyRule` for
#: how a key matches: ``token`` already covers ``access_token``, the longer names are listed so
#: that the documentation shows them).
DEFAULT_KEYS: Final = (
    "access_token",
    "api_key",
    "apikey",
    "auth_token",
    "authorization",
    "client_secret",
    "connect.sid",
    "cookie",
    "credentials",
    "csrfmiddlewaretoken",
    "csrftoken",
    "jsessionid",
    "jwt",
    "passphrase",
    "passwd",
    "password",
    "phpsessid",
    "private_key",
    "pwd",
    "refresh_token",
    "secret",
    "session",
    "sessionid",
    "set-cookie",
    "token",
)

#: How deep :meth:`Masker.value` looks into mappings, lists, tuples and sets; a container
#: deeper than this is masked whole (a dict that holds itself ends here too).
MAX_DEPTH: Final = 8
#: The types of values that hold nothing to look at (exact types: a subclass, such as an
#: ``IntEnum``, is looked at as an object).
SCALARS: Final = frozenset({int, float, bool, complex, type(None)})
#: The longest item taken for the key of a ``(key, value)`` pair in a list, tuple or set.
_PAIR_KEY_SIZE: Final = 64
#: Keys whose verdict is remembered; beyond this many (keys taken from text can be anything)
#: a key is judged afresh each time.
_CACHE_SIZE: Final = 4096

_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD: Final = re.compile(r"[^a-z0-9]+")


def key_words(key: str) -> tuple[str, ...]:
    """Return ``key`` cut into lower-case words, as :class:`KeyRule` compares keys."""
    if "%" in key:
        key = unquote(key)
    return tuple(word for word in _NOT_WORD.split(_CAMEL.sub("_", key).lower()) if word)


class KeyRule:
    """Tell whether a key names a secret (see the module's docstring for the rule)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.wanted: frozenset[tuple[str, ...]] = frozenset(
            words for words in map(key_words, keys) if words
        )
        self._longest = max(map(len, self.wanted), default=0)
        #: The verdicts so far, by key (read directly by the filter, the hot path).
        self.known: dict[str, bool] = {}

    def __call__(self, key: str) -> bool:
        """Return whether ``key`` is sensitive."""
        verdict = self.known.get(key)
        if verdict is None:
            verdict = self._judge(key)
            if len(self.known) < _CACHE_SIZE:
                self.known[key] = verdict
        return verdict

    def _judge(self, key: str) -> bool:
        words = key_words(key)
        wanted = self.wanted
        for size in range(1, min(self._longest, len(words)) + 1):
            for start in range(len(words) - size + 1):
                if words[start : start + size] in wanted:
                    return True
        return False


def compile_patterns(patterns: Iterable[str | re.Pattern[str]]) -> tuple[re.Pattern[str], ...]:
    """
    Compile the user's ``patterns=``, naming the one that is not a regular expression.

    Raises:
        ValueError: A pattern is not a ``str`` or compiled ``str`` pattern, or does not compile.
    """
    if isinstance(patterns, str | bytes | re.Pattern):
        msg = f"RedactFilter: patterns={patterns!r} is one pattern; give a list of patterns"
        raise ValueError(msg)  # noqa: TRY004 - configuration, reported as ValueError
    compiled = []
    for index, pattern in enumerate(patterns):
        if isinstance(pattern, re.Pattern) and isinstance(pattern.pattern, str):
            compiled.append(pattern)
            continue
        if not isinstance(pattern, str):
            msg = f"RedactFilter: patterns[{index}] is {pattern!r}; give a str or re.Pattern[str]"
            raise ValueError(msg)  # noqa: TRY004 - configuration, reported as ValueError
        try:
            compiled.append(re.compile(pattern))
        except re.error as error:
            msg = f"RedactFilter: patterns[{index}] {pattern!r} does not compile: {error}"
            raise ValueError(msg) from error
    return tuple(compiled)


class Masker(TextMasker):
    """
    Mask what :class:`KeyRule` and the patterns find, in text and in any value.

    A value holding a secret is copied and the copy masked, never changed; a value holding
    none is returned as it is.
    """

    rule: KeyRule

    def value(self, value: Any, *, texts: bool = True, depth: int = 0) -> tuple[Any, int]:
        """
        Return ``value`` with secrets masked, and how many; ``value`` itself if none.

        Mappings are masked by key (a copy is a ``dict``), lists, tuples and sets item by item.
        With ``texts``, text, bytes (the text they decode to) and other objects (their
        ``str()``) are masked by the patterns, and replaced by the masked text when something
        was found; without, only keys are looked at (a message's arguments, before they are
        merged into text that the patterns will read).
        """
        kind = type(value)
        if kind is str:
            return self.text(value) if texts else (value, 0)
        if kind in SCALARS:
            return value, 0
        if isinstance(value, dict):
            return self._mapping(value, texts, depth)
        if isinstance(value, list | tuple):
            return self._sequence(value, texts, depth)
        return self._other(value, texts, depth)

    def _other(self, value: Any, texts: bool, depth: int) -> tuple[Any, int]:
        """Mask a value that is not text, a number, a dict, a list or a tuple."""
        if isinstance(value, Mapping):  # requests' CaseInsensitiveDict, MappingProxyType...
            return self._mapping(value, texts, depth)
        if isinstance(value, set | frozenset):
            items, found = self._sequence(tuple(value), texts, depth)
            if not found:
                return value, 0
            return (frozenset(items) if isinstance(value, frozenset) else set(items)), found
        if not texts or isinstance(value, int | float | Enum):
            return value, 0
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray):
            text, found = self.text(value.decode("utf-8", "replace"))
            return (text, found) if found else (value, 0)
        return self._object(value, nested=depth > 0)

    def _mapping(  # noqa: C901 - the hot path: each key and value judged inline, no calls
        self, value: Mapping[Any, Any], texts: bool, depth: int
    ) -> tuple[Any, int]:
        if depth >= MAX_DEPTH:
            return self.mask, 1
        copy: dict[Any, Any] | None = None
        count = 0
        rule = self.rule
        known = rule.known.get
        for key, item in value.items():
            sensitive = known(key) if type(key) is str else self._is_key(key)
            if sensitive is None:
                sensitive = rule(key)
            if sensitive:
                if not _holds_something(item):
                    continue
                new, found = self.mask, 1
            elif type(item) is str:
                if not texts:
                    continue
                new, found = self.text(item)
            elif type(item) in SCALARS:
                continue
            else:
                new, found = self.value(item, texts=texts, depth=depth + 1)
            if found:
                count += found
                if copy is None:
                    copy = dict(value)
                copy[key] = new
        return (value, 0) if copy is None else (copy, count)

    def _sequence(
        self, value: list[Any] | tuple[Any, ...], texts: bool, depth: int
    ) -> tuple[Any, int]:
        if depth >= MAX_DEPTH:
            return self.mask, 1
        copy: list[Any] | None = None
        count = 0
        for index, item in enumerate(value):
            kind = type(item)
            if kind is str:
                if not texts:
                    continue
                new, found = self.text(item)
            elif kind in SCALARS:
                continue
            elif (kind is tuple or kind is list) and len(item) == 2 and self._is_key(item[0]):
                new, found = self._masked_pair(item)
            else:
                new, found = self.value(item, texts=texts, depth=depth + 1)
            if found:
                count += found
                if copy is None:
                    copy = list(value)
                copy[index] = new
        if copy is None:
            return value, 0
        return (copy if isinstance(value, list) else tuple(copy)), count

    def _masked_pair(self, pair: list[Any] | tuple[Any, ...]) -> tuple[Any, int]:
        """Mask the value of a ``(key, value)`` pair whose key is sensitive: a header, a field."""
        if not _holds_something(pair[1]):
            return pair, 0
        return type(pair)((pair[0], self.mask)), 1

    def _is_key(self, key: Any) -> bool:
        """Tell whether ``key`` (a mapping's, or a pair's first item) is a sensitive key."""
        if type(key) is bytes:  # ASGI's headers; latin-1 decodes any bytes
            key = key.decode("latin-1")
        elif type(key) is not str:
            return False
        return len(key) <= _PAIR_KEY_SIZE and self.rule(key)

    def _object(self, value: Any, *, nested: bool) -> tuple[Any, int]:
        """
        Mask an object through its ``str()``, what formatters write of it.

        Inside a container its ``repr()`` is looked at too: ``str()`` of a dict or a list shows
        the ``repr()`` of what it holds. An object whose ``str()`` raises is left for the
        formatter, which cannot write a secret from it either (``JSONFormatter`` writes
        ``<unprintable ...>``, ``logging.Formatter`` reports the error).
        """
        shown = None
        try:
            shown = str(value)
        except Exception:  # noqa: S110 - left for the formatter, as the docstring says
            pass
        else:
            masked, found = self.text(shown)
            if found:
                return masked, found
        if nested:
            try:
                text = repr(value)
            except Exception:
                return value, 0
            if text != shown:
                masked, found = self.text(text)
                if found:
                    return masked, found
        return value, 0


def _holds_something(value: Any) -> bool:
    """Tell whether a sensitive key's value has anything to hide (not None, empty or "-")."""
    if isinstance(value, str):
        return value not in {"", "-"}
    if isinstance(value, bytes | bytearray):
        return value not in (b"", b"-")  # a tuple: a bytearray cannot be hashed
    return value is not None
