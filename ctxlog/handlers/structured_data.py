r"""
The STRUCTURED-DATA of a syslog message: ctxlog's fields as one SD-ELEMENT, within a byte budget.

:class:`~ctxlog.handlers.SyslogHandler` puts the fields of a record (``ip``, ``user``,
``request_id`` ... or the names given as ``fields=``) into one element,
``[ctx@32473 ip="203.0.113.7" user="alice"]``, so that a syslog server keeps them apart from the
text. Two things are done here:

- **Escaping** (:func:`param_value`): RFC 5424 wants a backslash before ``"``, ``\`` and ``]``
  in a PARAM-VALUE, and nothing else; control characters, bidi controls, line separators and
  lone surrogates become ctxlog's escapes first, so a value never breaks a line on the
  receiving side.
- **The budget** (:func:`structured_data`): the element takes at most ``size`` bytes. When the
  parameters do not all fit, the values that need little are kept whole and the long ones share
  the rest equally, each cut to its share (before escaping, never inside an escape) and ending
  in ``...``; a parameter that cannot keep 16 bytes (or all it needs, if less) is left out, from
  the end of ``fields`` first.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from ctxlog.context import MISSING, fields_for_record
from ctxlog.record.escape import escape_match

__all__ = ["param_value", "structured_data"]

#: The mark at the end of a cut PARAM-VALUE, and the fewest bytes a value is cut to: a parameter
#: that cannot have that many (or all it needs, if less) is left out.
_MARK: Final = "..."
_MIN_VALUE: Final = 16
#: What a PARAM-VALUE must not carry raw: C0 and C1 controls, DEL, bidi controls, line and
#: paragraph separators, lone surrogates (which UTF-8 cannot encode).
_PARAM_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
#: One of ctxlog's escapes, as a value captured from a request holds them (``sanitize``).
_ESCAPE_SEQUENCE: Final = re.compile(r"\\(?:[\\ntr]|x[0-9a-f]{2}|u[0-9a-f]{4})")


def param_value(value: str) -> str:
    r"""
    Return ``value`` escaped for a PARAM-VALUE: ``"``, ``\`` and ``]`` get a backslash.

    Control characters, bidi controls, line separators and lone surrogates are written as
    ctxlog's escapes (``\n``, ``\x1b``, ``\u202e``) first, so a value never breaks a line of a
    log file on the receiving side. A receiver that unescapes the value (rsyslog's
    ``mmpstrucdata``) gets the text back exactly, with those escapes in place of the characters.
    """
    if not (value.isascii() and value.isprintable()) and _PARAM_UNSAFE.search(value) is not None:
        value = _PARAM_UNSAFE.sub(escape_match, value)
    # str.replace, not a regex with a template: a value of escapes has a backslash in every
    # few characters, and the template is expanded in Python for each (3.11).
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if '"' in value:
        value = value.replace('"', '\\"')
    if "]" in value:
        value = value.replace("]", "\\]")
    return value


def _utf8_size(text: str) -> int:
    """Return the length of ``text`` in UTF-8 (lone surrogates escaped first: none is left)."""
    return len(text) if text.isascii() else len(text.encode())


def _sequence_start(text: str, end: int) -> int:
    r"""
    Return where to cut ``text`` at ``end`` or before, so that no escape sequence is cut in two.

    A value captured from a request holds ctxlog's escapes (``\u202e``, ``\x1b``, ``\\``): cut
    in the middle, ``\u20`` would read as something the request did not send. A backslash
    starts a sequence when an even number of backslashes precede it.
    """
    start = text.rfind("\\", max(end - 5, 0), end)  # a sequence is at most 6 characters long
    if start < 0:
        return end
    before = start
    while before > 0 and text[before - 1] == "\\":
        before -= 1
    if (start - before) % 2:
        return end  # the second half of a "\\" that ends before ``end``
    sequence = _ESCAPE_SEQUENCE.match(text, start)
    return start if sequence is not None and sequence.end() > end else end


def _shorten(text: str, size: int) -> str:
    """
    Return ``text`` as a PARAM-VALUE of at most ``size`` bytes: cut, escaped, ending in ``...``.

    The cut is made in ``text``, before escaping, on a character and escape-sequence boundary:
    an escape is never cut in two, and no backslash is left to escape the closing quote.
    """
    room = size - len(_MARK)
    full, text = text, text[:room]  # escaped, every character takes one byte or more
    # Escaping works character by character: escape the text in pieces, keep the pieces that
    # fit, and search the first one that does not for the longest prefix that still fits. The
    # work is about that of escaping the text twice, whatever it holds.
    step = -(-len(text) // 16)
    pieces = []
    start = 0
    while start < len(text):
        piece = param_value(text[start : start + step])
        piece_size = _utf8_size(piece)
        if piece_size > room:
            break
        pieces.append(piece)
        room -= piece_size
        start += step
    start = min(start, len(text))
    low, high = 0, min(step, len(text) - start) - 1  # the whole piece does not fit
    while low < high:
        middle = (low + high + 1) // 2
        if _utf8_size(param_value(text[start : start + middle])) <= room:
            low = middle
        else:
            high = middle - 1
    end = _sequence_start(full, start + low)
    if end < start:  # the sequence began in a kept piece
        return param_value(text[:end]) + _MARK
    return "".join(pieces) + param_value(text[start:end]) + _MARK


def structured_data(
    sd_id: str, fields: tuple[str, ...], record: logging.LogRecord, size: int
) -> str:
    """
    Return the STRUCTURED-DATA of ``record``: one ``sd_id`` element of ``fields``, or ``-``.

    A field is read from the record, or else from the current context; one that holds nothing
    (``None`` or ``-``) is left out. The result takes at most ``size`` bytes in UTF-8 (see the
    module for how the values share them), or is ``-``.
    """
    attrs = record.__dict__
    context: dict[str, Any] | None = None
    values = []
    params = []
    for name in fields:
        if name in attrs:
            value = attrs[name]
        else:
            if context is None:
                base, local = fields_for_record()
                context = {**base, **local}
            value = context.get(name, MISSING)
        if value is None or value == MISSING:
            continue
        text = str(value)
        if len(text) > size:
            # Escaped, every character takes a byte or more: this value is cut below
            # anyway, and a huge one costs no more than a short one.
            text = text[: size + 1]
        value = param_value(text)
        values.append((name, text, value))
        params.append(f'{name}="{value}"')
    if not params:
        return MISSING
    data = f"[{sd_id} {' '.join(params)}]"
    if len(data) <= size and (data.isascii() or len(data.encode()) <= size):
        return data
    return _fit(sd_id, values, size)


def _fit(sd_id: str, values: list[tuple[str, str, str]], size: int) -> str:
    """Return the STRUCTURED-DATA of ``values`` (name, text, escaped) in ``size`` bytes."""
    room = size - len(sd_id) - 2  # "[" SD-ID "]"
    names: list[str] = []
    texts: list[str] = []
    escaped: list[str] = []
    needs: list[int] = []
    shares: list[int] = []
    for name, text, value in values:
        need = _utf8_size(value)
        share = min(need, _MIN_VALUE)
        cost = 1 + len(name) + 3 + share  # SP name="value"
        if cost > room:
            continue  # a later, shorter one may still fit
        room -= cost
        names.append(name)
        texts.append(text)
        escaped.append(value)
        needs.append(need)
        shares.append(share)
    if not names:
        return MISSING
    # What is left goes first to the values that need least, then in equal parts.
    order = sorted(range(len(names)), key=lambda i: needs[i] - shares[i])
    for rank, i in enumerate(order):
        more = min(needs[i] - shares[i], room // (len(order) - rank))
        shares[i] += more
        room -= more
    params = [
        f'{name}="{value if need <= share else _shorten(text, share)}"'
        for name, text, value, need, share in zip(names, texts, escaped, needs, shares, strict=True)
    ]
    return f"[{sd_id} {' '.join(params)}]"
