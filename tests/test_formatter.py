"""ctxlog.Formatter: one line per record whatever the record holds; the receiver's line is the same."""

from __future__ import annotations

import decimal
import json
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import wsgiref.util
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxlog
from ctxlog.receiver import DEFAULT_FORMAT, LineFormatter
from ctxlog.record.escape import Escaped

ROOT = Path(__file__).resolve().parents[1]
FORMAT = "%(asctime)s %(levelname)s %(ip)s %(user)s %(request_id)s %(name)s %(message)s"
FORGED = "\n2030-01-01 00:00:00,000 INFO 10.0.0.1 root - shop.auth password changed"
#: What a line (or a continuation line) may never hold raw.
RAW = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
INJECT = ["\r", "\n", "\r\n", "\x1b[2J", "\x00", "\x85", "\x9b", "\u2028", "\u2029", "\u202e"]
INJECT += ["\t", "\x0b", "\x0c", "\x7f", "\ud800", "\udcff", "\\", "\\n"]
SHORT = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\", '"': '"'}


def unescape(text: str) -> str:
    """Undo ctxlog's escapes; fail on a backslash that does not start one."""
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


def make_record(
    msg: Any = "hello",
    args: Any = (),
    *,
    name: str = "shop.views",
    exc_info: Any = None,
    **attrs: Any,
) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, "/app/views.py", 7, msg, args, exc_info, "view")
    record.__dict__.update(attrs)
    return record


def error_info(message: str) -> Any:
    try:
        raise ValueError(message)
    except ValueError:
        return sys.exc_info()


def one_record(text: str) -> list[str]:
    """The lines of one formatted record, checked: a head line, then only '  | ' lines."""
    head, *rest = text.split("\n")
    assert not head.startswith("  | "), text
    assert all(line.startswith("  | ") for line in rest), text
    assert not any(RAW.search(line) for line in [head, *rest]), text
    return [head, *rest]


# --- the guarantee --------------------------------------------------------------------------------

texts = st.lists(
    st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from(INJECT))
).map("".join)


@settings(deadline=None, max_examples=300)
@given(texts, texts, texts, texts, st.one_of(st.none(), texts), st.one_of(st.none(), texts))
def test_any_record_is_one_line_plus_marked_continuation_lines(  # noqa: PLR0917 - hypothesis
    msg, arg, user, name, exception, stack
):
    """Message, argument, field, logger name, exception message, stack: one head line, '  | ' rest."""
    record = make_record(
        msg + " %s",
        (arg,),
        name=name,
        user=user,
        tenant=msg,
        exc_info=error_info(exception) if exception is not None else None,
        stack_info=stack,
    )
    text = ctxlog.Formatter(FORMAT + " %(tenant)s %(funcName)s").format(record)

    lines = one_record(text)
    assert (exception is not None or bool(stack)) == (len(lines) > 1)


@settings(deadline=None, max_examples=200)
@given(texts, texts)
def test_every_escape_means_the_character_was_sent(msg, user):
    """Unescaping the line gives back exactly the message and the field (backslashes too)."""
    line = ctxlog.Formatter("%(user)s|%(message)s").format(make_record(msg, user=user))

    assert f"{user}|{msg}" == unescape(line.replace("\\x20 | ", "  | ", 1))


@settings(deadline=None, max_examples=200)
@given(st.text(st.characters(exclude_categories=["Cc", "Cs", "Cf", "Zl", "Zp"])))
def test_a_record_with_nothing_to_escape_is_what_logging_formatter_writes(text):
    """Printable text without a backslash comes out exactly as logging.Formatter writes it."""
    text = text.replace("\\", "/")
    record = make_record("%s said %s", (text, 42), ip="203.0.113.7", user=text, request_id="r1")

    expected = logging.Formatter(FORMAT).format(record)
    if expected.startswith("  | "):
        return
    assert expected == ctxlog.Formatter(FORMAT).format(record)


@pytest.mark.parametrize("char", INJECT)
def test_each_injection_is_escaped_in_every_place(char):
    """Each dangerous character, in the message, an argument, a field, extra, the name: escaped."""
    logger = logging.getLogger(f"test_formatter.{char!r}")
    record = logger.makeRecord(
        logger.name + char,
        logging.WARNING,
        "f.py",
        1,
        f"m{char}%s",
        (f"a{char}{FORGED}",),
        None,
        extra={"user": f"u{char}", "tenant": f"t{char}"},
    )
    line = ctxlog.Formatter("%(name)s %(user)s %(tenant)s %(message)s").format(record)

    assert [line] == one_record(line)
    assert f"{record.name} u{char} t{char} m{char}a{char}{FORGED}" == unescape(line)


