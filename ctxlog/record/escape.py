r"""
The one escaping policy of ctxlog: what a log line may carry raw, and how the rest is written.

A request can carry any character in its path (percent-decoded by the server), its headers and
whatever an authentication layer derives from them; a developer's message arguments, bound values
and exception messages may hold the same text; a network peer sends what it likes. Written to a
log unchanged, a CR or LF starts a forged line, an ESC sequence drives the reader's terminal, and
a Unicode bidi override reorders what a human sees (CWE-117, log injection).

Every writer of ctxlog takes its escaping from here, so there is one rule and one character class:
the request middleware and the framework glue (:func:`sanitize`), :class:`ctxlog.Formatter` and
the receiver's line (:func:`escape`, :func:`continuation_lines`), the access line (:func:`token`,
:func:`quoted`), the e-mail body (:func:`escape_block`) and syslog (:data:`UNSAFE` and
:func:`escape_match`). The rule:

* C0 controls (U+0000-U+001F, tab included), DEL and the C1 controls (U+0080-U+009F, so CSI and
  OSC as well as ESC) become ``\t``, ``\n``, ``\r`` or ``\xNN``;
* the bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), the line and paragraph
  separators U+2028/U+2029 and surrogates (which no UTF-8 encoder accepts) become ``\uNNNN``;
* a backslash becomes ``\\``, so an escape in the log always means the character was there.

Text that needs none of this (nearly all of it) is returned as it is, after two C calls.
Text that was escaped comes back as :class:`Escaped`, a ``str`` that tells a later writer (the
Formatter) that it must not be escaped a second time.
"""

from __future__ import annotations

import os
import re
from typing import Final

__all__ = [
    "CONTINUATION",
    "LINE_BREAK",
    "REQUEST_ID_BYTES",
    "UNSAFE",
    "Escaped",
    "continuation_lines",
    "escape",
    "escape_block",
    "escape_match",
    "new_request_id",
    "quoted",
    "sanitize",
    "sanitize_once",
    "token",
    "valid_request_id",
]

#: Longest request id accepted from a client.
MAX_REQUEST_ID: Final = 200

# The character class, in parts, written once. Every pattern below is made of these.
_CONTROLS: Final = "\x00-\x1f\x7f-\x9f"
_INVISIBLE: Final = "\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_SURROGATES: Final = "\ud800-\udfff"

#: Every character a line never carries raw: controls, bidi controls, line and paragraph
#: separators, surrogates, and the backslash itself.
UNSAFE: Final = re.compile(f"[{_CONTROLS}\\\\{_INVISIBLE}{_SURROGATES}]")
_UNSAFE: Final = UNSAFE  # the name other modules imported before 0.3.0
#: The same set less line feed, tab and backslash: for text already laid out in lines by a
#: formatter (an e-mail body), where those are the layout and the backslashes are its escapes.
_BLOCK_UNSAFE: Final = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_INVISIBLE}{_SURROGATES}]")
#: What some reader takes as the end of a line (``str.splitlines`` breaks at each of them).
LINE_BREAK: Final = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
#: Whitespace that would end a column of a space-separated line (the access line's tokens).
_SPACE: Final = re.compile(r'[\s"]')

_SHORT: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\", '"': '\\"'}

#: What starts each line of a traceback or stack written after a record's line.
CONTINUATION: Final = "  | "


class Escaped(str):
    """
    Text this module escaped: a writer passes it on as it is, never escaping it again.

    Only this module makes instances. ``str()`` of one is the instance itself, so the mark
    survives :meth:`logging.LogRecord.getMessage` and a queue's copy of the record; any other
    operation (joining, slicing, formatting into a larger string) gives a plain ``str``.
    """

    __slots__ = ()

    def __str__(self) -> str:
        return self


def _escape_of(char: str) -> str:
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


class _Escapes(dict[str, str]):
    """Each character's escape: the common ones made once, any other when first met."""

    def __missing__(self, char: str) -> str:
        escaped = self[char] = _escape_of(char)
        return escaped


#: The escapes of the controls, bidi controls, separators, backslash, quote and space, made
#: once; a surrogate or another space is added when met (at most the few thousand characters
#: the patterns below can match).
_ESCAPES: Final = _Escapes(
    (char, _escape_of(char))
    for char in [
        *map(chr, [*range(0x20), *range(0x7F, 0xA0), *range(0x2028, 0x202F)]),
        *map(chr, range(0x2066, 0x206A)),
        *'\u061c\u200e\u200f\\" ',
    ]
)
_escape_char: Final = _ESCAPES.__getitem__


def escape_match(match: re.Match[str]) -> str:
    """Return the escape of the one character ``match`` found (for ``pattern.sub``)."""
    return _escape_char(match.group())


