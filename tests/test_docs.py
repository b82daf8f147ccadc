"""
The documentation's code is correct: it compiles, it parses, and the runnable parts run.

Every fenced ``python`` block under ``docs/`` must compile, and every ``toml`` and ``json`` block
must parse. A block preceded by the MyST comment ``% test: run`` is self-contained and is run in
a process of its own, in an empty directory; it must exit with status 0 without a "Logging
error". ``% expect: TEXT`` lines after the marker name text its output must contain::

    % test: run
    % expect: 203.0.113.7 alice
    ```python
    ...
    ```

MyST comments are not rendered, so the markers never show in the built pages. The runnable
blocks run concurrently, to keep this module fast.

The API reference (``docs/api.md``) must document every public name.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: A fence line: indentation, three or more backticks, the info string.
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>[^`]*)$")


@dataclass
class Block:
    """One fenced code block of a page."""

    page: str
    line: int
    lang: str
    code: str
    run: bool = False
    expect: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks(path: Path) -> Iterator[Block]:
    """Yield the fenced code blocks of ``path`` with the markers just above them."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(ROOT).as_posix()
    number = 0
    while number < len(lines):
        opening = _FENCE.match(lines[number])
        if opening is None:
            number += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        info = opening["info"].strip()
        markers = []
        above = number - 1
        while above >= 0 and lines[above].startswith("% "):
            markers.insert(0, lines[above][2:].strip())
            above -= 1
        body = []
        number += 1
        while number < len(lines) and lines[number].strip() != fence:
            body.append(lines[number][indent:])
            number += 1
        # Numbered by its opening fence (1-based), the line before its code.
        block = Block(page, number - len(body), info, "\n".join(body) + "\n")
        for marker in markers:
            if marker == "test: run":
                block.run = True
            elif marker.startswith("expect: "):
                block.expect.append(marker.removeprefix("expect: "))
        if block.expect and not block.run:
            msg = f"{block.id}: '% expect:' without '% test: run'"
            raise ValueError(msg)
        yield block
        number += 1


BLOCKS = [block for path in sorted(DOCS.rglob("*.md")) for block in _blocks(path)]
PYTHON = [block for block in BLOCKS if block.lang == "python"]
RUNNABLE = [block for block in PYTHON if block.run]
DATA = [block for block in BLOCKS if block.lang in {"toml", "json"}]


def test_the_pages_have_blocks_of_each_kind():
    """The block finder sees the pages' code (a broken finder would make every test pass)."""
    assert len(PYTHON) > 50
    assert len(RUNNABLE) >= 10
    assert {"toml", "json"} == {block.lang for block in DATA}
    assert all(block.lang == "python" for block in BLOCKS if block.run)


@pytest.mark.parametrize("block", PYTHON, ids=lambda block: block.id)
def test_python_block_compiles(block: Block):
    """Every Python block of the documentation is valid Python."""
    compile(block.code, block.id, "exec")


@pytest.mark.parametrize("block", DATA, ids=lambda block: block.id)
def test_toml_and_json_blocks_parse(block: Block):
    """Every TOML and JSON block of the documentation parses."""
    if block.lang == "toml":
        tomllib.loads(block.code)
    else:
        json.loads(block.code)


def _missing_modules(code: str) -> list[str]:
    """Return the third-party modules ``code`` imports that are not installed."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    third_party = names - set(sys.stdlib_module_names) - {"ctxlog"}
    return sorted(name for name in third_party if importlib.util.find_spec(name) is None)


@dataclass
class Outcome:
    """How a runnable block's process ended."""

    status: int | None
    output: str


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Run every runnable block at once, each in its own process and directory."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    running = {}
    for block in RUNNABLE:
        if _missing_modules(block.code):
            continue
        where = tmp_path_factory.mktemp("snippet")
        script = where / "snippet.py"
        # Blank lines in front, so that a traceback's line numbers are the page's.
        script.write_text("\n" * block.line + block.code, encoding="utf-8")
        running[block.id] = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=where,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    results = {}
    for name, process in running.items():
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            results[name] = Outcome(None, output)
        else:
            results[name] = Outcome(process.returncode, output)
    return results


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.id)
def test_runnable_block_runs(block: Block, outcomes: dict[str, Outcome]):
    """A block marked runnable runs by itself, logs without errors, and prints what it says."""
    missing = _missing_modules(block.code)
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{block.id} needs {missing}, which are not installed")
        pytest.skip(f"{block.id} needs {missing}")
    outcome = outcomes[block.id]
    assert (0, "") == (outcome.status, "" if outcome.status == 0 else outcome.output)
    assert "--- Logging error ---" not in outcome.output, outcome.output
    for text in block.expect:
        assert text in outcome.output, outcome.output


# -- the API reference ------------------------------------------------------------------------

_DIRECTIVE = re.compile(r"^\.\. auto(?P<kind>\w+):: (?P<name>\S+)$")


def _all_of(module: str) -> list[str]:
    """Return a module's ``__all__``, read from its source (no import: no optional extras)."""
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    if not path.exists():
        path = ROOT / Path(*module.split(".")) / "__init__.py"
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    msg = f"{module} has no __all__"
    raise AssertionError(msg)


def _documented() -> set[str]:
    """Return the dotted names api.md documents with autodoc or ``py:data``."""
    documented = set()
    module = None
    for raw in (DOCS / "api.md").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        directive = _DIRECTIVE.match(line)
        if directive:
            name = directive["name"]
            documented.add(name)
            module = name if directive["kind"] == "module" else None
        elif line.startswith(":members:") and module is not None:
            members = [m.strip() for m in line.removeprefix(":members:").split(",") if m.strip()]
            documented.update(f"{module}.{member}" for member in members or _all_of(module))
        elif line.startswith("```{py:data} "):
            documented.add(line.removeprefix("```{py:data} ").strip())
    return documented


def test_the_api_reference_documents_every_public_name():
    """docs/api.md has an entry for each name in the public modules' __all__."""
    public = {f"ctxlog.{name}" for name in _all_of("ctxlog") if name != "handlers"}
    for module in (
        "ctxlog.handlers", "ctxlog.zmq", "ctxlog.flask", "ctxlog.django", "ctxlog.celery",
        "ctxlog.outgoing", "ctxlog.structlog", "ctxlog.loguru",
    ):
        public.update(f"{module}.{name}" for name in _all_of(module))
    public.update({"ctxlog.fastapi.bind_user", "ctxlog.queue.NonBlockingHandler"})
    public.update(
        f"ctxlog.receiver.{name}" for name in _all_of("ctxlog.receiver") if name[0].isupper()
    )
    assert [] == sorted(public - _documented())