@pytest.mark.parametrize(
    ("style", "fmt"),
    [
        ("%", "%(levelname)s %(user)s %(message)s"),
        ("{", "{levelname} {user} {message}"),
        ("$", "$levelname ${user} $message"),
    ],
)
def test_all_three_styles_escape(style, fmt):
    """'%', '{' and '$' formats escape the fields they name and the message."""
    record = make_record(f"paid{FORGED}", user="alice\r\nroot")

    line = ctxlog.Formatter(fmt, style=style).format(record)

    assert "INFO alice\\r\\nroot paid\\n2030-01-01 00:00:00,000 INFO" in line
    assert [line] == one_record(line)


class Hostile:
    """An object whose every text form starts a new line."""

    attribute = "attr\nFORGED"

    def __str__(self) -> str:
        return "str\nFORGED"

    def __repr__(self) -> str:
        return "repr\nFORGED"

    def __format__(self, spec: str) -> str:
        return f"format[{spec}]\nFORGED"

    def __getitem__(self, key: str) -> str:
        return f"item[{key}]\nFORGED"


@pytest.mark.parametrize(
    ("style", "fmt", "expected"),
    [
        ("%", "%(thing)s %(thing)r", "str\\nFORGED repr\\nFORGED"),
        (
            "{",
            "{thing} {thing!r} {thing:>3}",
            "format[]\\nFORGED repr\\nFORGED format[>3]\\nFORGED",
        ),
        ("{", "{thing.attribute} {thing[k]}", "attr\\nFORGED item[k]\\nFORGED"),
        ("$", "$thing", "str\\nFORGED"),
    ],
)
def test_values_that_are_not_text_are_escaped_however_they_are_shown(style, fmt, expected):
    """str(), repr(), format specs, attributes and items of an object: all escaped."""
    line = ctxlog.Formatter(fmt, style=style).format(make_record(thing=Hostile()))

    assert expected == line


def test_an_object_as_the_message_is_escaped():
    """log.info(obj) with an obj whose __str__ has a line feed: one line."""
    assert "str\\nFORGED" == ctxlog.Formatter().format(make_record(Hostile()))


def test_numbers_keep_their_format_specs():
    """%d, %f, %x and %03d still work on numbers, and on number-like objects in extra."""
    record = make_record(count=7, price=decimal.Decimal("2.5"), user="a\nb")

    line = ctxlog.Formatter(
        "%(count)03d %(count)x %(price)d %(price).2f %(user)s %(lineno)d"
    ).format(record)

    assert "007 7 2 2.50 a\\nb 7" == line


def test_asctime_from_a_datefmt_with_a_line_feed_directive_is_escaped():
    """A datefmt whose %n makes a line feed: the time is escaped like any value."""
    line = ctxlog.Formatter("%(asctime)s %(message)s", datefmt="%Y%n%m").format(make_record("m\n"))

    assert re.fullmatch(r"\d{4}\\n\d\d m\\n", line), line


def test_the_formats_own_characters_are_kept():
    """A tab or an ANSI colour written in the format stays as the developer wrote it."""
    fmt = "\x1b[31m%(levelname)s\x1b[0m\t%(message)s"

    assert "\x1b[31mINFO\x1b[0m\tm\\tx" == ctxlog.Formatter(fmt).format(make_record("m\tx"))


