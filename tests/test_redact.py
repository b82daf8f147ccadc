"""ctxlog.RedactFilter: secrets masked in extras, bound fields, messages, tracebacks; never raises."""

from __future__ import annotations

import copy
import io
import json
import logging
import logging.config
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxlog
import ctxlog.testing
from ctxlog.context import RESERVED
from ctxlog.handlers import JSONSocketHandler
from ctxlog.record.sensitive import DEFAULT_KEYS, MAX_DEPTH, KeyRule
from ctxlog.wire import encode_body

SECRET = "hunter2-Zq9"


class Keep(logging.Handler):
    """Keep every record and its formatted line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def kept() -> Iterator[tuple[logging.Logger, Keep, ctxlog.RedactFilter]]:
    """A logger whose one handler carries a default RedactFilter."""
    handler = Keep()
    redact = ctxlog.RedactFilter()
    handler.addFilter(redact)
    logger = logging.getLogger("test.redact")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, handler, redact
    logger.handlers[:] = []


def wait_for(predicate, timeout=15.0):
    """Poll ``predicate`` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.mark.parametrize("key", DEFAULT_KEYS)
def test_each_default_key_is_masked_in_extra(kept, key):
    """The value of every key of the default list, as an extra, becomes the mask."""
    logger, handler, _ = kept
    name = key.replace("-", "_")  # extra= names are attribute names
    logger.info("login", extra={name: SECRET})
    assert "***" == getattr(handler.records[0], name)


@pytest.mark.parametrize(
    "key",
    ["DB_PASSWORD", "db_password", "X-Api-Key", "accessToken", "clientSecret", "user[password]",
     "user%5Bpassword%5D", "Set-Cookie", "stripe.api_key", "session_id", "refreshToken"],
)  # fmt: skip
def test_keys_match_word_by_word_in_any_case(key):
    """A key holding a sensitive key among its words, in any case or separator, is sensitive."""
    assert KeyRule(DEFAULT_KEYS)(key)


