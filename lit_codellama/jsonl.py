"""JSON Lines, read and written one way everywhere: errors name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from lit_codellama.errors import LitCodeLlamaError


class JSONLError(LitCodeLlamaError, ValueError):
    """A JSONL file that is missing or malformed."""


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line; the value is the `json.JSONDecodeError` of a line that is not
    JSON, so a caller can report every bad line at once."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as e:
                    yield number, e


def read_jsonl(
    path: str | Path,
    required: Iterable[str] = (),
    check: Callable[[dict[str, Any]], str | None] | None = None,
    error: type[Exception] = JSONLError,
) -> list[dict[str, Any]]:
    """Rows of a JSONL file. A missing file, a line that is not a JSON object, lacks a `required` field or for which
    `check` returns a message is an `error` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist")
    required = tuple(required)
    rows = []
    for number, row in iter_jsonl(path):
        if isinstance(row, json.JSONDecodeError):
            raise error(f"{path}, line {number}: not valid JSON ({row.msg}); expected one object per line") from row
        if not isinstance(row, dict):
            raise error(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
        missing = [key for key in required if key not in row]
        if missing:
            raise error(f"{path}, line {number}: missing field(s) {missing} (rows need {list(required)})")
        problem = check(row) if check else None
        if problem:
            raise error(f"{path}, line {number}: {problem}")
        rows.append(row)
    return rows


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    # A lone surrogate (only possible inside a JSON string) is written as its JSON escape, "\\ud800".
    with open(path, "w", encoding="utf-8", errors="backslashreplace") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
