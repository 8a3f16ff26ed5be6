"""A built-in instruction set that needs no download: the documented functions of this Python's standard library.

Each public, undecorated top-level function with a docstring of at least `MIN_DOC_WORDS` words and at most `MAX_LINES` lines
becomes one `{"instruction", "output"}` row: its signature and docstring as the request, its source as the answer.
It stands in for a small high-quality instruction set (Unnatural-style, §2.5) in CPU-scale runs. Its code is also
in the default pre-training corpus, so it measures instruction following rather than new knowledge.
"""

from __future__ import annotations

import ast
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MIN_DOC_WORDS = 8
MAX_LINES = 40
# Test suites, IDLE, 2to3 fixers and demos are not examples of functions anyone would ask for.
SKIPPED_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo"}
INSTRUCTION = "Write a Python function `{name}({args})` that does the following.\n\n{doc}"


def stdlib_rows(root: str | Path | None = None) -> Iterator[dict[str, Any]]:
    """Instruction rows from the standard library at `root` (default: this interpreter's), in sorted file order."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    for path in sorted(_python_files(root)):
        yield from function_rows(path)


def _python_files(root: Path) -> Iterator[Path]:
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in SKIPPED_DIRS]  # never walk into site-packages
        yield from (Path(directory, f) for f in files if f.endswith(".py"))


def function_rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):  # unreadable, Python 2, templates
        return
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_") or node.decorator_list:
            continue
        doc = ast.get_docstring(node)
        if doc and len(doc.split()) >= MIN_DOC_WORDS and node.end_lineno - node.lineno < MAX_LINES:
            code = ast.get_source_segment(source, node)
            instruction = INSTRUCTION.format(name=node.name, args=ast.unparse(node.args), doc=doc)
            yield {"instruction": instruction, "output": f"```python\n{code}\n```", "source": f"{path}:{node.lineno}"}
