"""Where documents come from: files under local roots (whole files or their docstrings) and Hugging Face datasets.

Local inputs are enumerated as candidates (path, size) in sorted order, then read in parallel by `read_document`,
which turns each into a document or a skip reason; skips are counted, never silent. Hub inputs stream rows.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
from huggingface_hub import constants

from lit_codellama.data.recipe import DataError, Input, Source

EXTENSIONS = {
    "python": ".py",
    "cython": ".pyx .pxd",
    "c": ".c .h",
    "cpp": ".cc .cpp .cxx .hh .hpp .hxx",
    "java": ".java",
    "javascript": ".js .mjs .cjs",
    "typescript": ".ts .tsx",
    "php": ".php",
    "csharp": ".cs",
    "bash": ".sh .bash",
    "go": ".go",
    "rust": ".rs",
    "ruby": ".rb",
    "scala": ".scala",
    "kotlin": ".kt",
    "swift": ".swift",
    "lua": ".lua",
    "perl": ".pl",
    "r": ".r",
    "julia": ".jl",
    "sql": ".sql",
    "markdown": ".md",
    "restructuredtext": ".rst",
    "text": ".txt",
}
LANGUAGES = {ext: language for language, exts in EXTENSIONS.items() for ext in exts.split()}
BINARY_SNIFF_BYTES = 8192
SKIP_REASONS = ("huge", "unreadable", "binary", "not_utf8", "long_lines", "unparsable", "empty")


def language_of(path: str) -> str:
    """Language from the file extension; files without a known extension (LICENSE, README) are plain text."""
    return LANGUAGES.get(os.path.splitext(path)[1].lower(), "text")


def walk(root: Path) -> list[tuple[str, str, int]]:
    """(path relative to root, path, size) of the regular files under `root`, sorted; symlinks are not followed."""
    files: list[tuple[str, str, int]] = []

    def visit(directory: str, rel: str) -> None:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return  # unreadable directory
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                visit(entry.path, f"{rel}{entry.name}/")
            elif entry.is_file(follow_symlinks=False):
                try:
                    files.append((rel + entry.name, entry.path, entry.stat(follow_symlinks=False).st_size))
                except OSError:
                    continue  # vanished while walking

    if root.is_dir():
        visit(str(root), "")
    return files


def find_files(
    inp: Input, walk: Callable[[Path], list[tuple[str, str, int]]] = walk, archives: list[Path] = ()
) -> Iterator[tuple[str, int]]:
    """(path, size) of the files under the input's roots that match its patterns, in sorted order.

    Roots that do not exist on this machine are skipped (the build reports them), so one recipe serves machines
    with and without, say, /usr/share/doc.
    """
    include, exclude = _pattern(inp.include), _pattern(inp.exclude)
    for root in inp.expanded_roots(archives):
        for rel, path, size in walk(root):
            if include.match(rel) and not exclude.match(rel):
                yield path, size


def _pattern(patterns: list[str]) -> re.Pattern:
    """One regex for a list of fnmatch patterns (an empty list matches nothing)."""
    return re.compile("|".join(fnmatch.translate(p) for p in patterns) or "(?!)")


def read_document(path: str, kind: str, max_file_bytes: int, max_line_chars: int) -> tuple[str, str | None]:
    """(text, None) for a usable file, or ("", reason) with a reason from SKIP_REASONS."""
    try:
        if os.stat(path).st_size > max_file_bytes:
            return "", "huge"
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return "", "unreadable"
    if b"\0" in raw[:BINARY_SNIFF_BYTES]:
        return "", "binary"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "", "not_utf8"
    if kind == "docstrings":
        try:
            text = docstrings(text)
        except (SyntaxError, ValueError):  # Python 2 files, templates, null bytes further in
            return "", "unparsable"
    return check_text(text, max_line_chars)


def check_text(text: str, max_line_chars: int) -> tuple[str, str | None]:
    """The checks on decoded text, for files and hub rows alike: (text, None), ("", "empty") or ("", "long_lines")."""
    if not text.strip():
        return "", "empty"
    if max(map(len, text.splitlines())) > max_line_chars:  # minified code, data blobs
        return "", "long_lines"
    return text, None


def docstrings(source: str) -> str:
    """The module, class and function docstrings of a Python file, in source order, one paragraph each."""
    tree = ast.parse(source)
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))]
    nodes.sort(key=lambda n: getattr(n, "lineno", 0))
    return "\n\n".join(doc for n in nodes if (doc := ast.get_docstring(n)))


def read_batch(batch: dict[str, list], max_file_bytes: int, max_line_chars: int) -> dict[str, list]:
    """`datasets.map` function: read a batch of candidates into documents (`text`, `sha256`, `skip`), with `size`
    now the bytes of the text (a docstrings document is a fraction of its file)."""
    out: dict[str, list] = {"text": [], "sha256": [], "skip": [], "size": []}
    for path, kind in zip(batch["path"], batch["kind"]):
        text, skip = read_document(path, kind, max_file_bytes, max_line_chars)
        out["text"].append(text)
        out["sha256"].append(sha256(text))
        out["skip"].append(skip)
        out["size"].append(len(text.encode()))
    return out


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


HUB_ADVICE = (
    "use a `files` input over a local copy instead (e.g. the built-in `default` recipe, or `roots:` pointing at a "
    "checkout), or run online once so that the dataset is in the Hugging Face cache"
)


def check_hub(repo_id: str, where: str, advice: str = HUB_ADVICE, error: type[Exception] = DataError) -> None:
    """Fail fast, naming `where` and the offline alternative, when the hub cannot serve dataset `repo_id`.

    With HF_HUB_OFFLINE set only the local cache can answer, so there is nothing to probe; otherwise the endpoint
    is asked with a short timeout, before `datasets` (whose own retries can take minutes) is called.
    """
    if constants.HF_HUB_OFFLINE:
        return
    try:
        huggingface_hub.HfApi().dataset_info(repo_id, timeout=10)
    except Exception as e:  # connection refused, DNS failure, timeout, 404, gated repo...
        raise error(
            f"{where}: {constants.ENDPOINT} cannot serve {repo_id!r} ({e.__class__.__name__}: {str(e)[:200]}); "
            + advice
        ) from e


def load_hub_dataset(
    where: str, path: str, *args: Any, advice: str = HUB_ADVICE, error: type[Exception] = DataError, **kwargs: Any
) -> Any:
    """`datasets.load_dataset(path, *args, **kwargs)` behind `check_hub`, with one clear error (of type `error`,
    naming `where` and ending with `advice`, the offline alternative) on failure."""
    check_hub(path, where, advice, error)
    try:
        return datasets.load_dataset(path, *args, **kwargs)
    except Exception as e:
        offline = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if constants.HF_HUB_OFFLINE else ""
        raise error(
            f"{where}: loading {path!r} failed{offline}: {e.__class__.__name__}: {str(e)[:300]}; " + advice
        ) from e


def hub_rows(source: Source, inp: Input, max_file_bytes: int, max_line_chars: int) -> Iterator[dict[str, Any]]:
    """Rows of a hub dataset as documents, with the same record layout and skips as files. The dataset is opened
    here, so an unreachable hub fails at the call, not at the first row."""
    where = f"source {source.name!r}"
    rows = load_hub_dataset(where, inp.path, inp.name, data_dir=inp.data_dir, split=inp.split, streaming=inp.streaming)

    def documents() -> Iterator[dict[str, Any]]:
        for i, row in enumerate(rows):
            if inp.text_field not in row:
                raise DataError(
                    f"{where}: rows of {inp.path!r} have no field {inp.text_field!r} (fields: "
                    f"{sorted(row)}); set `text_field` in the recipe"
                )
            raw = row[inp.text_field] or ""
            size = len(raw.encode())
            text, skip = ("", "huge") if size > max_file_bytes else check_text(raw, max_line_chars)
            language = inp.language or (row.get(inp.language_field) if inp.language_field else None) or "text"
            yield {
                "path": f"hf://datasets/{inp.path}/{inp.split}/{i}",
                "size": size,
                "kind": "hub",
                "language": str(language).lower(),
                "text": text,
                "sha256": sha256(text),
                "skip": skip,
            }

    return documents()
