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
* **Patterns** in text: ``Bearer``/``Basic`` credentials, the password of a URL's user
  information (``postgres://app:pw@db``), ``key=value`` pairs (query strings, form bodies,
  logfmt, cookies) and quoted ``"key": value`` pairs (JSON, a Python dict's repr) whose key is
  sensitive, and the user's own patterns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final
from urllib.parse import unquote

__all__ = ["DEFAULT_KEYS", "MAX_DEPTH", "KeyRule", "Masker", "compile_patterns"]

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
    "cookie",
    "credentials",
    "csrfmiddlewaretoken",
    "csrftoken",
    "jwt",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "pwd",
    "refresh_token",
    "secret",
    "session",
    "sessionid",
    "set-cookie",
    "token",
)

#: How deep :meth:`Masker.value` looks into dicts, lists and tuples; a container deeper than
#: this is masked whole (a dict that holds itself ends here too).
MAX_DEPTH: Final = 8
#: Keys whose verdict is remembered; beyond this many (keys taken from text can be anything)
#: a key is judged afresh each time.
_CACHE_SIZE: Final = 4096

#: The containers :meth:`Masker.value` looks into (a tuple: faster for isinstance than a union).
_CONTAINERS: Final = (dict, list, tuple)

_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD: Final = re.compile(r"[^a-z0-9]+")

_T68: Final = r"[A-Za-z0-9\-._~+/]"  # RFC 7235 token68, without its trailing "="s
# The default patterns. Each is tried only when the text holds what it cannot match without
# (a "=", a quote and a colon, "://" and "@", "earer" or "asic"): a few substring searches in C,
# so text with nothing of the kind (most messages) costs no regular expression at all.

#: ``Bearer``/``Basic`` (``bearer``, ``BEARER``...) and 8 or more token68 characters with a
#: digit, a symbol or an upper case letter after the first ("basic authentication" stays); the
#: credential runs on to the next space, quote or separator, so that ``Bearer key=SECRET``
#: cannot hide its value behind a "=" that token68 allows.
_CREDENTIAL: Final = re.compile(
    rf"\b(?i:bearer|basic)\s+(?={_T68}*[0-9\-._~+/]|{_T68}+[A-Z])"
    rf"""({_T68}{{8,}}[^\s"'<>,;)\]}}]*)"""
)
#: The password of a URL's user information: ``scheme://user:PASSWORD@host``.
_USERINFO: Final = re.compile(r"://[^/\s:@]{0,256}:([^/\s@]{1,256})(?=@)")
#: A quoted key, a colon and a quoted string or a number: JSON, a Python dict's repr.
#: A quoted value's closing quote is left to the next search (a lookahead), where it may open
#: the next key: ``{'a': '', 'token': 'x'}`` and a stray quote before a pair both work.
_QUOTED: Final = re.compile(
    r"""(["'])([^"'\\\s]{1,64})\1\s*:\s*"""
    r"""("(?:[^"\\]|\\.)*(?=")|'(?:[^'\\]|\\.)*(?=')|-?\d[\w.+-]*)"""
)
#: ``key=value``: query strings, form bodies, logfmt, cookies; the value quoted or up to a
#: separator, a quote, a closing bracket or another "=" (base64 padding is left: it hides
#: nothing, and a value never runs over the next pair).
_PAIR: Final = re.compile(
    r"""(?<![\w%.\[\]-])([\w%.\[\]-]{1,64})="""
    r"""("(?:[^"\\]|\\.)*(?=")|'(?:[^'\\]|\\.)*(?=')|[^&\s;,#"'<>)\]}=]*)"""
)


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