@pytest.mark.parametrize(
    "key",
    ["tokens_used", "dbpassword", "cache_key", "path", "user", "request_id", "passport", "sid",
     "connect"],
)  # fmt: skip
def test_other_keys_are_not_sensitive(key):
    """Words that merely contain a sensitive key, or other keys, are left alone."""
    assert not KeyRule(DEFAULT_KEYS)(key)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("auth Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.c2ln",
         "auth Authorization: Bearer ***"),
        ("header authorization: bearer 0123456789abcdef", "header authorization: bearer ***"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic ***"),
        # token68 allows "=" at its end: the credential still runs to the space (found by
        # Hypothesis, where the "=" once ended the match and left the value after it).
        ("got Bearer access_token=00000000 back", "got Bearer *** back"),
        ("GET /cb?code=42&access_token=abc.DEF-123&state=s HTTP/1.1",
         "GET /cb?code=42&access_token=***&state=s HTTP/1.1"),
        ("POST body username=bob&password=p%40ss%26w0rd&remember=1",
         "POST body username=bob&password=***&remember=1"),
        ("form user%5Bpassword%5D=x1&csrfmiddlewaretoken=Zx9 sent",
         "form user%5Bpassword%5D=***&csrfmiddlewaretoken=*** sent"),
        ('api_key=sk_live_1 token=t0k secret="a b c" user=bob',
         'api_key=*** token=*** secret="***" user=bob'),
        ('json {"username": "bob", "password": "p\\"w", "pin": 1, "api_key": 12345}',
         'json {"username": "bob", "password": "***", "pin": 1, "api_key": "***"}'),
        ("repr {'user': 'bob', 'client_secret': 'abc'}", "repr {'user': 'bob', 'client_secret': '***'}"),
        ("connect postgresql://app:s3cret@db.internal:5432/shop",
         "connect postgresql://app:***@db.internal:5432/shop"),
        ('level=info msg="login password=pw1 ok" redirect=/cb?token=t0k&x=1',
         'level=info msg="login password=*** ok" redirect=/cb?token=***&x=1'),
        ("{'note': '', 'token': 'abc'} token=YWJj==", "{'note': '', 'token': '***'} token=***=="),
        # A key right after the "]" that ended a value (found by Hypothesis: masked only once
        # the value before it was, so masking twice changed the text).
        ("password=0]password=1", "password=***]password=***"),
        ("password={}0 token=[1]", "password=***}0 token=***"),
        ('password=ab\\"x', 'password=***\\"x'),
        ("cookies sessionid=abc123; csrftoken=def; theme=dark",
         "cookies sessionid=***; csrftoken=***; theme=dark"),
        # The cookie names of PHP, Java servlets and Express.
        ("PHPSESSID=abc123; JSESSIONID=def456; connect.sid=s%3Aghi789; lang=en",
         "PHPSESSID=***; JSESSIONID=***; connect.sid=***; lang=en"),
        # Header lines: the value to the end of the line, the scheme kept.
        ("headers:\nAuthorization: Token s3cr3tTok\nX-Api-Key: k3yk3y\nAccept: */*",
         "headers:\nAuthorization: Token ***\nX-Api-Key: ***\nAccept: */*"),
        ("Authorization: token ghp_abcdefABCDEF0123456789", "Authorization: token ***"),
        ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer ***"),
        ('Proxy-Authorization: Digest username="bob", response="6629fae4"',
         "Proxy-Authorization: Digest ***"),
        ("Cookie: sessionid=abc123; theme=dark", "Cookie: ***"),
        ("password: hunter2", "password: ***"),
        # Found by Hypothesis: "Bearer" before a header or a pair took its key for the
        # credential, and left the value.
        ("Bearer access_token: 00000000", "Bearer *** ***"),
        ("Bearer access_token=b'00000000'", "Bearer ***'***'"),
        # ... and a stray quote before a ('key', 'value') repr took its bracket for a value.
        ("password=b' [('access_token', '00000000')]", "password=b'***'access_token', '***')]"),
        ("send: b'GET / HTTP/1.1\\r\\nAuthorization: Basic dXNlcjpwYXNz\\r\\nHost: x'",
         "send: b'GET / HTTP/1.1\\r\\nAuthorization: Basic ***\\r\\nHost: x'"),
        # A quoted key's value that is a list, a tuple, a dict (one level inside) or bytes.
        ("<QueryDict: {'username': ['bob'], 'password': ['hunter2']}>",
         "<QueryDict: {'username': ['bob'], 'password': '***'}>"),
        ('{"token": ["abc123", "def"], "n": 1}', '{"token": "***", "n": 1}'),
        ('{"credentials": {"user": "a", "pass": "hunter2", "ids": [1]}}', '{"credentials": "***"}'),
        ("{'password': b'hunter2', 'secret': (1, 'x')}", "{'password': b'***', 'secret': '***'}"),
        ("Config(password=b'hunter2', token=['abc'], user='bob')",
         "Config(password=b'***', token=***, user='bob')"),
        # URLs: a token as the user, a password holding "@" (URL parsers take the last one).
        ("clone https://ghp_abcDEF123456@github.com/x/y", "clone https://***@github.com/x/y"),
        ("https://ghp_abcDEF1234567890:x-oauth-basic@github.com",
         "https://***:***@github.com"),
        ("postgresql://app:p@ssw0rd@db/shop", "postgresql://app:***@db/shop"),
        ("redis://:pw@cache:6379/0?next=a@b", "redis://:***@cache:6379/0?next=a@b"),
    ],
)  # fmt: skip
def test_default_patterns_mask_the_secret_and_keep_the_rest(kept, message, expected):
    """Each default pattern masks the credential only; the text around it stays."""
    logger, handler, _ = kept
    logger.info("%s", message)
    assert [expected] == handler.lines


@pytest.mark.parametrize(
    "message",
    ["basic authentication failed", "the Bearer of bad news", "paid amount=42 currency=EUR",
     "tokens_used=1200", "https://example.com/path", "ratio 3:4 at 12:00", "time: 12:00",
     "user: bob", "Content-Type: text/plain\nHost: db:5432", "retry: token bucket empty",
     "ssh://git@github.com/x", "https://bob@example.com/", "https://first.last2024name@x.org/",
     "{'tokens': [1, 2], 'sid': 'x'}", "connect_timeout=5 sid=7"],
)  # fmt: skip
def test_text_without_secrets_is_left_as_logged(kept, message):
    """A message the patterns find nothing in keeps its msg and args."""
    logger, handler, redact = kept
    args = (message,)
    logger.info("%s", *args)
    record = handler.records[0]
    assert ("%s", args) == (record.msg, record.args)
    assert 0 == redact.stats()["values_masked"]


