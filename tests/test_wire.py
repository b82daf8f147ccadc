"""The wire format: length-prefixed JSON frames that decode to records, never to code."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import pickle
import struct
import time
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxlog
from ctxlog import wire as _wire
from ctxlog.wire import (
    HEADER_SIZE,
    Replay,
    ReplayError,
    Signer,
    WireError,
    decode,
    encode,
    read_header,
)

KEY = b"k" * 32


def split(frame: bytes) -> tuple[bytes, bytes, bytes | None]:
    header = frame[:HEADER_SIZE]
    size, _ = read_header(header)
    if size:
        return header, frame[HEADER_SIZE + size :], frame[HEADER_SIZE : HEADER_SIZE + size]
    return header, frame[HEADER_SIZE:], None


def signed_by_hand(body: dict, *, key: bytes = KEY, sender: bytes = b"s" * 16, sequence: int = 0, signed_ms: int | None = None) -> bytes:
    """A version 2 signed frame built from docs/wire-format.md, not with ctxlog's Signer."""
    data = json.dumps(body).encode()
    if signed_ms is None:
        signed_ms = time.time_ns() // 1_000_000
    head = struct.pack(">2sBBI16sQQ", b"CX", 2, 1, len(data), sender, sequence, signed_ms)
    return head + hmac.new(key, head + data, hashlib.sha256).digest() + data


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
    signed = encode(record(), Signer(KEY))
    header, body, signature = split(signed)
    assert signature is not None

    assert "paid 12 EUR" == decode(header, body, signature, key=KEY).msg
    with pytest.raises(WireError, match="bad signature"):
        decode(header, body.replace(b"12", b"99"), signature, key=KEY)
    with pytest.raises(WireError, match="bad signature"):
        decode(header, body, signature, key=b"other")
    with pytest.raises(WireError, match="bad signature"):  # the sequence number is signed too
        decode(header, body, signature[:16] + b"\x01" * 8 + signature[24:], key=KEY)
    with pytest.raises(WireError, match="unsigned"):
        decode(*split(encode(record())), key=KEY)


def test_a_signed_frame_carries_sender_sequence_and_time_under_the_tag():
    """Version 2: sender id, a sequence counting up from 0 and the signing time, as the docs lay out."""
    signer = Signer(KEY)
    before = time.time_ns() // 1_000_000
    frames = [encode(record(), signer) for _ in range(3)]
    after = time.time_ns() // 1_000_000
    stamps = [struct.unpack(">2sBBI16sQQ", f[:40]) for f in frames]

    assert [(b"CX", 2, 1)] * 3 == [s[:3] for s in stamps]
    assert 1 == len({s[4] for s in stamps})  # one sender
    assert [0, 1, 2] == [s[5] for s in stamps]
    assert all(before <= s[6] <= after for s in stamps)
    for f in frames:
        assert hmac.new(KEY, f[:40] + f[72:], hashlib.sha256).digest() == f[40:72]


def test_the_hand_built_signed_frame_of_the_docs_decodes():
    """A frame built by following the documented layout (no ctxlog code) verifies."""
    frame = signed_by_hand({"name": "billing", "levelno": 20, "msg": "sent", "created": 1.7e9})

    assert "sent" == decode(*split(frame), key=KEY, replay=Replay()).msg
    assert "sent" == decode(*split(frame)).msg  # a receiver without a key reads it, unchecked


def test_a_key_holder_refuses_version_1_signed_frames():
    """A version 1 signed frame has nothing to stop a replay: with a key it is rejected, saying why."""
    body = json.dumps({"name": "a", "levelno": 20, "msg": "m", "created": 1.0}).encode()
    header = struct.pack(">2sBBI", b"CX", 1, 1, len(body))
    tag = hmac.new(KEY, header + body, hashlib.sha256).digest()

    with pytest.raises(WireError, match="version 1 has no sender, sequence or time"):
        decode(header, body, tag, key=KEY)
    assert "m" == decode(header, body, tag).msg  # without a key nothing is checked, as before