_escape: Final = escape_match  # the name other modules imported before 0.3.0


def escape(text: str) -> str:
    """
    Return ``text`` with every :data:`UNSAFE` character escaped.

    Text with nothing to escape is returned as it is (the same object); escaped text comes back
    as :class:`Escaped`. The result never holds a line break, an ESC or a bidi control, and no
    backslash that does not start an escape.
    """
    # Every unsafe character but the backslash is "not printable" to Python: two C calls,
    # cheaper than the regex, settle nearly all text.
    if text.isprintable() and "\\" not in text:
        return text
    if UNSAFE.search(text) is None:
        return text
    return Escaped(UNSAFE.sub(escape_match, text))


def sanitize(value: str, limit: int) -> str:
    """
    Return ``value`` cut at ``limit`` characters, then escaped as :func:`escape` does.

    A cut value ends with ``...``. The result is at most ``6 * limit + 3`` characters long
    (every kept character may become a six-character escape). A negative ``limit`` counts as 0.
    """
    if len(value) > limit:
        value = value[: max(limit, 0)] + "..."
    return escape(value)


def sanitize_once(value: str, limit: int) -> str:
    """
    Return ``value`` as :func:`sanitize` does, unless this module escaped it already.

    For a writer that receives values which may or may not have been escaped when they were
    captured (a request's path, or a value a developer bound in its place): an :class:`Escaped`
    value is returned as it is, and any other text, which holds no backslash if it was escaped
    already, comes out the same as it went in unless it needs escaping.
    """
    return value if isinstance(value, Escaped) else sanitize(value, limit)


def escape_block(text: str) -> str:
    """
    Return lines a formatter made, escaped but for their line feeds, tabs and backslashes.

    For text that is already laid out: its line feeds separate records and their continuation
    lines, and its backslashes may be :class:`ctxlog.Formatter` escapes that must not double.
    Every other :data:`UNSAFE` character is escaped.
    """
    if text.isprintable():
        return text
    if _BLOCK_UNSAFE.search(text) is None:
        return text
    return _BLOCK_UNSAFE.sub(escape_match, text)


def continuation_lines(text: str, limit: int | None = None) -> list[str]:
    """
    Return a traceback or stack as lines that each start with :data:`CONTINUATION`.

    ``text`` is split at line feeds only; each part is escaped, so a carriage return, a separator
    or an escape sequence inside an exception message stays visible within its line. No line can
    pass for the start of a record. With ``limit``, each part is cut at that many characters
    first.
    """
    if limit is None:
        return [CONTINUATION + escape(part) for part in text.split("\n")]
    return [CONTINUATION + sanitize(part, limit) for part in text.split("\n")]


def token(text: str) -> str:
    r"""
    Return escaped ``text`` as one column of a space-separated line: never empty, no whitespace.

    ``text`` must already be escaped (:func:`sanitize`); this adds ``\"`` for a double quote and
    ``\xNN``/``\uNNNN`` for a space or any other whitespace (a no-break space, an em space), so a
    column reader that splits at whitespace and quotes reads the value whole. Empty text is
    ``-``.
    """
    if not text:
        return "-"
    if _SPACE.search(text) is None:
        return text
    return Escaped(_SPACE.sub(escape_match, text))


def quoted(text: str) -> str:
    r"""
    Return escaped ``text`` for a double-quoted part of a line: ``"`` becomes ``\"``.

    ``text`` must already be escaped (:func:`sanitize`), so every backslash in it starts an
    escape and ``\"`` cannot be confused with a backslash the client sent.
    """
    if '"' not in text:
        return text
    return Escaped(text.replace('"', '\\"'))


#: A request id a client may choose: 1-200 printable ASCII characters without a space, a comma
#: (a server joins a header sent twice with commas: an id with one may be two ids), a backslash
#: (it would read as an escape in a line) or a double quote (it would end a quoted column).
_REQUEST_ID: Final = re.compile(r"[!#-+\--\[\]-~]{1,%d}" % MAX_REQUEST_ID)  # noqa: UP031
REQUEST_ID_BYTES: Final = re.compile(rb"[!#-+\--\[\]-~]{1,%d}" % MAX_REQUEST_ID)


def valid_request_id(value: str) -> bool:
    r"""
    Tell whether ``value`` is 1-200 printable ASCII characters, no space, comma, ``\`` or ``"``.

    .. versionchanged:: 0.3.0
       A backslash or a double quote makes an id invalid.
    """
    return _REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """Return a fresh request id: 128 random bits as 32 lowercase hex digits."""
    return os.urandom(16).hex()
