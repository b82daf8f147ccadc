"""Packaging rules: standard library only at run time, contextvars only, Python >= 3.11."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import ctxlog

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ctxlog"


def test_no_runtime_dependencies_and_python_311():
    """pyproject declares no dependencies and requires Python 3.11 or newer."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    assert ([], ">=3.11") == (project["dependencies"], project["requires-python"])


def test_importing_ctxlog_loads_only_the_standard_library():
    """A fresh interpreter importing ctxlog loads no module from outside the standard library."""
    code = (
        "import sys, json; before = set(sys.modules); import ctxlog, ctxlog.cli; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    foreign = [m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "ctxlog"]

    assert [] == foreign


def _names_used(tree: ast.AST) -> set[str]:
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            used.add(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            used.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            used.update(alias.name for alias in node.names)
    return used


def test_no_thread_locals_no_pickle_no_basehttpmiddleware():
    """Contextvars only (no threading.local), no pickle, no BaseHTTPMiddleware, no config.listen."""
    offenders = {}
    for path in PACKAGE.glob("*.py"):
        used = _names_used(ast.parse(path.read_text()))
        bad = {
            n
            for n in used
            if n in {"threading.local", "_threading_local", "config.listen", "logging.config.listen"}
            or n.startswith(("pickle", "starlette.middleware.base"))
        }
        if bad:
            offenders[path.name] = sorted(bad)

    assert {} == offenders


def test_public_names_are_exported_and_sorted():
    """__all__ lists the documented public names, sorted isort-style (constants, classes, functions)."""
    expected = {
        "ASGIMiddleware", "ContextAdapter", "ContextExecutor", "ContextFilter", "FIELDS", "Formatter", "JSONFormatter", "QueueHandler", "QueueListener", "RedactFilter",
        "WSGIMiddleware", "bind", "config_server", "flush", "get_context", "get_logger", "handlers", "nonblocking", "outgoing_headers", "scope", "unbind",
        "wrap",
    }

    assert expected == set(ctxlog.__all__)
    assert sorted(ctxlog.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n)) == ctxlog.__all__
    assert all(hasattr(ctxlog, name) for name in ctxlog.__all__)


def test_py_typed_marker_is_shipped():
    """The package carries py.typed for type checkers."""
    assert (PACKAGE / "py.typed").is_file()