def test_nested_values_are_masked_in_a_copy_and_the_caller_keeps_its_own(kept):
    """Dicts, lists and tuples are copied where something changes; the caller's objects never."""
    logger, handler, _ = kept
    payload = {"user": "bob", "creds": {"password": SECRET, "ids": [1, {"token": SECRET}]},
               "pair": ("x", {"api_key": SECRET}), "plain": {"a": 1}}  # fmt: skip
    before = copy.deepcopy(payload)
    logger.info("payload", extra={"payload": payload})
    assert before == payload
    got = handler.records[0].payload
    assert {"user": "bob", "creds": {"password": "***", "ids": [1, {"token": "***"}]},
            "pair": ("x", {"api_key": "***"}), "plain": {"a": 1}} == got  # fmt: skip
    assert got["plain"] is payload["plain"]  # nothing changed in it: not copied


def test_a_structure_deeper_than_the_limit_is_masked_whole(kept):
    """A dict that holds itself, or anything nested past MAX_DEPTH, ends in the mask."""
    logger, handler, _ = kept
    loop: dict[str, object] = {"name": "x"}
    loop["self"] = loop
    logger.info("loop", extra={"loop": loop})
    value = handler.records[0].loop
    for _ in range(MAX_DEPTH - 1):
        value = value["self"]
    assert "***" == value["self"]
    assert loop["self"] is loop


def test_bound_fields_are_masked_wherever_the_filter_sits():
    """A bound sensitive field is masked even by a filter on a logger, with no ContextFilter."""
    handler = Keep()
    logger = logging.getLogger("test.redact.bound")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.addFilter(ctxlog.RedactFilter())
    try:
        ctxlog.bind(api_token=SECRET, tenant="acme")
        logger.info("hello")
    finally:
        logger.handlers[:] = []
        logger.filters[:] = []
    record = handler.records[0]
    assert ("***", "acme") == (record.api_token, record.tenant)
    assert SECRET == ctxlog.get_context()["api_token"]  # the context itself is unchanged


def test_message_arguments_are_masked_before_they_are_merged(kept):
    """A dict argument's sensitive keys are masked, then the merged message; the caller's dict is kept."""
    logger, handler, _ = kept
    form = {"username": "bob", "password": SECRET}
    logger.info("%(username)s logs in with %(password)s", form)
    logger.info("form %s and %s", {"password": SECRET}, ["token=abc"])
    assert ["bob logs in with ***", "form {'password': '***'} and ['token=***']"] == handler.lines
    assert SECRET == form["password"]
    assert handler.records[0].args is None


def test_the_traceback_and_stack_are_masked(kept):
    """An exception message and a stack are masked in the text every formatter uses."""
    logger, handler, _ = kept
    try:
        raise ValueError(f"could not connect to redis://:{SECRET}@cache:6379 password={SECRET}")
    except ValueError:
        logger.exception("failed", stack_info=True)
    record = handler.records[0]
    assert SECRET not in handler.lines[0]
    assert "redis://:***@cache:6379 password=***" in record.exc_text
    # The object would render the secret again for a handler that reads it (python-json-logger,
    # structlog, OpenTelemetry): only the masked text is left.
    assert record.exc_info is None
    assert SECRET not in logging.Formatter().format(record)


def test_a_traceback_without_a_secret_keeps_its_exception(kept):
    """Nothing masked in the traceback: exc_info stays for the handlers that want the object."""
    logger, handler, _ = kept
    try:
        raise ValueError("cache unreachable")
    except ValueError:
        logger.exception("failed with password=%s", SECRET)
    record = handler.records[0]
    assert isinstance(record.exc_info[1], ValueError)
    assert "failed with password=***" == record.msg


def test_non_string_values_and_odd_inputs(kept):
    """Numbers and objects under sensitive keys become the mask; None and '-' stay; others untouched."""
    logger, handler, _ = kept

    class Opaque:
        def __str__(self) -> str:
            raise RuntimeError("no")

    opaque = Opaque()
    logger.info(
        "odd", extra={"pin_password": 1234, "token": None, "session": "-", "obj": opaque, "n": 3}
    )
    record = handler.records[0]
    assert ("***", None, "-", opaque, 3) == (
        record.pin_password, record.token, record.session, record.obj, record.n
    )  # fmt: skip


