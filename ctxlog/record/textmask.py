r"""
The patterns :class:`ctxlog.RedactFilter` looks for in text, and the masker of what they find.

:class:`TextMasker` masks what the default patterns (``docs/redaction.md`` lists them, with
examples) and the user's patterns find.

Each default pattern is tried only when the text holds what it cannot match without (a "=", a
colon, a colon and a quote, "://" and "@", "earer" or "asic"): a few substring searches in C, so
text with nothing of the kind (most messages) costs no regular expression at all. Every pattern
is linear: no quantifier of one can trade characters with another, and the longer scans are
possessive or bounded.

Masking is stable: masked text masked again is the same text (a value already equal to the mask
is left), which ``tests/test_redact.py`` checks with Hypothesis.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

__all__ = ["TextMasker"]

_T68: Final = r"[A-Za-z0-9\-._~+/]"  # RFC 7235 token68, without its trailing "="s
#: A quoted string, its closing quote left to a lookahead; with a ``b`` before it, a bytes repr.
_OPEN_STRING: Final = r"""[bB]?"(?:[^"\\]|\\.)*(?=")|[bB]?'(?:[^'\\]|\\.)*(?=')"""
_STRING: Final = r"""[bB]?"(?:[^"\\]|\\.)*"|[bB]?'(?:[^'\\]|\\.)*'"""
_FLAT: Final = rf"""(?:{_STRING}|[^"'\[\](){{}}])*+"""  # what a literal holds, no brackets
_INNER: Final = rf"""(?:{_STRING}|\[{_FLAT}\]|\({_FLAT}\)|\{{{_FLAT}\}}|[^"'\[\](){{}}])*+"""
#: A list, tuple, set or dict literal (JSON or a Python repr) and the literals directly in it.
_LITERAL: Final = rf"""\[{_INNER}\]|\({_INNER}\)|\{{{_INNER}\}}"""

#: ``Bearer``/``Basic`` (``bearer``, ``BEARER``...) and 8 or more token68 characters with a
#: digit, a symbol or an upper case letter after the first ("basic authentication" stays); the
#: credential runs on to the next space, quote, separator or backslash (a repr's ``\r\n``), so
#: that ``Bearer key=SECRET`` cannot hide its value behind a "=" that token68 allows.
_CREDENTIAL: Final = re.compile(
    rf"\b(?i:bearer|basic)\s+(?={_T68}*[0-9\-._~+/]|{_T68}+[A-Z])"
    rf"""({_T68}{{8,}}[^\s"'<>,;)\]}}\\]*)"""
)
#: A URL's user information: ``scheme://user:PASSWORD@host``, the password running to the last
#: "@" of the authority as URL parsers read it (``app:p@ss@db``); or a user alone
#: (``https://TOKEN@github.com``), masked when it looks like a token (see ``_TOKEN``).
_USERINFO: Final = re.compile(r"://(?:([^/?#\s:]{0,256}):([^/?#\s]{1,256})|([^/?#\s:@]{16,256}))@")
#: A user name that is a token: 16 or more letters, digits, ``_``, ``-`` or ``~``, with a letter
#: and a digit (``ghp_...``, ``glpat-...``); a name with a dot (``first.last``) is a person's.
_TOKEN: Final = re.compile(r"(?=[^0-9]*[0-9])(?=[^A-Za-z]*[A-Za-z])[\w~-]{16,256}", re.ASCII)
#: The name of a header line, ``Name: value`` (``Authorization: Token x``, ``Cookie: a=b; c=d``,
#: YAML's ``password: x``), when a value follows; the name is not inside a word, a URL or a host
#: (``https://``, ``db:5432``). The value runs to the end of the line (``_LINE_END``).
_HEADER: Final = re.compile(r"(?<![\w.@/:%-])([A-Za-z][\w.-]{0,63}):[ \t]*+(?=\S)")
#: Where a header's value ends: a line break, or a ``\r`` or ``\n`` escape in a repr.
_LINE_END: Final = re.compile(r"[\r\n]|\\[rn]")
#: The scheme of an ``Authorization`` value, kept before the masked credential.
_SCHEME: Final = re.compile(
    r"(?i:bearer|basic|token|digest|negotiate|ntlm|dpop|apikey|aws4-hmac-sha256)[ \t]+(?=\S)"
)
#: A quoted key, a colon and a quoted string or bytes, a number, or a list, tuple or dict
#: literal: JSON, a Python dict's repr. A quoted value's closing quote is left to the next
#: search (a lookahead), where it may open the next key: ``{'a': '', 'token': 'x'}`` and a
#: stray quote before a pair both work.
_QUOTED: Final = re.compile(
    r"""(["'])([^"'\\\s]{1,64})\1\s*:\s*"""
    rf"""({_OPEN_STRING}|-?\d[\w.+-]*|{_LITERAL})"""
)
#: A ``(key, value)`` pair's repr in a list or a tuple: ``[('Authorization', 'Token x')]``,
#: ASGI's ``[(b'authorization', b'Token x')]``; the value a quoted string or bytes.
_TUPLE: Final = re.compile(rf"""[(\[]\s*[bB]?(["'])([^"'\\\s]{{1,64}})\1\s*,\s*({_OPEN_STRING})""")
#: ``key=value``: query strings, form bodies, logfmt, cookies, keyword arguments in a repr; the
#: value quoted (bytes too), a literal, or up to a separator, a quote, a closing bracket, an
#: escaped quote (``\"``) or another "=" (base64 padding is left: it hides nothing, and a value
#: never runs over the next pair). A literal is the value only when a separator or the end
#: follows it (in ``token={}0`` the value is ``{``). A key may start right after a "]", where a
#: value that ended there left off (``password=x]token=y``).
_PAIR: Final = re.compile(
    r"""(?<![\w%.\[-])([\w%.\[\]-]{1,64})="""
    rf"""({_OPEN_STRING}|(?:{_LITERAL})(?![^&\s;,#"'<>)\]}}=])"""
    r"""|(?:[^&\s;,#"'<>)\]}=\\]++|\\(?!["']))*+)"""
)


class TextMasker:
    """
    Mask what the default patterns and the user's patterns find in text.

    Args:
        rule: Tells whether a key found in text is sensitive.
        patterns: The user's patterns; each masks its groups, or its whole match.
        mask: What a secret is replaced by.
        defaults: Whether the default patterns are used.
    """

    def __init__(
        self,
        rule: Callable[[str], bool],
        patterns: tuple[re.Pattern[str], ...],
        mask: str,
        *,
        defaults: bool,
    ) -> None:
        self.rule = rule
        self.mask = mask
        self._defaults = defaults
        self._patterns = patterns

    def text(self, text: str) -> tuple[str, int]:
        """Return ``text`` with every secret the patterns find masked, and how many."""
        count = 0
        if self._defaults:
            colon = ":" in text
            if colon:  # first: "Bearer" before a name would take it for a credential
                text, count = self._headers(text)
            quote = "'" in text or '"' in text
            if quote and ("(" in text or "[" in text):
                # Before the pairs: a stray quote before it would take its bracket for a value.
                text, found = self._substitute(_TUPLE, self._quoted, text, 3)
                count += found
            if "=" in text:  # before credentials: "Bearer" would take "token=" for one
                text, found = self._substitute(_PAIR, self._pair, text, 2)
                count += found
            if "earer" in text or "asic" in text or "EARER" in text or "ASIC" in text:
                text, found = self._substitute(_CREDENTIAL, self._group_match, text)
                count += found
            if "@" in text and "://" in text:
                text, found = self._substitute(_USERINFO, self._userinfo, text)
                count += found
            if colon and quote:
                text, found = self._substitute(_QUOTED, self._quoted, text, 3)
                count += found
        for pattern in self._patterns:
            text, found = self._substitute(pattern, self._group_match, text)
            count += found
        return text, count

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
        opening = _opening(value)  # a quoted value keeps its quotes
        if value[len(opening) :] in {"", self.mask} or not self.rule(match.group(1)):
            return None
        return f"{match.group(1)}={opening}{self.mask}"

    def _quoted(self, match: re.Match[str]) -> str | None:
        """Mask the value of a quoted ``"key": value`` (or ``('key', value)``) pair."""
        value = match.group(3)
        opening = _opening(value)
        if opening:  # a string: its closing quote stays
            if value[len(opening) :] == self.mask or not self.rule(match.group(2)):
                return None
            masked = opening + self.mask
        else:  # a number or a literal becomes a string, quoted as the key is
            if not self.rule(match.group(2)):
                return None
            masked = match.group(1) + self.mask + match.group(1)
        return match.group()[: match.start(3) - match.start()] + masked

    def _headers(self, text: str) -> tuple[str, int]:
        """
        Mask the value of each ``Name: value`` line whose name is sensitive; return how many.

        The value runs to the end of its line and loses all but its scheme (``Token ***``). A
        name that is not sensitive is passed over, its value searched on: a loop of its own,
        as a value found only once it is needed keeps the search linear.
        """
        mask = self.mask
        parts: list[str] = []
        done = at = 0  # text[:done] is in parts; the search goes on from at
        while (match := _HEADER.search(text, at)) is not None:
            at = match.end()
            if not self.rule(match.group(1)):
                continue
            line_end = _LINE_END.search(text, at)
            end = len(text) if line_end is None else line_end.start()
            scheme = _SCHEME.match(text, at, end)
            kept = at if scheme is None else scheme.end()
            if kept < end and text[kept:end] != mask:
                parts += [text[done:kept], mask]
                done = end
            at = end
        if not parts:
            return text, 0
        parts.append(text[done:])
        return "".join(parts), len(parts) // 2

    def _userinfo(self, match: re.Match[str]) -> str | None:
        """Mask a URL's password, and its user name if that is a token."""
        user, password, alone = match.groups()
        mask = self.mask
        if alone is not None:
            return f"://{mask}@" if _TOKEN.fullmatch(alone) else None
        if _TOKEN.fullmatch(user):
            user = mask
        elif password == mask:
            return None
        return f"://{user}:{mask}@"

    def _group_match(self, match: re.Match[str]) -> str | None:
        """Mask a pattern's groups, or the whole match if it has none."""
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


def _opening(value: str) -> str:
    """Return the opening quote of a quoted value (``"``, ``'``, ``b'``...), or ``""``."""
    if value[:1] in {'"', "'"}:
        return value[:1]
    if value[:1] in {"b", "B"} and value[1:2] in {'"', "'"}:
        return value[:2]
    return ""
