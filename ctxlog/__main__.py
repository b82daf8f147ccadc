"""Run the ``ctxlog`` command line: ``python -m ctxlog demo``."""

import sys

from ctxlog.cli import main

sys.exit(main())