def test_a_huge_message_is_masked_whole(kept):
    """A message of megabytes is scanned to its end."""
    logger, handler, _ = kept
    logger.info("%s password=%s", "x " * 1_000_000, SECRET)
    assert handler.lines[0].endswith(" password=***")
    assert SECRET not in handler.lines[0]


def test_arguments_that_fail_to_format_are_not_shown_and_the_record_is_logged(kept, capsys):
    """Arguments the message cannot take: the record is logged without them, reported once on stderr."""
    logger, handler, redact = kept
    logger.info("password %s %s", SECRET)  # noqa: PLE1206 - the point of the test
    logger.info("again %d", SECRET)
    assert ["password %s %s (arguments not shown: TypeError)",
            "again %d (arguments not shown: TypeError)"] == handler.lines  # fmt: skip
    err = capsys.readouterr().err
    assert 1 == err.count("ctxlog: RedactFilter")
    assert "reported once" in err
    assert 2 == redact.stats()["errors"]


def test_a_value_that_fails_while_masked_is_masked_whole(kept, capsys):
    """A dict whose items() raises: the value becomes the mask, the record is still logged."""
    logger, handler, redact = kept

    class Broken(dict):
        def items(self):
            raise RuntimeError("broken mapping")

    logger.info("still logged", extra={"data": Broken(a=1)})
    assert ["still logged"] == handler.lines
    assert "***" == handler.records[0].data
    assert "broken mapping" in capsys.readouterr().err
    assert 1 == redact.stats()["errors"]


def test_a_message_whose_str_raises_is_replaced(kept, capsys):
    """A msg object that cannot become text: the record says so instead of failing."""
    logger, handler, _ = kept

    class Bad:
        def __str__(self) -> str:
            raise ValueError("nope")

    logger.info(Bad())
    assert ["(message not shown: redacting it raised ValueError)"] == handler.lines
    assert "nope" in capsys.readouterr().err


def test_options_mask_keys_extra_keys_patterns():
    """mask=, keys= (replacing), extra_keys= (adding), patterns= (groups or whole match)."""
    redact = ctxlog.RedactFilter(
        keys=["pin"], extra_keys=["ssn"], mask="[hidden]",
        patterns=[r"card (\d{12})\d{4}", re.compile(r"sk_live_\w+")],
    )  # fmt: skip
    record = logging.makeLogRecord(
        {
            "msg": "card 4111111111111111 key sk_live_abc password=x",
            "pin": 1,
            "ssn": "0",
            "token": "t",
        }
    )
    redact.filter(record)
    assert "card [hidden]1111 key [hidden] password=x" == record.getMessage()
    assert ("[hidden]", "[hidden]", "t") == (record.pin, record.ssn, record.token)
    plain = ctxlog.RedactFilter(default_patterns=False)
    record = logging.makeLogRecord({"msg": "password=x", "password": "y"})
    plain.filter(record)
    assert ("password=x", "***") == (record.getMessage(), record.password)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": ""}, "mask=''"),
        ({"mask": "a\nb"}, "without control characters"),
        ({"patterns": ["("]}, "patterns[0] '(' does not compile"),
        ({"patterns": [b"x"]}, "patterns[0] is b'x'"),
        ({"keys": "password"}, "keys='password' is one string"),
        ({"extra_keys": ["", "x"]}, "extra_keys holds ''"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs, message):
    """Each bad option raises ValueError naming the value."""
    with pytest.raises(ValueError, match=re.escape(message)):
        ctxlog.RedactFilter(**kwargs)


def test_counts(kept):
    """records_redacted counts records with a secret, values_masked each secret."""
    logger, _, redact = kept
    logger.info("nothing here")
    logger.info("token=a password=b", extra={"api_key": "c"})
    logger.info("Bearer abcdefgh1")
    assert {"records_redacted": 2, "values_masked": 4, "errors": 0} == redact.stats()
    assert (2, 4) == (redact.records_redacted, redact.values_masked)


