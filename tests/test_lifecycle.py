"""The process lifecycle registry: the order of fork and exit calls, seen from real processes."""

from __future__ import annotations

import subprocess
import sys

ORDER_SCRIPT = """
import os, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
from ctxlog._lifecycle import register

class Component:
    def __init__(self, name):
        self.name = name
    def say(self, what):
        os.write(1, f"{what} {self.name}\\n".encode())
    def before_fork(self, deadline):
        self.say("before_fork")
    def after_fork_in_parent(self):
        self.say("after_fork_in_parent")
    def after_fork_in_child(self):
        self.say("after_fork_in_child")
    def at_exit(self):
        self.say("at_exit")

first, second = Component("first"), Component("second")
register(first)
register(second)
pid = os.fork()
if pid == 0:
    os._exit(0)  # no exit handlers: the child's lines are its fork hooks only
os.waitpid(pid, 0)
"""

EXIT_SCRIPT = """
import logging, sys
import ctxlog
from ctxlog._lifecycle import register

class Connection(logging.Handler):
    # A handler owning a connection: closed at exit by the registry, it takes nothing after.
    def __init__(self):
        super().__init__()
        self.open = True
        register(self)
    def emit(self, record):
        print(record.getMessage() if self.open else "lost", flush=True)
    def at_exit(self):
        self.open = False
        print("closed", flush=True)

log = logging.getLogger("app")
log.propagate = False
log.addHandler(ctxlog.nonblocking([Connection()]))
for i in range(200):
    log.warning("r%d", i)
"""


def test_fork_and_exit_calls_come_in_a_documented_order():
    """before_fork and at_exit: last registered first; the after-fork calls: first registered first."""
    done = subprocess.run([sys.executable, "-c", ORDER_SCRIPT], capture_output=True, text=True, timeout=60, check=False)

    assert 0 == done.returncode, done.stderr
    lines = done.stdout.splitlines()
    child = [line for line in lines if line.startswith("after_fork_in_child")]
    parent = [line for line in lines if not line.startswith("after_fork_in_child")]
    assert ["after_fork_in_child first", "after_fork_in_child second"] == child
    assert [
        "before_fork second",
        "before_fork first",
        "after_fork_in_parent first",
        "after_fork_in_parent second",
        "at_exit second",
        "at_exit first",
    ] == parent


def test_a_queue_is_drained_at_exit_before_the_handler_it_delivers_to_is_closed():
    """A handler registered before the nonblocking() in front of it is closed after it is drained."""
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=60, check=False)

    assert 0 == done.returncode, done.stderr
    assert [f"r{i}" for i in range(200)] + ["closed"] == done.stdout.splitlines()
