"""Reading evaluation inputs: JSONL files (errors name the line) and Hugging Face datasets (fail fast offline)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lit_codellama.errors import LitCodeLlamaError


class EvalInputError(LitCodeLlamaError, ValueError):
    """A dataset or completions file that is missing, malformed, or does not match the task."""


def read_jsonl(
    path: str | Path, required: Iterable[str] = (), check: Callable[[dict[str, Any]], str | None] | None = None
) -> list[dict[str, Any]]:
    """Rows of a JSONL file (blank lines skipped). A line that is not a JSON object, lacks a `required` field or
    for which `check` returns a message is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"{path} does not exist")
    required = tuple(required)
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                message = f"{path}, line {number}: not valid JSON ({e.msg}); expected one object per line"
                raise EvalInputError(message) from e
            if not isinstance(row, dict):
                raise EvalInputError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
            missing = [key for key in required if key not in row]
            if missing:
                raise EvalInputError(f"{path}, line {number}: missing field(s) {missing} (rows need {list(required)})")
            problem = check(row) if check else None
            if problem:
                raise EvalInputError(f"{path}, line {number}: {problem}")
            rows.append(row)
    return rows


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    # A lone surrogate (only possible inside a JSON string) is written as its JSON escape, "\\ud800".
    with open(path, "w", encoding="utf-8", errors="backslashreplace") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def load_hub_rows(repo_id: str, config: str | None, local_copy_hint: str) -> list[dict[str, Any]]:
    """Every row of every split of a hub dataset, or one error that says where to put a local copy instead
    (`data.sources.load_hub_dataset`: fails in seconds offline; with HF_HUB_OFFLINE=1 only the local cache)."""
    from lit_codellama.data.sources import load_hub_dataset  # imports `datasets`: only when a hub dataset is read

    where = f"evaluation data {repo_id}" + (f" ({config})" if config else "")
    advice = f"work offline from a local copy: {local_copy_hint}"
    splits = load_hub_dataset(where, repo_id, config, advice=advice, error=EvalInputError)
    return [dict(row) for split in splits.values() for row in split]