def test_a_record_is_redacted_once_by_each_filter(kept):
    """The same filter on the logger and the handler masks once; another filter still applies its own keys."""
    logger, handler, redact = kept
    other = ctxlog.RedactFilter(extra_keys=["ssn"])
    logger.addFilter(redact)
    handler.addFilter(other)
    try:
        logger.info("password=%s", SECRET, extra={"ssn": "123"})
    finally:
        logger.removeFilter(redact)
    record = handler.records[0]
    assert ("password=***", "***") == (handler.lines[0], record.ssn)
    assert 1 == redact.stats()["values_masked"]
    assert 1 == other.stats()["values_masked"]  # ssn only: the message was masked already
    assert all(name in RESERVED for name in ("_ctxlog_redacted", "_ctxlog_stamped"))


def test_dictconfig_with_a_factory():
    """dictConfig builds the filter with "()" and its options."""
    stream = io.StringIO()
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "ctxlog.RedactFilter", "extra_keys": ["ssn"], "mask": "<x>"}},
        "handlers": {"out": {"class": "logging.StreamHandler", "stream": stream,
                             "filters": ["redact"], "formatter": "plain"}},
        "formatters": {"plain": {"format": "%(message)s %(ssn)s"}},
        "loggers": {"test.redact.dict": {"handlers": ["out"], "level": "INFO", "propagate": False}},
    })  # fmt: skip
    try:
        logging.getLogger("test.redact.dict").info("token=%s", SECRET, extra={"ssn": "1"})
    finally:
        logging.getLogger("test.redact.dict").handlers[:] = []
    assert "token=<x> <x>\n" == stream.getvalue()


def test_the_wire_body_holds_no_secret():
    """A redacted record encoded for the wire carries the masks only, in its traceback too."""
    try:
        raise ConnectionError(f"redis://:{SECRET}@cache:6379 refused")
    except ConnectionError as error:
        exc_info = (type(error), error, error.__traceback__)
    record = logging.makeLogRecord(
        {"name": "x", "levelno": 20, "msg": "login %s", "args": ({"password": SECRET},), "api_key": SECRET,
         "nested": {"token": SECRET}, "exc_info": exc_info}
    )  # fmt: skip
    ctxlog.RedactFilter().filter(record)
    body = encode_body(record)
    assert SECRET.encode() not in body
    assert {"api_key": "***", "nested": "{'token': '***'}"} == {  # a dict goes as its str()
        k: v for k, v in json.loads(body)["extra"].items() if k in {"api_key", "nested"}
    }


def test_records_queued_and_sent_to_a_real_receiver_hold_no_secret(tmp_path: Path):
    """In front of nonblocking(): the record that crosses the queue and the socket is the masked one."""
    log_file = tmp_path / "all.log"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "ctxlog", "receive", "--listen", "127.0.0.1:0", "--file",
         str(log_file), "--format", "%(message)s|%(api_key)s|%(session)s"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    logger = logging.getLogger("test.redact.queued")
    closing: list[logging.Handler] = []
    try:
        line = receiver.stderr.readline()
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", line).group(1))
        sender = JSONSocketHandler("127.0.0.1", port)
        queue = ctxlog.nonblocking([sender])
        closing += [queue, sender]
        redact = ctxlog.RedactFilter()
        queue.addFilter(redact)
        logger.handlers[:] = [queue]
        logger.propagate = False
        logger.setLevel(logging.INFO)
        with ctxlog.scope(session=SECRET):
            logger.info("GET /?token=%s", SECRET, extra={"api_key": SECRET})
        queue.flush()
        assert wait_for(lambda: log_file.exists() and log_file.read_text(encoding="utf-8"))
    finally:
        logger.handlers[:] = []
        for handler in closing:
            handler.close()
        receiver.send_signal(signal.SIGTERM)
        receiver.communicate(timeout=20)
    assert "GET /?token=***|***|***\n" == log_file.read_text(encoding="utf-8")
    assert 3 == redact.stats()["values_masked"]


def test_a_mark_that_is_not_ctxlogs_does_not_stop_redaction():
    """A record carrying some other value under the mark's name is still redacted."""
    record = logging.makeLogRecord({"msg": "token=abc", "_ctxlog_redacted": "yes"})
    ctxlog.RedactFilter().filter(record)
    assert "token=***" == record.getMessage()


def test_a_message_cached_by_an_earlier_formatter_is_replaced():
    """record.message, set by a formatter that ran before the filter, holds the masked text."""
    record = logging.makeLogRecord({"msg": "password=%s", "args": (SECRET,)})
    logging.Formatter().format(record)
    ctxlog.RedactFilter().filter(record)
    assert "password=***" == record.message