def test_the_same_signed_bytes_decode_once():
    """The same signed frame four times: one record, then three 'replayed frame' rejections."""
    replay = Replay()
    frame = encode(record(), Signer(KEY))
    outcomes = []
    for _ in range(4):
        try:
            decode(*split(frame), key=KEY, replay=replay)
            outcomes.append("ok")
        except ReplayError as error:
            outcomes.append(error.reason)

    assert ["ok", "replayed frame", "replayed frame", "replayed frame"] == outcomes


def test_a_frame_signed_outside_the_window_is_stale():
    """Signed 2 windows ago or 2 windows ahead of this clock: 'stale frame'; just inside: accepted."""
    replay = Replay(window=60)
    now = time.time_ns() // 1_000_000
    body = {"name": "a", "levelno": 20, "msg": "m", "created": 1.0}
    for sequence, offset in enumerate([-120_000, 120_000]):
        with pytest.raises(ReplayError, match="outside the replay window of 60 s") as caught:
            decode(*split(signed_by_hand(body, sequence=sequence, signed_ms=now + offset)), key=KEY, replay=replay)
        assert "stale frame" == caught.value.reason
    assert "m" == decode(*split(signed_by_hand(body, sequence=5, signed_ms=now - 50_000)), key=KEY, replay=replay).msg


def test_frames_out_of_order_are_each_accepted_once():
    """Frames of one sender arriving in any order within REORDER: each accepted once; further behind: rejected."""
    replay = Replay()
    signer = Signer(KEY)
    frames = [encode(record(), signer) for _ in range(_wire.REORDER + 10)]
    newest, rest = frames[-1], frames[:-1]
    decode(*split(newest), key=KEY, replay=replay)
    outcomes = []
    for frame in reversed(rest):
        try:
            decode(*split(frame), key=KEY, replay=replay)
            outcomes.append("ok")
        except ReplayError as error:
            outcomes.append(f"{error.reason}: {'behind' if 'behind its sender' in str(error) else error}")
    assert ["ok"] * (_wire.REORDER - 1) + ["replayed frame: behind"] * 10 == outcomes
    with pytest.raises(ReplayError, match="seen before"):
        decode(*split(rest[-5]), key=KEY, replay=replay)


def test_senders_are_forgotten_after_the_window_and_their_frames_stay_refused():
    """Memory is bounded: senders silent for a window are dropped, and their old frames are then stale."""
    replay = Replay(window=0.3)
    old = [encode(record(), Signer(KEY)) for _ in range(50)]
    for frame in old:
        decode(*split(frame), key=KEY, replay=replay)
    assert 50 == len(replay)

    probe = Signer(KEY)

    def forgotten() -> bool:
        decode(*split(encode(record(), probe)), key=KEY, replay=replay)  # one more sender; sweeps
        return len(replay) == 1

    deadline = time.monotonic() + 10
    while not forgotten():
        assert time.monotonic() < deadline, len(replay)
        time.sleep(0.02)
    for frame in old:
        with pytest.raises(ReplayError) as caught:
            decode(*split(frame), key=KEY, replay=replay)
        assert "stale frame" == caught.value.reason


def test_a_forked_process_signs_as_a_new_sender_from_sequence_0():
    """After fork the same Signer gives the child its own sender id: parent and child never share a sequence."""
    signer = Signer(KEY)
    parent = [encode(record(), signer) for _ in range(2)]
    reader, writer = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(writer, encode(record(), signer)[:40])
        finally:
            os._exit(0)
    os.close(writer)
    child_head = os.read(reader, 40)
    os.close(reader)
    os.waitpid(pid, 0)
    after = encode(record(), signer)
    stamps = [struct.unpack(">16sQ", h[8:32]) for h in (parent[0][:40], parent[1][:40], child_head, after[:40])]

    assert stamps[0][0] == stamps[1][0] == stamps[3][0] != stamps[2][0]
    assert [0, 1, 0, 2] == [s[1] for s in stamps]


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
    assert (8, 32, 64, 72, 1024 * 1024) == (_wire.HEADER_SIZE, _wire.TAG_SIZE, _wire.SIGNATURE_SIZE, _wire.MAX_OVERHEAD, _wire.MAX_BODY)


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


