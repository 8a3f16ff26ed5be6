"""Instruction datasets: local JSONL files or Hugging Face datasets, read into dialogs of the chat format.

Schema: one JSON object per line (or per hub row), in either form (other fields are ignored):

    {"messages": [{"role": "system", "content": "..."},        # optional
                  {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}, ...]}   # user/assistant alternate; ends with assistant
    {"instruction": "...", "input": "...", "output": "...", "system": "..."}   # input and system optional

An `instruction`/`output` row is the dialog [system,] user = instruction (+ "\\n\\n" + input), assistant = output.
A source's `columns` renames fields first, e.g. `{"prompt": "instruction", "completion": "output"}`.
Invalid rows are an error that lists them by line (row, for the hub); `skip_invalid` drops them with a warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_codellama.chat import ChatFormatError, Message, turns
from lit_codellama.data.recipe import DataError
from lit_codellama.data.sources import load_hub_dataset
from lit_codellama.instruct.builtin import stdlib_rows
from lit_codellama.jsonl import iter_jsonl

log = logging.getLogger(__name__)
SHOWN_PROBLEMS = 10
BUILTIN = {"stdlib": stdlib_rows}


@dataclass
class InstructSource:
    """Where instruction data comes from: a local JSONL `path`, a `hub` dataset id (with `name` and `split`), or a
    `builtin` set (`stdlib`: the documented functions of this Python's standard library, see `instruct.builtin`).

    columns: field renames applied to each row before it is read (source field -> schema field).
    limit: keep the first `limit` valid dialogs (e.g. 15_000 for an Unnatural-style set).
    """

    path: str | None = None
    hub: str | None = None
    builtin: str | None = None
    name: str | None = None
    split: str = "train"
    columns: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    skip_invalid: bool = False

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.path, self.hub, self.builtin)) != 1:
            raise DataError(
                f"instruct source {self}: give exactly one of `path` (a local JSONL file), `hub` (a dataset id) "
                f"or `builtin` (one of {sorted(BUILTIN)})"
            )
        if self.builtin is not None and self.builtin not in BUILTIN:
            raise DataError(f"instruct source: unknown builtin set {self.builtin!r}; available: {sorted(BUILTIN)}")

    @property
    def where(self) -> str:
        if self.hub is not None:
            return f"hub dataset {self.hub!r} ({self.name or 'default'}, {self.split})"
        return self.path if self.path is not None else f"builtin set {self.builtin!r}"


def to_dialog(row: Any) -> list[Message]:
    """The dialog of one row in either schema form; ChatFormatError says what is wrong with it."""
    if not isinstance(row, dict):
        raise ChatFormatError(f"expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list):
            raise ChatFormatError(f"`messages` must be a list of messages, got {type(messages).__name__}")
    elif "instruction" in row and "output" in row:
        fields = {key: row.get(key) or "" for key in ("instruction", "input", "output", "system")}
        if not all(isinstance(value, str) for value in fields.values()):
            raise ChatFormatError("`instruction`, `input`, `output` and `system` must be strings")
        user = "\n\n".join(part for part in (fields["instruction"], fields["input"]) if part.strip())
        messages = [{"role": "system", "content": fields["system"]}] if fields["system"].strip() else []
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": fields["output"]}]
    else:
        raise ChatFormatError(f"needs `messages`, or `instruction` and `output` (has {sorted(row)})")
    pairs = turns(messages)
    if pairs[-1][1] is None:
        raise ChatFormatError("the last message must be the assistant's (it is what the model learns)")
    if any(not user or not answer for user, answer in pairs):
        raise ChatFormatError("user and assistant messages must not be empty")
    return messages


def load_instruct(source: InstructSource) -> list[list[Message]]:
    """The dialogs of a source, in order; invalid rows are one DataError listing them (or skipped, if allowed)."""
    dialogs: list[list[Message]] = []
    problems: list[str] = []
    for location, row in _rows(source):
        try:
            if isinstance(row, json.JSONDecodeError):
                raise ChatFormatError(f"not valid JSON ({row.msg})")
            dialogs.append(to_dialog({source.columns.get(k, k): v for k, v in row.items()} if isinstance(row, dict) else row))
        except ChatFormatError as e:
            problems.append(f"{location}: {e}")
        if source.limit is not None and len(dialogs) >= source.limit:
            break
    if problems:
        shown = "\n  ".join(problems[:SHOWN_PROBLEMS]) + ("\n  ..." if len(problems) > SHOWN_PROBLEMS else "")
        message = f"{source.where}: {len(problems)} invalid row(s) (schema: lit_codellama.instruct.dataset):\n  {shown}"
        if not source.skip_invalid:
            raise DataError(message + "\nFix them, or set `skip_invalid: true` on the source to drop them.")
        log.warning("skipping %s", message)
    if not dialogs:
        raise DataError(f"{source.where}: no valid dialogs")
    return dialogs


def _rows(source: InstructSource) -> Iterator[tuple[str, Any]]:
    if source.builtin is not None:
        for row in BUILTIN[source.builtin]():
            yield row["source"], row
        return
    if source.hub is not None:
        rows = load_hub_dataset(f"instruct source {source.hub!r}", source.hub, source.name, split=source.split)
        for i, row in enumerate(rows):
            yield f"row {i}", row
        return
    path = Path(source.path)
    if not path.is_file():
        raise DataError(f"instruct dataset {path} does not exist; give a JSONL file in the schema of lit_codellama.instruct.dataset")
    for number, row in iter_jsonl(path):
        yield f"line {number}", row