FRAGMENTS = ["password=", "Bearer ", "basic ", '"token": "', "'api_key': '", "://u:", "@", "&",
             "=", '"', "'", "\\", ":", " ", "\n", "%5B", "]", "tokenX", "aB3dE5gH9",
             "Authorization: ", "Cookie: ", "password: ", "Token ", "\r", "\\r\\n", "b'", "[",
             "{", "}", "(", ")", ", ", "ghp_aB3dE5gH9jK1mN2p", ":5432", "PHPSESSID="]  # fmt: skip
hostile = st.lists(st.one_of(st.characters(), st.sampled_from(FRAGMENTS))).map("".join)


@settings(deadline=None, max_examples=300)
@given(hostile, hostile)
def test_any_text_is_masked_without_raising_and_masking_again_changes_nothing(msg, value):
    """Whatever a message or a value holds, the filter lets the record through; its output is stable."""
    redact = ctxlog.RedactFilter()
    record = logging.makeLogRecord({"msg": msg, "note": value})
    assert redact.filter(record)
    assert 0 == redact.stats()["errors"]
    again = ctxlog.RedactFilter()
    masked = (record.getMessage(), record.note)
    again.filter(logging.makeLogRecord({"msg": masked[0], "note": masked[1]}))
    assert 0 == again.stats()["values_masked"]


@settings(deadline=None, max_examples=300)
@given(
    st.sampled_from(DEFAULT_KEYS),
    st.sampled_from(
        [
            "{k}={s}",
            '"{k}": "{s}"',
            "{{'{k}': '{s}'}}",
            "{k}={s}&next=1",
            "?{k}={s}",
            "{k}: {s}",
            "{{'{k}': b'{s}'}}",
            '{{"{k}": ["{s}", 1]}}',
            '{{"{k}": {{"a": "{s}"}}}}',
            "[('{k}', '{s}')]",
        ]
    ),
    st.from_regex(r"[A-Za-z0-9_.~+/-]{8,40}", fullmatch=True),
    hostile,
)
def test_a_sensitive_pair_never_shows_its_value(key, shape, secret, around):
    """A sensitive key's value in a pair, a JSON object or a dict repr, anywhere in a message, is masked."""
    text = shape.format(k=key, s=secret)
    record = logging.makeLogRecord({"msg": "%s " + text + " %s", "args": (around, around)})
    ctxlog.RedactFilter().filter(record)
    message = record.getMessage()
    assert secret not in message or secret in around


def test_dictconfig_puts_it_in_front_of_nonblocking():
    """ "filters" on a nonblocking() handler made by dictConfig: the record is masked before the queue."""
    stream = io.StringIO()
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "ctxlog.RedactFilter"}},
        "formatters": {"plain": {"format": "%(message)s %(api_key)s"}},
        "handlers": {
            "out": {"class": "logging.StreamHandler", "stream": stream, "formatter": "plain"},
            "queue": {"()": "ctxlog.nonblocking", "handlers": ["out"], "filters": ["redact"]},
        },
        "loggers": {"test.redact.q": {"handlers": ["queue"], "level": "INFO", "propagate": False}},
    })  # fmt: skip
    logger = logging.getLogger("test.redact.q")
    queue = logger.handlers[0]
    try:
        logger.info("Authorization: Bearer %s", "eyJ0eXAi.eyJzdWIi.c2ln", extra={"api_key": SECRET})
        assert ctxlog.flush(timeout=10)
    finally:
        logger.handlers[:] = []
        queue.close()
    assert "Authorization: Bearer *** ***\n" == stream.getvalue()


def test_json_formatter_keeps_a_masked_exception_message_masked():
    """JSONFormatter's error message comes from the masked traceback, not from the exception."""
    import io
    import json

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ctxlog.RedactFilter())
    handler.setFormatter(ctxlog.JSONFormatter(schema="ecs"))
    log = logging.getLogger("test_redact.json_error")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise ValueError("login failed for password=hunter2")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    line = stream.getvalue()
    assert "hunter2" not in line
    error = json.loads(line)["error"]
    assert error["message"] == "login failed for password=***"
    assert error["type"] == "ValueError"


# -- Values of any type -------------------------------------------------------------------------


def _django_settings() -> None:
    """Django's settings, configured once for the process (tests/test_django.py may have)."""
    from django.conf import settings

    if not settings.configured:
        settings.configure(ALLOWED_HOSTS=["testserver"], SECRET_KEY="test", USE_TZ=True)


