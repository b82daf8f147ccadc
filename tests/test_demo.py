"""
``ctxlog demo``: the shop, the slow SMTP server and the receiver, end to end.

The demo runs once as ``python -m ctxlog demo`` in a fresh interpreter (as a new user runs it);
most tests read that report. Timings are printed by the demo, and only checked to be numbers
here: the machines are shared and noisy.
"""

from __future__ import annotations

import io
import logging
import re
import signal
import subprocess
import sys
import tempfile
import threading

import pytest

from ctxlog import demo as _demo
from ctxlog.demo import Delivery
from ctxlog.demo.smtp import SlowSMTPServer

SECTIONS = ("ctxlog demo: a shop on http://127.0.0.1:", "\n1. ", "\n2. Latency", "\n3. Delivered")


@pytest.fixture(scope="module")
def report() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ctxlog", "demo"], capture_output=True, text=True, timeout=120, check=False
    )
    assert (0, "") == (result.returncode, result.stderr), result.stdout
    return result.stdout


def story(report: str) -> list[str]:
    """The log lines of part 1."""
    part = report.split("\n1. ", 1)[1].split("\n2. ", 1)[0]
    return [line for line in part.splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)]


def test_demo_exits_0_with_every_section_and_nothing_lost(report):
    """The report has its three parts and ends with the computed 'nothing lost' line."""
    positions = [report.find(section) for section in SECTIONS]

    assert -1 not in positions
    assert sorted(positions) == positions
    assert report.rstrip("\n").splitlines()[-1].startswith("nothing lost: ")


def test_demo_prints_each_users_lines_with_their_fields(report):
    """Every line of alice, bob and carol carries the address the proxy saw them come from."""
    lines = story(report)

    for user, (_, ip) in _demo.USERS.items():
        theirs = [line for line in lines if f" {user} " in line]
        assert theirs, user
        assert all(ip in line for line in theirs)
    assert any(" bob " in line and " ERROR " in line and "card declined" in line for line in lines)


def test_demo_trusts_the_proxy_not_the_client_and_escapes_forged_lines(report):
    """A spoofed X-Forwarded-For entry loses to the proxy's; a CR LF in the path is escaped."""
    text = "\n".join(story(report))

    assert "192.0.2.44" in text and "10.0.0.1 " not in text.replace("10.0.0.1, ", "")
    assert "/search\\r\\n2024-01-01 admin logged in" in text
    assert not any(line.startswith("2024-01-01") for line in report.splitlines())


def test_demo_access_lines_carry_request_ids(report):
    """Each request of the story has one access line, with its request id."""
    access = [line for line in story(report) if "ctxlog.access" in line]

    assert 8 == len(access)
    assert all(re.search(r" [0-9a-f]{12} INFO", line) for line in access)
    assert "8 requests, statuses [200, 401, 402]" in report


def test_demo_prints_measured_latencies_and_their_ratio(report):
    """Both runs print a p50 and a p95 in ms, and the ratio is a number (never asserted on)."""
    direct = re.search(r"attached directly\s+p50\s+([\d.]+) ms\s+p95\s+([\d.]+) ms", report)
    queued = re.search(r"behind ctxlog\.nonblocking\(\)\s+p50\s+([\d.]+) ms\s+p95\s+([\d.]+) ms", report)
    ratio = re.search(r"made the median request ([\d.]+)x faster", report)

    assert direct is not None and queued is not None and ratio is not None, report
    assert all(float(value) >= 0 for value in (*direct.groups(), *queued.groups(), ratio.group(1)))


def test_demo_counts_every_email_and_record(report):
    """E-mails received equal ERRORs sent (1 + 9 + 9), records written equal records logged."""
    mails = re.search(r"e-mails\s+(\d+) received by the SMTP server, (\d+) sent", report)
    records = re.search(r"records\s+(\d+) written by ctxlog receive, (\d+) logged", report)
    verdict = re.search(r"nothing lost: (\d+)/(\d+) e-mails and (\d+)/(\d+) records", report)

    assert mails is not None and records is not None and verdict is not None, report
    received, sent = map(int, mails.groups())
    written, logged = map(int, records.groups())
    assert (received, sent) == (19, 19)
    assert written == logged > 0
    assert tuple(map(int, verdict.groups())) == (received, sent, written, logged)


