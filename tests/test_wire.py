"""The wire format: length-prefixed JSON frames that decode to records, never to code."""

from __future__ import annotations

import json
import logging
import pickle
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxlog
from ctxlog import _wire
from ctxlog._wire import HEADER_SIZE, TAG_SIZE, WireError, decode, encode, read_header

KEY = b"k" * 32


def split(frame: bytes) -> tuple[bytes, bytes, bytes | None]:
    header = frame[:HEADER_SIZE]
    signed, _ = read_header(header)
    if signed:
        return header, frame[HEADER_SIZE + TAG_SIZE :], frame[HEADER_SIZE : HEADER_SIZE + TAG_SIZE]
    return header, frame[HEADER_SIZE:], None


def frame_of(body: bytes, *, version: int = 1, flags: int = 0, magic: bytes = b"CX") -> bytes:
    return struct.pack(">2sBBI", magic, version, flags, len(body)) + body


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("shop.views", logging.ERROR, "/app/views.py", 42, "paid %s EUR", (12,), None, "pay")
    rec.__dict__.update(extra)
    return rec


def test_round_trip_keeps_message_context_and_extras():
    """A record survives the wire: merged message, context fields, plain extras."""
    original = record(ip="203.0.113.7", user="alice", request_id="r1", method="GET", path="/pay", order=7, ok=True)
    header, body, tag = split(encode(original))
    decoded = decode(header, body, tag)

    assert ("paid 12 EUR", None, "shop.views", logging.ERROR, "ERROR") == (decoded.msg, decoded.args, decoded.name, decoded.levelno, decoded.levelname)
    assert ("203.0.113.7", "alice", "r1", "GET", "/pay") == tuple(getattr(decoded, f) for f in ctxlog.FIELDS)
    assert (7, True, 42, "pay") == (decoded.order, decoded.ok, decoded.lineno, decoded.funcName)
    assert original.created == decoded.created


def test_traceback_travels_as_text():
    """exc_info becomes exc_text; the receiver's formatter prints it once."""
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        import sys

        original = record()
        original.exc_info = sys.exc_info()
    decoded = decode(*split(encode(original)))

    line = logging.Formatter("%(message)s").format(decoded)
    assert 1 == line.count("Traceback")
    assert "ZeroDivisionError" in line


def test_unplain_extras_become_text():
    """An extra that is not plain data is sent as its str()."""
    decoded = decode(*split(encode(record(when=object.__new__(type("When", (), {"__str__": lambda self: "noon"}))))))

    assert "noon" == decoded.when


def test_signed_frames_verify_and_unsigned_or_tampered_are_rejected():
    """With a key, only frames with a matching tag decode."""
    signed = encode(record(), key=KEY)
    header, body, tag = split(signed)

    assert "paid 12 EUR" == decode(header, body, tag, key=KEY).msg
    with pytest.raises(WireError, match="bad signature"):
        decode(header, body.replace(b"12", b"99"), tag, key=KEY)
    with pytest.raises(WireError, match="bad signature"):
        decode(header, body, tag, key=b"other")
    with pytest.raises(WireError, match="unsigned"):
        decode(*split(encode(record())), key=KEY)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pickle.dumps({"msg": "x"}), "bad magic"),
        (struct.pack(">2sBBI", b"CX", 1, 0, 0xFFFFFFF0), "over the limit"),
        (struct.pack(">2sBBI", b"CX", 9, 0, 2) + b"{}", "version"),
        (struct.pack(">2sBBI", b"CX", 1, 4, 2) + b"{}", "flags"),
    ],
)
def test_bad_headers_are_rejected_before_the_body(frame, match):
    """Pickle bytes, a 4 GiB length, unknown versions and flags fail on the 8 header bytes."""
    with pytest.raises(WireError, match=match):
        read_header(frame[:HEADER_SIZE])


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"name": "a", "levelno": 1, "msg": "x", "created": NaN}', "not JSON"),
        (b'{"name": "a", "levelno": 1, "msg": "x", "created": 1e999}', "before the year 10000"),
        (b'{"name": "a", "levelno": ' + b"9" * 5000 + b', "msg": "x", "created": 1}', "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"name": "a", "levelno": "50", "msg": "x", "created": 1}', "levelno"),
        (b'{"name": "a", "levelno": 500, "msg": "x", "created": 1}', "levelno"),
        (b'{"name": "a", "levelno": true, "msg": "x", "created": 1}', "levelno"),
        (b'{"name": "a", "levelno": 1, "msg": "x", "created": "yesterday"}', "created"),
        (b'{"name": "a", "levelno": 1, "msg": ["x"], "created": 1}', "strings"),
        (b'{"name": "a", "levelno": 1, "msg": "%50000000s", "args": ["a"], "created": 1}', "unknown fields"),
        (b'{"name": "a", "levelno": 1, "msg": "x", "created": 1, "extra": {"message": "y"}}', "not allowed"),
        (b'{"name": "a", "levelno": 1, "msg": "x", "created": 1, "extra": {"k": {"nested": 1}}}', "not a string"),
        (b'{"name": "a", "levelno": 1, "msg": "x", "created": 1, "user": 5}', "user must be a string"),
    ],
)
def test_hostile_bodies_are_rejected_with_a_reason(body, match):
    """Bodies that are not JSON, not a record, or try args/amplification/type confusion fail cleanly."""
    frame = frame_of(body)
    with pytest.raises(WireError, match=match):
        decode(frame[:HEADER_SIZE], frame[HEADER_SIZE:], max_body=len(body) + 1)


