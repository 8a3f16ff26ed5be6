"""Build a corpus from a recipe, and load a built one.

    collect (per source, seeded order, up to its share of max_bytes) -> exact dedup -> near dedup
    -> decontaminate -> train (or copy) the tokenizer -> tokenize -> trim to the mixture weights -> save

Every step runs on a `datasets.Dataset` (Arrow, `map(num_proc=...)`). A document's fate is one column
(`removed_by`), so the report can say how many documents, bytes and tokens each step removed. The output dir:

    corpus.json       the report: fingerprint, sha256 (`documents_sha256`), resolved recipe, per-source and per-step
                      counts, achieved mix, timings
    manifest.jsonl    one line per kept document: path, size (bytes of its text), sha256 (of its text), language, source
    tokenizer.model   the sentencepiece model the documents are tokenized with
    documents/        the kept documents (text, input_ids, num_tokens, source, language, path, sha256), Arrow shards

A build is keyed on the recipe's fingerprint: building the same recipe into the same dir again is a cache hit.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import random
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from lit_codellama.data.archives import unpacked
from lit_codellama.data.decontaminate import Contamination, benchmark_texts
from lit_codellama.data.dedup import Signer, first_occurrences, near_duplicate_mask
from lit_codellama.data.recipe import DataError, Recipe, Source
from lit_codellama.data.sources import SKIP_REASONS, find_files, hub_rows, language_of, read_batch, walk
from lit_codellama.tokenizer import Tokenizer, train_tokenizer

REPORT, MANIFEST, TOKENIZER, DOCUMENTS = "corpus.json", "manifest.jsonl", "tokenizer.model", "documents"
# Read this much more than a source's share: dedup and decontamination remove some, the mixture trim the rest.
OVERSAMPLE = 1.15
KEPT = ""
MIX_TOLERANCE = 0.005  # largest difference between a source's achieved share and its weight, if it can


@dataclass
class Corpus:
    """A built corpus directory."""

    path: Path
    report: dict[str, Any]

    @functools.cached_property
    def documents(self) -> datasets.Dataset:
        return datasets.load_from_disk(str(self.path / DOCUMENTS))

    @functools.cached_property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self.path / TOKENIZER)

    @functools.cached_property
    def sha256(self) -> str:
        """`documents_sha256` of the kept documents (from the report; computed for corpora built before it was)."""
        return self.report.get("sha256") or documents_sha256(self.documents["text"])


def documents_sha256(texts: Iterable[str]) -> str:
    """The corpus's identity: SHA-256 over the kept documents' UTF-8 texts in corpus order, each followed by a NUL."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def load_corpus(path: str | Path) -> Corpus:
    path = Path(path)
    try:
        report = json.loads((path / REPORT).read_text())
    except (OSError, ValueError) as e:
        raise DataError(
            f"{path} is not a built corpus (no readable {REPORT}); build one with "
            f"`python -m lit_codellama data build --recipe default --out {path}`"
        ) from e
    return Corpus(path, report)


def default_corpus_dir(recipe: Recipe) -> Path:
    """Where a recipe is built when no dir is given: $LIT_CODELLAMA_DATA or ~/.cache/lit_codellama/corpora."""
    root = os.environ.get("LIT_CODELLAMA_DATA") or Path.home() / ".cache" / "lit_codellama" / "corpora"
    return Path(root) / f"{recipe.name}-{recipe.fingerprint()[:12]}"


# The libraries whose version can change which documents are kept (tokenizer training, MinHash, sampling); recorded in
# corpus.json and pinned in constraints-cpu.txt.
CORPUS_LIBRARIES = ("sentencepiece", "datasketch", "numpy", "datasets")


def build_corpus(recipe: Recipe, out: str | Path, num_proc: int | None = None) -> Corpus:
    """Build `recipe` into `out`, or return the corpus already there if it was built from the same recipe; warn
    when its sha256 is not the one the recipe pins.

    Concurrent builders of one dir (e.g. several ranks) wait on a file lock; the first builds, the rest hit the cache.
    """
    corpus = _build_or_load(recipe, Path(out), num_proc)
    if recipe.sha256 and corpus.sha256 != recipe.sha256:
        warnings.warn(
            f"recipe {recipe.name!r} built corpus sha256 {corpus.sha256} at {corpus.path}, not the {recipe.sha256} "
            "it pins: results on it are not comparable with published ones (compare the library versions in its "
            "corpus.json with constraints-cpu.txt)"
        )
    return corpus


