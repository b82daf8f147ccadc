"""Sphinx configuration for the ctxlog documentation (MyST Markdown, furo theme)."""

from __future__ import annotations

import importlib.util
import sys
import types

import ctxlog

project = "ctxlog"
author = "ctxlog developers"
copyright = "ctxlog developers"
release = ctxlog.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

# Markdown only; the pages are written in MyST.
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Google-style docstrings only.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True

# The API reference documents the framework glue and the ZeroMQ classes, whose modules import
# Django and pyzmq. CI builds the docs with every extra installed; a bare
# `pip install -e '.[docs]'` lacks them, so stand in for what those modules touch at import.
autodoc_mock_imports = [
    name for name in ("django", "asgiref") if importlib.util.find_spec(name) is None
]
if importlib.util.find_spec("zmq") is None:
    # ctxlog.zmq turns the socket types into ints at import time, which a mock cannot do.
    _zmq = types.ModuleType("zmq")
    _zmq.PUB, _zmq.SUB, _zmq.PULL, _zmq.PUSH = 1, 2, 7, 8  # libzmq's socket type numbers
    sys.modules["zmq"] = _zmq

html_theme = "furo"
html_title = f"ctxlog {release}"
