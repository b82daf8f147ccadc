"""Escaping request-derived text for log lines, and request id validation."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxlog.record.escape import (
    CONTINUATION,
    MAX_REQUEST_ID,
    REQUEST_ID_BYTES,
    Escaped,
    continuation_lines,
    escape,
    escape_block,
    new_request_id,
    quoted,
    sanitize,
    sanitize_once,
    token,
    valid_request_id,
)

#: Characters that must never reach a log line raw, written out independently of the library.
UNSAFE = frozenset(
    [chr(code) for code in range(0x20)]
    + [chr(code) for code in range(0x7F, 0xA0)]
    + ["\u2028", "\u2029", "\u061c", "\u200e", "\u200f"]
    + [chr(code) for code in range(0x202A, 0x202F)]
    + [chr(code) for code in range(0x2066, 0x206A)]
    + [chr(code) for code in range(0xD800, 0xE000)]
)
#: The same set, but only the characters worth naming one by one in a strategy.
NAMED_UNSAFE = sorted(char for char in UNSAFE if not 0xD800 <= ord(char) < 0xE000)
SHORT = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    """Undo sanitize()'s escapes; fail on a backslash that does not start one."""
    out: list[str] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char != "\\":
            out.append(char)
            pos += 1
            continue
        kind = text[pos + 1 : pos + 2]
        if kind in SHORT:
            out.append(SHORT[kind])
            pos += 2
        elif kind == "x" and re.fullmatch("[0-9a-f]{2}", text[pos + 2 : pos + 4]):
            out.append(chr(int(text[pos + 2 : pos + 4], 16)))
            pos += 4
        elif kind == "u" and re.fullmatch("[0-9a-f]{4}", text[pos + 2 : pos + 6]):
            out.append(chr(int(text[pos + 2 : pos + 6], 16)))
            pos += 6
        else:
            pytest.fail(f"stray backslash at {pos} in {text!r}")
    return "".join(out)


def expected_cut(value: str, limit: int) -> str:
    return value[:limit] + "..." if len(value) > limit else value


# --- sanitize: examples ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("\t", "\\t"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\r\n", "\\r\\n"),
        ("\x00", "\\x00"),
        ("\x0b", "\\x0b"),
        ("\x0c", "\\x0c"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x1f", "\\x1f"),
        ("\x7f", "\\x7f"),
        ("\x80", "\\x80"),
        ("\x85", "\\x85"),
        ("\x9b", "\\x9b"),
        ("\x9f", "\\x9f"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
        ("\u061c", "\\u061c"),
        ("\u200e", "\\u200e"),
        ("\u200f", "\\u200f"),
        ("\u202a", "\\u202a"),
        ("\u202e", "\\u202e"),
        ("\u2066", "\\u2066"),
        ("\u2069", "\\u2069"),
        ("\ud800", "\\ud800"),
        ("\udfff", "\\udfff"),
        ("\\", "\\\\"),
    ],
)
def test_sanitize_escapes_each_unsafe_character(raw, escaped):
    """Controls, separators, bidi controls, lone surrogates and backslash are escaped visibly."""
    assert escaped == sanitize(raw, 100)


@pytest.mark.parametrize("code", [*range(0x20), *range(0x7F, 0xA0)])
def test_sanitize_escapes_every_c0_and_c1_control(code):
    """Every C0 control, DEL and every C1 control becomes a short or \\xNN escape."""
    short = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}

    assert short.get(code, f"\\x{code:02x}") == sanitize(f"a{chr(code)}b", 100)[1:-1]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/api/v1/users?id=3",
        "Mozilla/5.0 (X11; Linux x86_64)",
        "caf\u00e9 \u65e5\u672c \U0001f600",
        "\u00a0\u00ff\u00fe\u00c3(",
        "\u05e9\u05dc\u05d5\u05dd",
        " !\"#$%&'()*+,-./:;<=>?@[]^_`{|}~",
    ],
)
def test_sanitize_keeps_safe_text_unchanged(text):
    """Printable text, including non-ASCII letters and emoji, is returned as it is."""
    assert text == sanitize(text, 100)


def test_sanitize_defuses_a_forged_log_line():
    """A path with CR LF and ESC stays on one line with its escapes visible."""
    path = "/a\r\n127.0.0.1 admin LOGIN\x1b[2J"

    actual = sanitize(path, 1024)

    assert "/a\\r\\n127.0.0.1 admin LOGIN\\x1b[2J" == actual
    assert [actual] == actual.splitlines()


@pytest.mark.parametrize(
    "injected", ["\r", "\n", "\r\n", "\x1b[2J", "\x00", "\x85", "\u2028", "\u2029", "\u202e", "\t"]
)
def test_sanitize_output_is_one_line_without_controls(injected):
    """Each injection from the pitfalls list gives one line with no control byte at all."""
    actual = sanitize(f"user{injected}admin", 256)

    assert [actual] == actual.splitlines()
    assert [] == [char for char in actual if char in UNSAFE]
    assert actual.startswith("user\\")