def _build_or_load(recipe: Recipe, out: Path, num_proc: int | None) -> Corpus:
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{out}.lock"):
        if (out / REPORT).is_file():
            corpus = load_corpus(out)
            if corpus.report.get("fingerprint") == recipe.fingerprint():
                return corpus
        elif out.exists() and any(out.iterdir()):
            raise DataError(f"--out {out} exists and is not a corpus; give a new or empty dir")
        tmp = out.with_name(f"{out.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        report = _Build(recipe, tmp, num_proc or os.cpu_count() or 1).run()
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return Corpus(out, report)


class _Build:
    def __init__(self, recipe: Recipe, out: Path, num_proc: int):
        self.recipe, self.out, self.num_proc = recipe, out, num_proc
        self.seconds: dict[str, float] = {}
        self.sources: dict[str, dict[str, Any]] = {}
        self.walk = functools.cache(walk)  # sources often share roots
        self.archives: list[Path] = []

    @property
    def steps(self) -> list[str]:
        """The cleaning steps this recipe runs, in order."""
        enabled = (self.recipe.dedup.exact, self.recipe.dedup.near, self.recipe.decontamination.enabled)
        return [step for step, on in zip(("exact_dedup", "near_dedup", "decontamination"), enabled) if on]

    def run(self) -> dict[str, Any]:
        start = time.perf_counter()
        self.archives = unpacked(self.recipe.archives) if self.recipe.archives else []
        self.progress = tqdm(total=len(self.steps) + 5, desc=f"build corpus {self.recipe.name!r}", unit="step")
        docs = self._timed("collect", self._collect)
        self.collected = len(docs)
        removed_by = np.full(len(docs), KEPT, dtype=object)
        results = {step: self._timed(step, getattr(self, f"_{step}"), docs, removed_by) for step in self.steps}
        tok = self._timed("tokenizer", self._tokenizer, docs.select(_alive(removed_by)))
        docs = self._timed("tokenize", self._tokenize, docs, tok)
        mix = self._timed("mixture", self._trim_to_mixture, docs, removed_by)
        kept = docs.select(_alive(removed_by))
        self._timed("save", self._save, kept)
        report = {
            "name": self.recipe.name,
            "fingerprint": self.recipe.fingerprint(),
            "sha256": documents_sha256(kept["text"]),
            "recipe": self.recipe.to_dict(),
            "documents": len(kept),
            "tokens": int(sum(kept["num_tokens"])),
            "bytes": int(sum(kept["size"])),
            "vocab_size": tok.vocab_size,
            "mix": mix,
            "sources": self.sources,
            "removed": _removals(docs, removed_by, [*self.steps, "mixture"]),
            "decontamination": results.get("decontamination") or {},
            "languages": _by_language(kept),
            "seconds": {**self.seconds, "total": time.perf_counter() - start},
            "versions": {"python": platform.python_version(), **{pkg: version(pkg) for pkg in CORPUS_LIBRARIES}},
        }
        dedup_seconds = self.seconds.get("exact_dedup", 0.0) + self.seconds.get("near_dedup", 0.0)
        report["collected_documents"] = self.collected
        report["dedup_docs_per_s"] = self.collected / dedup_seconds if dedup_seconds else None
        (self.out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        self.progress.close()
        return report

    def _timed(self, name: str, fn, *args):
        self.progress.set_postfix_str(name)
        start = time.perf_counter()
        result = fn(*args)
        self.seconds[name] = time.perf_counter() - start
        self.progress.update()
        return result

    def _map(self, ds: datasets.Dataset, fn, desc: str, **kwargs) -> datasets.Dataset:
        num_proc = min(self.num_proc, len(ds) // 64) or None  # a process per few docs costs more than it saves
        return ds.map(fn, batched=True, batch_size=64, num_proc=num_proc, desc=desc, **kwargs)

    # -- collect --------------------------------------------------------------------------------------------------

    def _collect(self) -> datasets.Dataset:
        parts = []
        for source in self.recipe.sources:
            budget = None if self.recipe.max_bytes is None else self.recipe.weights[source.name] * self.recipe.max_bytes
            part = self._collect_source(source, None if budget is None else budget * OVERSAMPLE)
            if len(part) == 0:
                stats = self.sources[source.name]
                raise DataError(
                    f"source {source.name!r} of recipe {self.recipe.name!r} has no usable documents "
                    f"({stats['candidates']} candidate files, skipped: {stats['skipped']}); fix its inputs "
                    f"({[i.roots or i.path for i in source.inputs]}, include/exclude patterns) or remove the source"
                )
            parts.append(part.add_column("source", [source.name] * len(part)))
        return datasets.concatenate_datasets(parts)

    def _collect_source(self, source: Source, budget: float | None) -> datasets.Dataset:
        """Documents of one source in a seeded random order, until `budget` bytes of text (or all of them)."""
        recipe = self.recipe
        candidates = self._candidates(source)
        skipped = Counter({"huge": sum(c["size"] > recipe.max_file_bytes for c in candidates)})
        candidates = [c for c in candidates if c["size"] <= recipe.max_file_bytes]
        missing = [str(r) for i in source.inputs if i.kind != "hub" for r in i.expanded_roots(self.archives) if not r.is_dir()]
        if missing:
            warnings.warn(f"recipe {recipe.name!r}, source {source.name!r}: roots {missing} do not exist; skipped")
        parts, got, read_bytes, pos = [], 0, 0, 0
        while pos < len(candidates) and (budget is None or got < budget):
            # Read what the budget still needs, scaled up by how few of the bytes read so far became text
            # (a docstrings document is a fraction of its file).
            text_share = max(got / read_bytes, 0.05) if read_bytes else 1.0
            want = float("inf") if budget is None else (budget - got) / text_share
            end, size = pos, 0
            while end < len(candidates) and (end == pos or size < want):
                size += candidates[end]["size"]
                end += 1
            docs = self._map(
                datasets.Dataset.from_list(candidates[pos:end]),
                read_batch,
                f"read {source.name}",
                fn_kwargs={"max_file_bytes": recipe.max_file_bytes, "max_line_chars": recipe.max_line_chars},
            )
            skips = docs["skip"]
            skipped.update(s for s in skips if s)
            parts.append(docs.select([i for i, s in enumerate(skips) if s is None]))
            got += sum(parts[-1]["size"])
            read_bytes += size
            pos = end
        for inp in source.inputs:
            if inp.kind == "hub":
                part, got = self._collect_hub(source, inp, budget, got, skipped)
                parts.append(part)
        self.sources[source.name] = {
            "candidates": len(candidates) + skipped["huge"],
            "read": pos,
            "missing_roots": missing,
            "skipped": {reason: skipped[reason] for reason in SKIP_REASONS if skipped[reason]},
        }
        columns = ["path", "size", "language", "text", "sha256"]
        parts = [p.select_columns(columns) for p in parts if len(p)]
        return datasets.concatenate_datasets(parts) if parts else datasets.Dataset.from_dict({c: [] for c in columns})

    def _candidates(self, source: Source) -> list[dict[str, Any]]:
        """The files of a source's local inputs (each once), in the order drawn from the recipe's seed."""
        candidates: dict[str, dict[str, Any]] = {}
        for inp in source.inputs:
            if inp.kind != "hub":
                for path, size in find_files(inp, self.walk, self.archives):
                    language = inp.language or ("docstring" if inp.kind == "docstrings" else language_of(path))
                    candidates.setdefault(path, {"path": path, "size": size, "kind": inp.kind, "language": language})
        order = list(candidates.values())
        random.Random(f"{self.recipe.seed}:{source.name}").shuffle(order)
        return order

    def _collect_hub(self, source: Source, inp, budget: float | None, got: int, skipped: Counter):
        documents = hub_rows(source, inp, self.recipe.max_file_bytes, self.recipe.max_line_chars)

        def rows():
            nonlocal got
            for row in documents:
                if budget is not None and got >= budget:
                    return
                if row["skip"]:
                    skipped[row["skip"]] += 1
                    continue
                got += row["size"]
                yield row

        try:
            part = datasets.Dataset.from_generator(rows, cache_dir=str(self.out / ".cache"))
        except datasets.exceptions.DatasetGenerationError as e:
            raise (e.__cause__ if isinstance(e.__cause__, DataError) else e) from None
        return part, got

    # -- clean ----------------------------------------------------------------------------------------------------

    def _exact_dedup(self, docs: datasets.Dataset, removed_by: np.ndarray) -> None:
        alive = _alive(removed_by)
        keep = first_occurrences(docs.select(alive)["sha256"])
        removed_by[[i for i, k in zip(alive, keep) if not k]] = "exact_dedup"

    def _near_dedup(self, docs: datasets.Dataset, removed_by: np.ndarray) -> None:
        cfg = self.recipe.dedup
        alive = _alive(removed_by)
        signer = Signer(cfg.num_perm, cfg.shingle_size)
        signed = self._map(docs.select(alive).select_columns(["text"]), signer, "minhash", remove_columns=["text"])
        keep = near_duplicate_mask(signed.with_format("numpy")["minhash"], cfg.threshold, signer.scheme)
        removed_by[[i for i, k in zip(alive, keep) if not k]] = "near_dedup"

    def _decontamination(self, docs: datasets.Dataset, removed_by: np.ndarray) -> dict[str, str]:
        cfg = self.recipe.decontamination
        texts, status = benchmark_texts(cfg)
        alive = _alive(removed_by)
        if texts:
            checked = self._map(
                docs.select(alive).select_columns(["text"]),
                Contamination(texts, cfg.ngram),
                "decontaminate",
                remove_columns=["text"],
            )
            for i, bench in zip(alive, checked["contaminated"]):
                if bench:
                    removed_by[i] = "decontamination"
        return status

    # -- tokenize and mix -----------------------------------------------------------------------------------------

    def _tokenizer(self, docs: datasets.Dataset) -> Tokenizer:
        spec, path = self.recipe.tokenizer, self.out / TOKENIZER
        if spec.path:
            shutil.copyfile(Tokenizer(spec.path).path, path)
        else:
            texts = (row["text"] for row in docs.select_columns(["text"]))
            trained = train_tokenizer(texts, self.out / "tokenizer", spec.vocab_size, spec.max_lines, self.recipe.seed)
            trained.rename(path)
            trained.with_suffix(".vocab").unlink()
        return Tokenizer(path)

    def _tokenize(self, docs: datasets.Dataset, tok: Tokenizer) -> datasets.Dataset:
        return self._map(docs, _Encoder(tok.path), "tokenize")

    def _trim_to_mixture(self, docs: datasets.Dataset, removed_by: np.ndarray) -> dict[str, Any]:
        """Keep, of each source's documents in collection order, those that fit in its weight times a total; a
        document that would overflow is skipped for smaller ones after it. The total starts as the largest that
        every source can fill (set by the source reported as `limited_by`) and is lowered in 2% steps while the
        achieved shares are further than MIX_TOLERANCE from the weights (sources of few, large documents)."""
        weights = self.recipe.weights
        alive = _alive(removed_by)
        alive_docs = docs.select(alive)
        sources, tokens = alive_docs["source"], alive_docs["num_tokens"]
        available = Counter()
        for s, n in zip(sources, tokens):
            available[s] += n
        limited_by = min(weights, key=lambda s: available[s] / weights[s])
        best: tuple[float, Counter, list[bool]] | None = None
        for step in range(200):
            total = available[limited_by] / weights[limited_by] * 0.98**step
            taken, keep = Counter(), []
            for s, n in zip(sources, tokens):
                keep.append(taken[s] + n <= weights[s] * total * (1 + 1e-9))
                taken[s] += n * keep[-1]
            if not taken.total():
                break
            error = max(abs(taken[s] / taken.total() - weights[s]) for s in weights)
            if best is None or error < best[0]:
                best = (error, taken, keep)
            if error <= MIX_TOLERANCE:
                break
        if best is None:
            raise DataError(
                f"recipe {self.recipe.name!r}: no documents of source {limited_by!r} are left after "
                f"deduplication and decontamination ({_removals(docs, removed_by, self.steps)})"
            )
        _, taken, keep = best
        removed_by[[i for i, k in zip(alive, keep) if not k]] = "mixture"
        return {
            "target": weights,
            "achieved": {s: taken[s] / taken.total() for s in weights},
            "tokens": dict(taken),
            "limited_by": limited_by,
        }

    def _save(self, kept: datasets.Dataset) -> None:
        kept = kept.select_columns(["text", "input_ids", "num_tokens", "source", "language", "path", "sha256", "size"])
        kept.save_to_disk(str(self.out / DOCUMENTS), max_shard_size="100MB")
        with open(self.out / MANIFEST, "w") as f:
            f.writelines(
                json.dumps(row) + "\n" for row in kept.select_columns(["path", "size", "sha256", "language", "source"])
            )
        shutil.rmtree(self.out / ".cache", ignore_errors=True)


class _Encoder:
    """`datasets.map` function: token ids (no BOS/EOS) and their count; loads the tokenizer once per process."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if not hasattr(self, "_processor"):
            self._processor = Tokenizer(self.path).processor
        ids = [np.asarray(x, dtype=np.int32) for x in self._processor.encode(batch["text"])]
        return {"input_ids": ids, "num_tokens": [len(x) for x in ids]}

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}


def _alive(removed_by: np.ndarray) -> list[int]:
    return np.flatnonzero(removed_by == KEPT).tolist()


def _removals(docs: datasets.Dataset, removed_by: np.ndarray, steps: list[str]) -> dict[str, dict[str, int]]:
    out = {step: {"documents": 0, "tokens": 0, "bytes": 0} for step in steps}
    for step, n, size in zip(removed_by, docs["num_tokens"], docs["size"]):
        if step != KEPT:
            counts = out.setdefault(step, {"documents": 0, "tokens": 0, "bytes": 0})
            counts["documents"] += 1
            counts["tokens"] += n
            counts["bytes"] += size
    return out


def _by_language(kept: datasets.Dataset) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for lang, n in zip(kept["language"], kept["num_tokens"]):
        counts = out.setdefault(lang, {"documents": 0, "tokens": 0})
        counts["documents"] += 1
        counts["tokens"] += n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["tokens"]))