class Masker:
    """Mask what :class:`KeyRule` and the patterns find, in text and in plain containers."""

    def __init__(
        self, rule: KeyRule, patterns: tuple[re.Pattern[str], ...], mask: str, *, defaults: bool
    ) -> None:
        self.rule = rule
        self.mask = mask
        self._defaults = defaults
        self._patterns = patterns

    def text(self, text: str) -> tuple[str, int]:
        """Return ``text`` with every secret the patterns find masked, and how many."""
        count = 0
        if self._defaults:
            if "earer" in text or "asic" in text or "EARER" in text or "ASIC" in text:
                text, count = self._substitute(_CREDENTIAL, self._group_match, text)
            if "@" in text and "://" in text:
                text, found = self._substitute(_USERINFO, self._group_match, text)
                count += found
            if "=" in text:
                text, found = self._substitute(_PAIR, self._pair, text, 2)
                count += found
            if ":" in text and ('"' in text or "'" in text):
                text, found = self._substitute(_QUOTED, self._quoted, text, 3)
                count += found
        for pattern in self._patterns:
            text, found = self._substitute(pattern, self._group_match, text)
            count += found
        return text, count

    def value(self, value: Any, *, texts: bool = True, depth: int = 0) -> tuple[Any, int]:
        """
        Return ``value`` with secrets masked, and how many; ``value`` itself if none.

        Dicts (their sensitive keys), lists and tuples are copied when something in them
        changes, never changed; with ``texts``, strings go through :meth:`text`.
        """
        if type(value) is str:
            return self.text(value) if texts else (value, 0)
        if isinstance(value, _CONTAINERS):
            if depth >= MAX_DEPTH:
                return self.mask, 1
            if isinstance(value, dict):
                return self._dict(value, texts, depth)
            return self._sequence(value, texts, depth)
        return value, 0

    def _dict(self, value: dict[Any, Any], texts: bool, depth: int) -> tuple[Any, int]:
        copy: dict[Any, Any] | None = None
        count = 0
        rule = self.rule
        known = rule.known.get
        for key, item in value.items():
            sensitive = known(key) if type(key) is str else False
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
            elif isinstance(item, _CONTAINERS):
                new, found = self.value(item, texts=texts, depth=depth + 1)
            else:
                continue  # a number, None, an object: nothing to look into
            if found:
                count += found
                if copy is None:
                    copy = dict(value)
                copy[key] = new
        return (value, 0) if copy is None else (copy, count)

    def _sequence(
        self, value: list[Any] | tuple[Any, ...], texts: bool, depth: int
    ) -> tuple[Any, int]:
        copy: list[Any] | None = None
        count = 0
        for index, item in enumerate(value):
            if not (isinstance(item, _CONTAINERS) or (texts and type(item) is str)):
                continue  # a number, None, an object: nothing to look into
            new, found = self.value(item, texts=texts, depth=depth + 1)
            if found:
                count += found
                if copy is None:
                    copy = list(value)
                copy[index] = new
        if copy is None:
            return value, 0
        return (copy if isinstance(value, list) else tuple(copy)), count

    def _substitute(
        self,
        pattern: re.Pattern[str],
        replace: Callable[[re.Match[str]], str | None],
        text: str,
        value: int = 0,
    ) -> tuple[str, int]:
        """
        Replace what ``replace`` masks of each match; return the text and how many.

        A match left as it is (a key that is not sensitive) is searched again from the start
        of its group ``value``, so a pair inside the value of another is still found
        (``redirect=/cb?token=x``, ``msg="login password=x"``).
        """
        match = pattern.search(text)
        if match is None:
            return text, 0
        parts: list[str] = []
        done = 0  # text[:done] is in parts
        while match is not None:
            masked = replace(match)
            if masked is None:
                resume = match.start(value) if value else match.end()
                resume = max(resume, match.start() + 1)
            else:
                parts += [text[done : match.start()], masked]
                done = resume = max(match.end(), match.start() + 1)
            match = pattern.search(text, resume) if resume <= len(text) else None
        if not parts:
            return text, 0
        parts.append(text[done:])
        return "".join(parts), len(parts) // 2

    def _pair(self, match: re.Match[str]) -> str | None:
        """Mask the value of a ``key=value`` pair whose key is sensitive."""
        value = match.group(2)
        quote = value[:1] if value[:1] in {'"', "'"} else ""  # its closing quote stays
        if value[len(quote) :] in {"", self.mask} or not self.rule(match.group(1)):
            return None
        return f"{match.group(1)}={quote}{self.mask}"

    def _quoted(self, match: re.Match[str]) -> str | None:
        """Mask the value of a quoted ``"key": value`` pair whose key is sensitive."""
        value = match.group(3)
        if value[:1] in {'"', "'"}:  # a string: its closing quote stays
            if value[1:] == self.mask or not self.rule(match.group(2)):
                return None
            masked = value[0] + self.mask
        else:  # a number becomes a string, quoted as the key is
            if not self.rule(match.group(2)):
                return None
            masked = match.group(1) + self.mask + match.group(1)
        return match.group()[: match.start(3) - match.start()] + masked

    def _group_match(self, match: re.Match[str]) -> str | None:
        """Mask a user pattern's groups, or the whole match if it has none."""
        mask = self.mask
        if not match.re.groups:
            return None if match.group() in {"", mask} else mask
        text = match.group()
        start = match.start()
        parts = []
        at = 0
        for index in range(1, match.re.groups + 1):
            begin, end = match.span(index)
            if begin < 0 or begin == end or begin - start < at or match.group(index) == mask:
                continue  # a group that did not take part, is empty, masked, or inside another
            parts += [text[at : begin - start], mask]
            at = end - start
        if not parts:
            return None
        return "".join([*parts, text[at:]])


def _holds_something(value: Any) -> bool:
    """Tell whether a sensitive key's value has anything to hide (not None, "" or "-")."""
    return value is not None and not (isinstance(value, str) and value in {"", "-"})