def test_sanitize_keeps_an_escape_distinct_from_the_character():
    """A literal backslash-n and a real newline give different output."""
    assert "\\\\n" == sanitize("\\n", 10)
    assert "\\n" == sanitize("\n", 10)


def test_sanitize_is_not_idempotent():
    """Sanitizing twice escapes the backslashes of the first pass again."""
    once = sanitize("\n", 10)

    assert "\\\\n" == sanitize(once, 10)


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ("abcdef", 3, "abc..."),
        ("abc", 3, "abc"),
        ("abcd", 3, "abc..."),
        ("", 0, ""),
        ("a", 0, "..."),
        ("abc", -1, "..."),
        ("abc", -100, "..."),
        ("\n" * 10, 2, "\\n\\n..."),
        ("a\\b", 2, "a\\\\..."),
    ],
)
def test_sanitize_cuts_at_the_limit_before_escaping(value, limit, expected):
    """Values longer than limit are cut to limit characters plus "..."; a negative limit is 0."""
    assert expected == sanitize(value, limit)


@pytest.mark.parametrize("char", ["\u202e", "\ud800", "\x1b", "\\"])
def test_sanitize_output_is_bounded(char):
    """Even text made only of escapable characters stays within 6 * limit + 3."""
    limit = 100

    assert len(sanitize(char * 10 * limit, limit)) <= 6 * limit + 3


def test_sanitize_worst_case_reaches_the_bound():
    """The documented bound is exact: six characters per kept character, plus "..."."""
    assert 6 * 100 + 3 == len(sanitize("\u202e" * 101, 100))


def test_sanitize_output_encodes_as_utf8():
    """Lone surrogates (from surrogateescape decoding) are escaped, so UTF-8 encoding works."""
    value = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")

    assert b"caf\\udce9 \\udcff" == sanitize(value, 100).encode("utf-8")


def test_sanitize_latin1_decoded_bytes_are_deterministic():
    """Header bytes decoded as latin-1: C1 bytes are escaped, the rest kept, the same every time."""
    value = b"\xff\xfe\xc3(\x85\x9b".decode("latin-1")

    assert ["\u00ff\u00fe\u00c3(\\x85\\x9b"] * 2 == [sanitize(value, 100), sanitize(value, 100)]


# --- sanitize: properties --------------------------------------------------------------------

any_text = st.text(
    st.one_of(
        st.characters(),
        st.characters(categories=["Cs"]),
        st.sampled_from([*NAMED_UNSAFE, "\\", "x", "u"]),
    )
)
limits = st.integers(0, 60)


@settings(deadline=None)
@given(any_text, limits)
def test_sanitize_output_has_no_unsafe_character(value, limit):
    """For any text, the output holds no control, separator, bidi control or lone surrogate."""
    actual = sanitize(value, limit)

    assert [] == [char for char in actual if char in UNSAFE]
    assert actual == actual.encode("utf-8").decode("utf-8")
    assert len(actual) <= 6 * limit + 3


@settings(deadline=None)
@given(any_text, limits)
def test_sanitize_round_trips(value, limit):
    """Unescaping the output gives back the input, cut at the limit."""
    assert expected_cut(value, limit) == unescape(sanitize(value, limit))


@settings(deadline=None)
@given(any_text, limits)
def test_sanitize_is_deterministic(value, limit):
    """The same input always gives the same output."""
    assert sanitize(value, limit) == sanitize(value, limit)


@settings(deadline=None)
@given(st.text(st.characters(exclude_characters=[*UNSAFE, "\\"])), limits)
def test_sanitize_changes_safe_text_only_by_cutting(value, limit):
    """Text with nothing to escape is only cut."""
    assert expected_cut(value, limit) == sanitize(value, limit)


def test_every_unsafe_character_but_the_backslash_is_not_printable():
    """The fast check (isprintable and no backslash) never lets an unsafe character through."""
    assert [] == [char for char in UNSAFE if char.isprintable()]


@settings(deadline=None)
@given(any_text)
def test_escape_is_sanitize_without_a_cut(value):
    """escape() applies the same rule as sanitize(), with no length limit."""
    assert sanitize(value, len(value)) == escape(value)


def test_escaped_text_is_marked_and_safe_text_is_returned_as_it_is():
    """Escaped output is an Escaped str; text with nothing to escape is the same object."""
    safe = "/cart caf\u00e9 \u65e5\u672c"

    assert safe is escape(safe)
    assert type(escape("a\nb")) is Escaped
    assert type(str(escape("a\nb"))) is Escaped  # the mark survives LogRecord.getMessage()