def test_message_is_never_formatted_with_network_arguments():
    """A decoded record has no args: '%s' in a received message stays as it is."""
    frame = frame_of(json.dumps({"name": "a", "levelno": 20, "msg": "%s %d %(x)s", "created": 1}).encode())
    decoded = decode(frame[:HEADER_SIZE], frame[HEADER_SIZE:])

    assert "%s %d %(x)s" == decoded.getMessage()


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bodies_only_raise_wireerror(body):
    """Any bytes as a body either decode to a record or raise WireError, nothing else."""
    frame = frame_of(body)
    try:
        decoded = decode(frame[:HEADER_SIZE], frame[HEADER_SIZE:])
    except WireError:
        return
    assert isinstance(decoded, logging.LogRecord)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=2000, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "levelno", "msg", "created", "extra", "user", "lineno", "exc_text", "zzz"]), json_values))
def test_fuzz_record_shaped_json_only_raises_wireerror(data):
    """JSON objects with record-like keys and arbitrary values decode or raise WireError only."""
    frame = frame_of(json.dumps(data).encode())
    try:
        decoded = decode(frame[:HEADER_SIZE], frame[HEADER_SIZE:])
    except WireError:
        return
    assert isinstance(decoded.msg, str)
    assert decoded.args is None
    logging.Formatter("%(levelname)s %(name)s %(message)s").format(decoded)  # never raises


def test_body_length_must_match_the_header():
    """A body shorter than announced is rejected."""
    frame = encode(record())
    with pytest.raises(WireError, match="header says"):
        decode(frame[:HEADER_SIZE], frame[HEADER_SIZE:-1])


def test_module_constants_describe_the_documented_frame():
    """The header is 8 bytes and the tag 32, as the module documentation says."""
    assert (8, 32, 1024 * 1024) == (_wire.HEADER_SIZE, _wire.TAG_SIZE, _wire.MAX_BODY)


def test_a_level_name_cannot_disguise_its_number():
    """A DEBUG record sent as "CRITICAL" stays DEBUG; a custom level keeps its own name."""
    for levelno, sent, expected in [
        (10, "CRITICAL", "DEBUG"),
        (5, "CRITICAL", "Level 5"),
        (5, "TRACE", "TRACE"),
        (20, "WHATEVER", "INFO"),
    ]:
        body = json.dumps(
            {"name": "x", "levelno": levelno, "levelname": sent, "msg": "m", "created": 1.0}
        ).encode()
        header = struct.pack(">2sBBI", b"CX", 1, 0, len(body))
        assert expected == _wire.decode(header, body).levelname


def test_a_time_past_the_year_9999_is_refused():
    """A created time no formatter can show is an invalid frame, not a crash at the sink."""
    body = json.dumps({"name": "x", "levelno": 20, "msg": "m", "created": 1e300}).encode()
    header = struct.pack(">2sBBI", b"CX", 1, 0, len(body))
    with pytest.raises(_wire.WireError, match="before the year 10000"):
        _wire.decode(header, body)


def test_a_non_finite_float_extra_travels_as_text():
    """JSON has no NaN or Infinity: such an extra is sent as its text, not lost with the record."""
    record = logging.makeLogRecord(
        {"name": "x", "levelno": 20, "msg": "m", "ratio": float("nan"), "top": float("inf")}
    )
    frame = encode(record)
    decoded = decode(frame[:HEADER_SIZE], frame[HEADER_SIZE:])
    assert ("nan", "inf") == (decoded.ratio, decoded.top)