def test_demo_shows_the_fields_in_the_email_and_at_the_receiver(report):
    """Bob's declined payment, as e-mailed and as written by ctxlog receive, names bob and his ip."""
    delivered = report.split("\n3. Delivered", 1)[1]

    assert re.search(r"\n {12}\d\d:\d\d:\d\d 198\.51\.100\.23 bob [0-9a-f]{32} ERROR payment", delivered)
    assert re.search(r"\n {12}\S+ \S+ ERROR 198\.51\.100\.23 bob [0-9a-f]{32} demo\.shop payment", delivered)
    assert "[pid " in delivered and " from 127.0.0.1:" in delivered


def test_delivery_reports_every_kind_of_loss():
    """The 'nothing lost' line is computed: any difference or drop turns it into 'LOST'."""
    assert [] == Delivery(3, 3, 10, 10).problems()
    assert Delivery(3, 3, 10, 10).verdict().startswith("nothing lost: 3/3 e-mails and 10/10 records")

    lost = Delivery(emails_sent=3, emails_received=2, records_logged=10, records_received=9, dropped=1, failed=2)

    assert [
        "2 e-mails arrived at the SMTP server, 3 were sent",
        "9 records were written by ctxlog receive, 10 were logged",
        "1 records were dropped by full queues",
        "2 records could not be handed to a handler",
    ] == lost.problems()
    assert lost.verdict().startswith("LOST: 2 e-mails arrived")
    assert Delivery(3, 4, 10, 10).problems()  # a duplicate is not "nothing lost" either


def test_demo_exits_1_when_the_smtp_server_loses_mail(monkeypatch, tmp_path):
    """A server that says 250 and forgets the message makes the demo report the loss and exit 1."""
    monkeypatch.setattr(SlowSMTPServer, "keep", lambda self, message: 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = io.StringIO()

    assert 1 == _demo.run(out, requests=1, smtp_delay=0.0)

    last = out.getvalue().rstrip("\n").splitlines()[-1]
    assert last.startswith("LOST: 0 e-mails arrived at the SMTP server, 3 were sent")
    assert "records" not in last


def test_demo_leaves_no_thread_handler_or_file_behind(monkeypatch, tmp_path):
    """After the demo: no new thread, the same root handlers and level, the temp dir removed."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = logging.getLogger()
    threads, handlers, level = set(threading.enumerate()), list(root.handlers), root.level
    out = io.StringIO()

    assert 0 == _demo.run(out, requests=2, smtp_delay=0.0)

    # A thread an earlier test left may end meanwhile: only a new one is a leak.
    assert set() == set(threading.enumerate()) - threads
    assert (handlers, level) == (root.handlers, root.level)
    assert [] == list(tmp_path.iterdir())
    assert "nothing lost: 5/5 e-mails" in out.getvalue()


def test_ctrl_c_exits_130_without_a_traceback():
    """SIGINT while the blocking burst runs: the demo stops, says so, and exits 130."""
    # 100 checkouts, each blocking on the 200 ms SMTP server in turn: the burst lasts 20 s at
    # least, the signal lands in it (not in the final clean-up), which the output shows below.
    process = subprocess.Popen(
        [sys.executable, "-m", "ctxlog", "demo", "--requests", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("   each logs an ERROR"):  # the last line before the burst
                process.send_signal(signal.SIGINT)
                break
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert 130 == process.returncode, err
    assert "ctxlog demo: interrupted\n" == err.lstrip("\n")
    assert "SMTPHandler attached directly" not in "".join(seen) + out, "the burst had ended"


def test_an_error_raised_while_ctrl_c_unwinds_counts_as_ctrl_c():
    """SIGINT inside threading's own code surfaces as RuntimeError('release unlocked lock')."""
    from ctxlog.demo.story import _interrupted

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("release unlocked lock")  # noqa: B904 - as threading does
    except RuntimeError as error:
        unwinding = error
    assert _interrupted(unwinding)
    assert _interrupted(KeyboardInterrupt())
    assert not _interrupted(RuntimeError("release unlocked lock"))
    assert not _interrupted(ValueError())