@pytest.mark.parametrize("brk", ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"])
@pytest.mark.parametrize("option", ["fmt", "datefmt"])
def test_a_format_with_a_line_break_is_refused(brk, option):
    """A line break in fmt or datefmt fails at construction, naming the option."""
    with pytest.raises(ValueError, match=f"{option}=.* contains a line break"):
        ctxlog.Formatter(**{option: f"%(message)s{brk}x"})


def test_a_subclass_whose_format_message_adds_a_line_break_still_writes_one_line():
    """A formatMessage() override that adds a line feed: the line break is escaped."""

    class Shouting(ctxlog.Formatter):
        def formatMessage(self, record: logging.LogRecord) -> str:
            return super().formatMessage(record) + "\n!"

    assert "m\\x1b\\n!" == Shouting().format(make_record("m\x1b"))
    assert "m\\n!" == Shouting().format(make_record("m"))


def test_a_record_line_cannot_pass_for_a_continuation_line():
    """A line that would start with '  | ' has its first space escaped."""
    assert "\\x20 | fake frame" == ctxlog.Formatter().format(make_record("  | fake frame"))
    assert "\\x20 | x" == ctxlog.Formatter().format(make_record("  | %s", ("x",)))


# --- tracebacks and stacks ---------------------------------------------------------------------


def test_traceback_lines_are_marked_and_an_exception_message_cannot_end_the_record():
    """The traceback follows on '  | ' lines; a line feed in the exception stays one of them."""
    record = make_record("failed", exc_info=error_info(f"bad\rinput{FORGED}"))

    lines = one_record(ctxlog.Formatter(FORMAT).format(record))

    assert lines[0].endswith(" shop.views failed")
    assert "  | Traceback (most recent call last):" == lines[1]
    assert "  | ValueError: bad\\rinput" == lines[-2]
    assert "  | " + FORGED.strip() == lines[-1]


def test_stack_info_follows_on_marked_lines():
    """stack_info is written after the record, each line marked and escaped."""
    record = make_record("here", stack_info="Stack (most recent call last):\n  File x\x1b[2J")

    lines = ctxlog.Formatter().format(record).split("\n")

    assert ["here", "  | Stack (most recent call last):", "  |   File x\\x1b[2J"] == lines


def test_exc_text_is_cached_as_logging_formatter_caches_it():
    """The record is shared: exc_text holds the plain traceback, so a sibling's output is unchanged."""
    info = error_info("bad\ninput")
    alone = logging.Formatter().format(make_record("x", exc_info=info))
    shared = make_record("x", exc_info=info)

    ctxlog.Formatter().format(shared)

    assert logging.Formatter().formatException(info) == shared.exc_text
    assert alone == logging.Formatter().format(shared)
    assert ctxlog.Formatter().format(shared) == ctxlog.Formatter().format(shared)


def test_exc_text_cached_by_a_sibling_formatter_is_used_and_escaped():
    """A traceback text another formatter cached (or a sender sent) is what is shown, escaped."""
    record = make_record("x", exc_info=error_info("ignored"))
    record.exc_text = "Custom traceback\nline\x1b[2J"

    assert "x\n  | Custom traceback\n  | line\\x1b[2J" == ctxlog.Formatter().format(record)
    assert "Custom traceback\nline\x1b[2J" == record.exc_text


def test_message_and_asctime_on_the_record_are_the_plain_ones():
    """record.message holds the merged message, not its escaped form, as logging sets it."""
    record = make_record("a\n%s", ("b",))

    ctxlog.Formatter("%(asctime)s %(message)s").format(record)

    assert "a\nb" == record.message
    assert isinstance(record.asctime, str)


# --- what must not lose a record ----------------------------------------------------------------


def test_a_record_without_ctxlogs_fields_shows_dashes():
    """%(ip)s %(user)s %(request_id)s %(trace_id)s on a record made outside ctxlog: '-'."""
    line = ctxlog.Formatter(
        "%(ip)s %(user)s %(request_id)s %(method)s %(path)s %(trace_id)s %(span_id)s %(message)s"
    ).format(make_record("m"))

    assert "- - - - - - - m" == line


def test_defaults_add_fields_and_are_escaped():
    """defaults= fills a field a record lacks, as logging.Formatter's does, escaped too."""
    formatter = ctxlog.Formatter(
        "%(tenant)s %(user)s %(message)s", defaults={"tenant": "t\n", "user": "nobody"}
    )

    assert "t\\n nobody m" == formatter.format(make_record("m"))
    assert "acme alice m" == formatter.format(make_record("m", tenant="acme", user="alice"))


def test_arguments_that_do_not_fit_keep_the_record():
    """'%d' with a text argument: the message, the arguments and the reason, on one line."""
    line = ctxlog.Formatter().format(make_record("%d items for %s", ("many\n", "x")))

    assert line.startswith("%d items for %s ('many\\\\n', 'x') (the arguments did not fit")
    assert "TypeError" in line
    assert [line] == one_record(line)


def test_nothing_reaches_handle_error_through_a_real_handler(tmp_path, capfd):
    """Bad arguments, missing ctxlog fields, lone surrogates: every record is in the file."""
    path = tmp_path / "app.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(ctxlog.Formatter(FORMAT))
    logger = logging.getLogger("test_formatter.file")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("%d items", "many")
        logger.warning("lone \ud800 surrogate %s", "\udcff")
        logger.warning("forged%s", FORGED, extra={"user": "x\ud800"})
        try:
            raise KeyError("k\ud800")
        except KeyError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        handler.close()

    lines = path.read_text(encoding="utf-8").splitlines()
    heads = [line for line in lines if not line.startswith("  | ")]
    assert 4 == len(heads)
    assert "lone \\ud800 surrogate \\udcff" in heads[1]
    assert " x\\ud800 " in heads[2]
    assert "--- Logging error ---" not in capfd.readouterr().err


def test_a_record_factory_with_its_own_get_message_is_honoured():
    """A LogRecord subclass formatting with str.format (the cookbook's {}-messages) still works."""

    class BraceRecord(logging.LogRecord):
        def getMessage(self) -> str:
            return str(self.msg).format(*self.args)

    record = BraceRecord("n", logging.INFO, "p", 1, "hello {}", ("wor\nld",), None)

    assert "hello wor\\nld" == ctxlog.Formatter().format(record)


# --- one escaping, not two --------------------------------------------------------------------


def test_values_ctxlog_escaped_when_captured_are_not_escaped_again(capture):
    """A request's escaped path and the access line show each escape once, not doubled."""
    app = ctxlog.WSGIMiddleware(
        lambda e, s: (ctxlog.get_logger("v").info("in view"), s("200 OK", []), [b""])[2],
        access_log=True,
    )
    environ: dict[str, Any] = {"PATH_INFO": "/a\r\nFORGED\\", "REMOTE_ADDR": "192.0.2.1"}
    wsgiref.util.setup_testing_defaults(environ)
    body = app(environ, lambda *a: None)
    list(body)
    body.close()
    view = capture.named("v")[0]
    access = capture.named("ctxlog.access")[0]
    formatter = ctxlog.Formatter("%(path)s | %(message)s")

    assert "/a\\r\\nFORGED\\\\ | in view" == formatter.format(view)
    assert '"GET /a\\r\\nFORGED\\\\ HTTP/1.0"' in formatter.format(access)
    assert isinstance(access.getMessage(), Escaped)


def test_a_developers_own_copy_of_a_path_is_escaped_once():
    """Text that merely looks escaped is escaped: only ctxlog's own mark is trusted."""
    assert "/a\\\\r" == ctxlog.Formatter().format(make_record("/a\\r"))


# --- the receiver's line is the same formatter ---------------------------------------------------


def test_line_formatter_is_a_ctxlog_formatter():
    """One implementation: the receiver's LineFormatter is ctxlog.Formatter with its defaults."""
    record = make_record(f"x{FORGED}", ip="1.2.3.4", exc_text="Traceback\nValueError: \x1b")
    record.peer = "127.0.0.1:1"

    assert issubclass(LineFormatter, ctxlog.Formatter)
    assert ctxlog.Formatter(DEFAULT_FORMAT).format(record) == LineFormatter().format(record)


def test_line_formatter_cuts_long_fields_and_shows_a_missing_peer_as_dash():
    """A field longer than 1024 characters is cut; a record without peer shows '-'."""
    line = LineFormatter("%(user)s %(peer)s").format(make_record(user="u" * 5000))

    assert "u" * 1024 + "... -" == line


def _frame(body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return struct.pack(">2sBBI", b"CX", 1, 0, len(data)) + data


def test_receiver_writes_a_lone_surrogate_escaped_and_loses_no_record(tmp_path):
    """`ctxlog receive` (a subprocess) writes frames holding lone surrogates, escaped, none lost."""
    out = tmp_path / "out.log"
    err = tmp_path / "err.log"
    with err.open("wb") as errors:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ctxlog",
                "receive",
                "--listen",
                "127.0.0.1:0",
                "--file",
                str(out),
            ],
            stderr=errors,
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        deadline = time.monotonic() + 20
        while not (match := re.search(r"listening on 127\.0\.0\.1:(\d+)", err.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.01)
        base = {"name": "shop.views", "levelno": 40, "created": 1.7e9}
        with socket.create_connection(("127.0.0.1", int(match[1])), timeout=10) as sock:
            sock.sendall(_frame({**base, "msg": "lone \ud800 in the message", "user": "u\udcff"}))
            sock.sendall(_frame({**base, "msg": "tb", "exc_text": "Traceback\nKeyError: '\ud800'"}))
            sock.sendall(_frame({**base, "msg": "last"}))
        while b" last " not in (out.read_bytes() if out.exists() else b""):
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)

    lines = out.read_text(encoding="utf-8").splitlines()
    assert 5 == len(lines), lines
    assert "lone \\ud800 in the message" in lines[0] and " u\\udcff " in lines[0]
    assert "  | KeyError: '\\ud800'" == lines[3]
    assert 0 == proc.returncode
