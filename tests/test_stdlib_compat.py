"""CPython's own tests for QueueHandler/QueueListener, run against ctxlog's drop-in subclasses."""

from __future__ import annotations

import subprocess
import sys

# Runs in a fresh interpreter: the stdlib classes are swapped for ctxlog's before CPython's
# test_logging is imported (its listener tests patch logging.handlers.QueueListener at import).
BOOTSTRAP = """
import logging.handlers, sys, unittest
import ctxlog
logging.handlers.QueueHandler = ctxlog.QueueHandler
logging.handlers.QueueListener = ctxlog.QueueListener
from test import test_logging
loader = unittest.TestLoader()
suite = unittest.TestSuite()
for name in ("QueueHandlerTest", "QueueListenerTest"):
    cls = getattr(test_logging, name, None)
    if cls is not None:
        suite.addTests(loader.loadTestsFromTestCase(cls))
for name in loader.getTestCaseNames(test_logging.ConfigDictTest):
    if "queue" in name.lower():
        suite.addTest(test_logging.ConfigDictTest(name))
result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
assert logging.handlers.QueueHandler is ctxlog.QueueHandler
print("RAN", result.testsRun, "FAILURES", len(result.failures) + len(result.errors))
sys.exit(0 if result.wasSuccessful() else 1)
"""


def test_cpython_queue_tests_pass_against_ctxlog_classes():
    """CPython's QueueHandler, QueueListener and dictConfig queue tests pass with ctxlog's classes."""
    result = subprocess.run([sys.executable, "-c", BOOTSTRAP], capture_output=True, text=True, timeout=120, check=False)

    assert 0 == result.returncode, result.stdout + result.stderr
    ran = int(result.stdout.split("RAN ")[1].split()[0])
    assert ran >= 9, result.stdout