@pytest.mark.parametrize(
    "sent",
    [
        "critical", "Critical", "CRITICAL\u200b", "\uff23\uff32\uff29\uff34\uff29\uff23\uff21\uff2c", " ERROR", "ERROR ",
        "ERR0R", "CRlTICAL", "WARN_ING", "warn", "fatal", "Info", "DEBUG\n", "ERROR\x1b[0m", "Level_50", "LEVEL50",
        "", "x" * 40, "9LIVES", "\u0415RROR",
    ],
)  # fmt: skip
def test_a_level_name_that_reads_as_another_is_shown_as_its_number(sent):
    """A custom level's sent name survives only if plain ASCII and not a standard name in disguise."""
    body = json.dumps({"name": "x", "levelno": 25, "levelname": sent, "msg": "m", "created": 1.0}).encode()

    assert "Level 25" == decode(struct.pack(">2sBBI", b"CX", 1, 0, len(body)), body).levelname


@pytest.mark.parametrize("sent", ["NOTICE", "TRACE", "SUCCESS", "Verbose", "AUDIT_2"])
def test_a_plain_custom_level_name_is_kept(sent):
    """An ASCII identifier that is no standard name is the custom level's name."""
    body = json.dumps({"name": "x", "levelno": 25, "levelname": sent, "msg": "m", "created": 1.0}).encode()

    assert sent == decode(struct.pack(">2sBBI", b"CX", 1, 0, len(body)), body).levelname


def test_missing_process_and_thread_show_a_dash_not_the_receivers_own():
    """A frame without process/thread/processName/threadName: '-' for each, never this process's values."""
    frame = frame_of(json.dumps({"name": "x", "levelno": 20, "msg": "m", "created": 1.0}).encode())
    decoded = decode(frame[:HEADER_SIZE], frame[HEADER_SIZE:])
    line = logging.Formatter("%(process)s %(thread)s %(processName)s %(threadName)s").format(decoded)

    assert "- - - -" == line
    sent = decode(*split(encode(record(process=7, thread=8, processName="w1", threadName="t1"))))
    assert (7, 8, "w1", "t1") == (sent.process, sent.thread, sent.processName, sent.threadName)


def test_peer_is_reserved_a_frame_cannot_carry_it():
    """'peer' is the receiver's own field: a frame with a 'peer' extra is invalid, and encode never sends one."""
    body = b'{"name": "a", "levelno": 20, "msg": "x", "created": 1, "extra": {"peer": "10.9.9.9:1"}}'
    frame = frame_of(body)
    with pytest.raises(WireError, match="'peer' is not allowed"):
        decode(frame[:HEADER_SIZE], frame[HEADER_SIZE:])
    relayed = record(peer="10.0.0.1:5000", order=3)  # a record a receiver got, sent on again
    decoded = decode(*split(encode(relayed)))
    assert (3, False) == (decoded.order, hasattr(decoded, "peer"))


def test_a_lone_surrogate_anywhere_travels_and_arrives_as_it_was():
    """A lone surrogate in the message, a field, an extra or a traceback: encoded (as JSON escapes), decoded unchanged."""
    original = record(user="a\ud800b", path="/x\udcff", note="\udfff", exc_text="Trace\ud83d")
    original.msg = "bad %s \ud800"
    original.args = ("\udc80",)
    frame = encode(original, Signer(KEY))
    decoded = decode(*split(frame), key=KEY)

    assert frame.isascii() or b"\\ud800" in frame
    assert ("bad \udc80 \ud800", "a\ud800b", "/x\udcff", "\udfff", "Trace\ud83d") == (decoded.msg, decoded.user, decoded.path, decoded.note, decoded.exc_text)
    plain = decode(*split(encode(record(user="é"))))
    assert "é" == plain.user  # text without a surrogate still goes as UTF-8, not escapes
    assert "é".encode() in encode(record(user="é"))