def test_a_django_request_extra_is_masked_through_its_str():
    """django.request's `request` extra (a WSGIRequest) is written as its str(): masked there."""
    _django_settings()
    from django.http import HttpResponseServerError, QueryDict
    from django.test import RequestFactory
    from django.utils.log import log_response

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ctxlog.RedactFilter())
    handler.setFormatter(ctxlog.JSONFormatter())
    logger = logging.getLogger("test.redact.django.request")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    request = RequestFactory().get("/cb?access_token=DJSECRET&x=1")
    try:
        log_response("Internal Server Error: %s", request.path,
                     response=HttpResponseServerError(), request=request, logger=logger)  # fmt: skip
        logger.info(f"form {QueryDict('username=bob&password=QDSECRET')}")  # noqa: G004 - the point
    finally:
        logger.handlers[:] = []
    error, form = map(json.loads, stream.getvalue().splitlines())
    assert "<WSGIRequest: GET '/cb?access_token=***&x=1'>" == error["request"]
    assert "form <QueryDict: {'username': ['bob'], 'password': '***'}>" == form["message"]
    assert "DJSECRET" == request.GET["access_token"]  # the request itself is unchanged


def test_mappings_are_read_like_dicts_and_copied_only_if_masked(kept):
    """requests' CaseInsensitiveDict, UserDict, MappingProxyType: masked by key in a dict copy."""
    from collections import UserDict
    from types import MappingProxyType

    from requests.structures import CaseInsensitiveDict

    logger, handler, redact = kept
    headers = CaseInsensitiveDict({"Authorization": "Token s3cr3t", "Accept": "*/*"})
    plain = MappingProxyType({"a": 1})
    logger.info("call failed", extra={
        "headers": headers, "form": UserDict(password=SECRET, user="bob"), "plain": plain,
        "proxy": MappingProxyType({"note": f"token={SECRET}"}),
    })  # fmt: skip
    record = handler.records[0]
    assert {"Authorization": "***", "Accept": "*/*"} == record.headers
    assert "Token s3cr3t" == headers["authorization"]  # the caller's own is unchanged
    assert ({"password": "***", "user": "bob"}, {"note": "token=***"}) == (
        record.form,
        record.proxy,
    )
    assert record.plain is plain
    assert 3 == redact.stats()["values_masked"]


def test_sets_bytes_and_bytes_keys(kept):
    """Sets are read like lists; bytes as the text they decode to; a bytes key as a str key."""
    logger, handler, _ = kept
    body = b"user=bob&password=hunter2"
    untouched = b"user=bob"
    logger.info("x", extra={
        "body": body, "raw": bytearray(b"api_key=k\xffey"), "untouched": untouched,
        "tags": {"a", f"token={SECRET}"}, "frozen": frozenset({"b"}),
        "asgi": {b"authorization": b"Token x", b"accept": b"*/*"},
        "scope_headers": [(b"authorization", b"Token x"), (b"host", b"example.com")],
    })  # fmt: skip
    record = handler.records[0]
    assert ("user=bob&password=***", "api_key=***") == (record.body, record.raw)
    assert record.untouched is untouched
    assert ({"a", "token=***"}, frozenset({"b"})) == (record.tags, record.frozen)
    assert {b"authorization": "***", b"accept": b"*/*"} == record.asgi
    assert [(b"authorization", "***"), (b"host", b"example.com")] == record.scope_headers


def test_key_value_pairs_in_lists_are_masked_by_their_key(kept):
    """A (name, value) pair inside a list or tuple: headers, form items; other lists stay."""
    logger, handler, _ = kept
    fields = ["password", "email"]
    logger.info(
        "headers %s", [("Authorization", "Token x"), ["Accept", "*/*"]],
        extra={"headers": (["X-Api-Key", "k3y"], ("Cookie", None)), "fields": fields},
    )  # fmt: skip
    record = handler.records[0]
    assert "headers [('Authorization', '***'), ['Accept', '*/*']]" == handler.lines[0]
    assert (["X-Api-Key", "***"], ("Cookie", None)) == record.headers
    assert record.fields is fields  # a list of two names is not a pair: only one inside a list