@settings(deadline=None)
@given(any_text, limits)
def test_sanitize_once_never_escapes_twice(value, limit):
    """Escaping again what sanitize() returned changes nothing; raw text is escaped once."""
    once = sanitize(value, limit)

    assert once == sanitize_once(once, limit)
    assert once == sanitize_once(value, limit)


def test_escape_block_keeps_the_layout_and_escapes_the_rest():
    """Line feeds, tabs and backslashes stay; CR, ESC, bidi controls and surrogates do not."""
    block = "a\tb \\n\n  | c\r\x1b[2J\u202e\ud800"

    assert "a\tb \\n\n  | c\\r\\x1b[2J\\u202e\\ud800" == escape_block(block)
    assert "plain\n\tlines" == escape_block("plain\n\tlines")


def test_continuation_lines_split_at_line_feeds_only_and_escape_each_part():
    """Every line starts with the prefix; other breaks inside a line show as escapes."""
    text = "Traceback:\n  File x\nValueError: a\rb\u2028c\x85d\\n"

    assert [
        CONTINUATION + "Traceback:",
        CONTINUATION + "  File x",
        CONTINUATION + "ValueError: a\\rb\\u2028c\\x85d\\\\n",
    ] == continuation_lines(text)
    assert [CONTINUATION + "ab...", CONTINUATION + "c"] == continuation_lines("abcd\nc", 2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice", "alice"),
        ("", "-"),
        ("alice smith", "alice\\x20smith"),
        ('a"b', 'a\\"b'),
        ("a\u00a0b\u2003c\u3000d", "a\\xa0b\\u2003c\\u3000d"),
    ],
)
def test_token_has_no_whitespace_and_no_quote(text, expected):
    """A column value: whitespace and quotes become escapes, empty is '-'."""
    assert expected == token(text)


def test_quoted_escapes_double_quotes_only():
    """Inside quotes a double quote becomes \\" and nothing else changes."""
    assert 'say \\"hi\\" to x' == quoted('say "hi" to x')
    assert "no quotes" == quoted("no quotes")


# --- request ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "abc-123_x.y",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "{0f8fad5b-d9cb-469f-a165-70867728950e}",
        "!~'<>;=[]^`|",
        "x" * MAX_REQUEST_ID,
    ],
)
def test_valid_request_id_accepts_printable_ascii(value):
    """1-200 printable ASCII characters without space, comma, backslash or quote are valid."""
    assert valid_request_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * (MAX_REQUEST_ID + 1),
        "x" * 65_000,
        "a b",
        " ",
        "abc ",
        "a\tb",
        "a\nb",
        "a\r\nX-Evil: 1",
        "\x00",
        "\x1b[2J",
        "a\x7f",
        "a\x85",
        "caf\u00e9",
        "\u00a0",
        "\u65e5\u672c",
        "a\u2028b",
        "a\u202eb",
        "\ud800",
        "\xff\xfe\xc3(",
        "a,b",
        "a, b",
        "r1\\nFORGED",
        "\\",
        'a"b',
        '"',
    ],
)
def test_valid_request_id_rejects_the_rest(value):
    """Empty, too long, spaces, commas, backslashes, quotes, controls, non-ASCII: rejected."""
    assert not valid_request_id(value)


@pytest.mark.parametrize("code", range(0x100))
def test_request_id_bytes_pattern_agrees_with_valid_request_id(code):
    """The ASGI middleware's byte pattern accepts exactly the characters valid_request_id does."""
    value = f"a{chr(code)}b"

    assert valid_request_id(value) == (
        REQUEST_ID_BYTES.fullmatch(value.encode("latin-1")) is not None
    )


def test_max_request_id_is_200():
    """The documented cap is 200 characters."""
    assert 200 == MAX_REQUEST_ID


@settings(deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(st.characters(min_codepoint=0, max_codepoint=0x7F)),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=195),
    )
)
def test_valid_request_id_matches_its_definition(value):
    """A request id is valid exactly when it is 1-200 characters from "!" to "~" but ,\\"."""
    expected = 0 < len(value) <= 200 and all(
        "!" <= char <= "~" and char not in ',\\"' for char in value
    )

    assert expected == valid_request_id(value)


def test_new_request_id_is_32_lowercase_hex_digits():
    """A generated id is 128 bits as 32 lowercase hex digits, and valid itself."""
    request_id = new_request_id()

    assert re.fullmatch("[0-9a-f]{32}", request_id)
    assert valid_request_id(request_id)


def test_new_request_id_is_distinct_across_calls():
    """Ten thousand generated ids are all different."""
    ids = [new_request_id() for _ in range(10_000)]

    assert len(ids) == len(set(ids))
