"""
The rules that keep ctxlog's rooms apart (docs/architecture.md): no import cycle, no private
name imported from another room, no module over 400 lines, no function over 60 lines (its
docstring aside), and ``import ctxlog`` loads none of the optional rooms.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ctxlog"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _room(module: str) -> str:
    """The package a module lives in (ctxlog.web.asgi -> ctxlog.web; ctxlog.django -> ctxlog)."""
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str) -> list[tuple[str, str]]:
    """Return (imported module, name) for each ``from ctxlog... import name`` at any level."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target == "ctxlog" or target.startswith("ctxlog."):
                found.extend((target, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((alias.name, "") for alias in node.names if alias.name in MODULES)
    return found


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    for module in MODULES:
        for target, name in _imports(module):
            dest = f"{target}.{name}" if f"{target}.{name}" in MODULES else target
            if dest in MODULES and dest != module:
                edges[module].add(dest)
    return edges


def test_no_import_cycle() -> None:
    edges = _edges()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dest in sorted(edges[module]):
            if state.get(dest) == 1:
                cycles.append([*path[path.index(dest) :], dest])
            elif dest not in state:
                visit(dest, [*path, dest])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_private_name_imported_from_another_room() -> None:
    crossing = []
    for module in MODULES:
        for target, name in _imports(module):
            if not name.startswith("_") or name.startswith("__") or f"{target}.{name}" in MODULES:
                continue
            if target in MODULES and target != module:
                same_room = _room(target) == _room(module) and _room(module) != "ctxlog"
                if not same_room:
                    crossing.append(f"{module} imports {target}.{name}")
    assert crossing == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_at_most_400_lines(module: str) -> None:
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module}: {lines} lines, split it by concept"


def test_no_function_over_60_lines() -> None:
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                docstring = ast.get_docstring(node, clean=False)
                if docstring is not None:
                    first = node.body[0]
                    length -= (first.end_lineno or first.lineno) - first.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {length} lines")
    assert long == []


def test_import_ctxlog_loads_only_the_context_and_the_record() -> None:
    code = (
        "import sys, ctxlog\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('ctxlog'))))\n"
        "heavy = ['smtplib', 'ssl', 'email', 'asyncio', 'socket', 'json', 'hmac', 'celery']\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    loaded, heavy = ([*result.stdout.splitlines(), "", ""])[:2]
    rooms = {name.split(".")[1] if "." in name else "" for name in loaded.split()}
    assert rooms <= {"", "context", "record", "_stderr"}, loaded
    assert heavy == ""