def test_other_objects_are_masked_through_their_str(kept):
    """An object is replaced by its masked str() if that holds a secret; else it stays as it is."""
    import argparse
    import enum
    import uuid

    class Color(enum.Enum):
        RED = 1

    class Connection:
        def __repr__(self) -> str:
            return f"Connection('postgresql://app:{SECRET}@db/shop')"

        def __str__(self) -> str:
            return "Connection(db)"

    logger, handler, _ = kept
    plain, color, ident = argparse.Namespace(user="bob"), Color.RED, uuid.uuid4()
    logger.info("x", extra={
        "cfg": argparse.Namespace(password=SECRET), "plain": plain, "color": color, "id": ident,
        "error": ValueError(f"bad url https://u:{SECRET}@h/"), "pool": [Connection()],
    })  # fmt: skip
    record = handler.records[0]
    assert "Namespace(password='***')" == record.cfg
    assert "bad url https://u:***@h/" == record.error
    # Inside a list, a dict or a tuple, formatters write the repr(): it is looked at too.
    assert ["Connection('postgresql://app:***@db/shop')"] == record.pool
    assert (plain, color, ident) == (record.plain, record.color, record.id)
    assert record.plain is plain


def test_the_request_path_and_user_are_read_the_ids_are_not():
    """A secret in the path (matrix parameters) or the user is masked; ip, method, ids are not read."""
    from werkzeug.test import Client

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ctxlog.RedactFilter())
    handler.setFormatter(logging.Formatter("%(path)s|%(user)s|%(request_id)s|%(message)s"))
    logger = logging.getLogger("test.redact.path")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def app(environ, start_response):
        ctxlog.bind(user="api_key=USERSECRET")
        logger.info("handled")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    try:
        Client(ctxlog.WSGIMiddleware(app)).get(
            "/cb;token=PATHSECRET;password=PW", headers={"X-Request-Id": "token-abc"}
        ).close()
        with ctxlog.testing.request(request_id="token=abc", method="password=x"):
            logger.info("fake")
    finally:
        logger.handlers[:] = []
    assert ["/cb;token=***;password=***|api_key=***|token-abc|handled",
            "/|-|token=abc|fake"] == stream.getvalue().splitlines()  # fmt: skip


def test_patterns_given_as_one_string_are_refused():
    """patterns="internal" would make each character a pattern: refused, as keys= is."""
    for patterns in ["internal", re.compile("internal")]:
        with pytest.raises(ValueError, match="is one pattern; give a list of patterns"):
            ctxlog.RedactFilter(patterns=patterns)


def test_werkzeug_headers_as_an_argument_and_an_extra(kept):
    """werkzeug's Headers (its str() is 'Name: value' lines) are masked in a message and an extra."""
    from werkzeug.datastructures import Headers

    logger, handler, _ = kept
    headers = Headers({"Authorization": "Token s3cr3tTok", "Cookie": "a=b", "Accept": "*/*"})
    logger.warning("call failed headers=%s", headers, extra={"headers": headers})
    record = handler.records[0]
    assert "s3cr3tTok" not in handler.lines[0]
    assert "Authorization: Token ***\r\nCookie: ***\r\nAccept: */*" in handler.lines[0]
    assert record.headers.startswith("Authorization: Token ***\r\nCookie: ***\r\n")


def test_redact_fields_masks_a_mapping_in_place_and_counts():
    """redact_fields: by key and pattern, request ids left, one record counted, never raises."""
    redact = ctxlog.RedactFilter()
    fields = {"event": f"login password={SECRET}", "api_key": SECRET, "request_id": "token=x",
              "path": "/cb;token=x", "n": 1, "form": {"password": SECRET}}  # fmt: skip
    assert 4 == redact.redact_fields(fields)
    assert {"event": "login password=***", "api_key": "***", "request_id": "token=x",
            "path": "/cb;token=***", "n": 1, "form": {"password": "***"}} == fields  # fmt: skip
    only = {"message": "token=abc", "other": "token=abc"}
    assert 1 == redact.redact_fields(only, ["message", "missing"])
    assert {"message": "token=***", "other": "token=abc"} == only
    assert {"records_redacted": 2, "values_masked": 5, "errors": 0} == redact.stats()

    class Broken(dict):
        def __iter__(self):
            raise RuntimeError("broken keys")

    assert 0 == redact.redact_fields(Broken(a=1))
    assert 1 == redact.stats()["errors"]
