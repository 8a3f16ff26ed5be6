"""Reading evaluation inputs: JSONL files (errors name the line) and Hugging Face datasets (fail fast offline)."""

from __future__ import annotations

import functools
from typing import Any

from lit_codellama import jsonl
from lit_codellama.errors import LitCodeLlamaError
from lit_codellama.jsonl import write_jsonl  # noqa: F401  (re-exported: evaluation writes its results with it)


class EvalInputError(LitCodeLlamaError, ValueError):
    """A dataset or completions file that is missing, malformed, or does not match the task."""


# The one JSONL reader, raising this module's error.
read_jsonl = functools.partial(jsonl.read_jsonl, error=EvalInputError)


def load_hub_rows(repo_id: str, config: str | None, local_copy_hint: str) -> list[dict[str, Any]]:
    """Every row of every split of a hub dataset, or one error that says where to put a local copy instead
    (`data.sources.load_hub_dataset`: fails in seconds offline; with HF_HUB_OFFLINE=1 only the local cache)."""
    from lit_codellama.data.sources import load_hub_dataset  # imports `datasets`: only when a hub dataset is read

    where = f"evaluation data {repo_id}" + (f" ({config})" if config else "")
    advice = f"work offline from a local copy: {local_copy_hint}"
    splits = load_hub_dataset(where, repo_id, config, advice=advice, error=EvalInputError)
    return [dict(row) for split in splits.values() for row in split]
