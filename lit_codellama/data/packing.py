"""Packing documents into fixed-length contexts, with Code Llama's FIM transform at the document or context level.

A context is `seq_len + 1` tokens (inputs and shifted labels). A document longer than a context is first split at
line ends into pieces that fit one (`split_lines`, exact because it reads where the newline tokens fall). A piece
is the unit of FIM and of packing for every FIM setting, so the arms of a FIM ablation see the same left-to-right
text. A sample is a piece as `<s> text </s>`, or as a FIM sample (`fim.fim_sample`).

Document-level FIM (the paper, §2.3): each piece becomes a FIM sample with probability `fim_rate` before packing,
and a FIM sample is never cut across contexts. One that does not fit in what is left of the current context waits
(at most `MAX_WAITING` wait) and goes, first fit, into the next context with room, while left-to-right samples
fill the rest. When the wait is full a FIM sample is packed left-to-right instead, as the paper leaves documents
that are cut across contexts without FIM. Since pieces are sized to a context, the share of samples delivered as
FIM stays within about a point of `fim_rate` (see benchmarks/data_throughput.py).

Context-level FIM (BigCode Megatron): left-to-right samples are packed and `fim.apply_context_fim` transforms the
whole documents inside each context, then truncates or pads it back to length.

The training stream is infinite and deterministic. Its unit is the piece, planned once per run (`plan_pieces`):
epoch e visits all pieces in the permutation drawn from (seed, e), so the pieces of one document are spread over
the epoch instead of following each other; shard s of n (one per rank and dataloader worker) takes every n-th
piece; a piece's FIM draws come from (seed, e, document, piece start), so the same seed gives the same samples on
every rank and worker, and every FIM rate sees the same pieces in the same order. Given the run's token budget,
each document keeps only its first pieces up to a cap, so that no document is more than a set share of the run.
Long-context training packs whole documents instead (`contiguous`): left-to-right text cut across contexts, so a
context holds up to `seq_len` tokens of one document.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from lit_codellama.data.recipe import DataError
from lit_codellama.fim import FIMConfig, apply_context_fim, draw_split, fim_sample
from lit_codellama.tokenizer import Tokenizer

MAX_WAITING = 128  # FIM samples of nearly a context wait for a fresh one; in a shuffled stream, waiting costs nothing
FIM_ROOM = 8  # FIM adds 3 special tokens, and up to 4 more where its cuts split tokens


def piece_tokens(seq_len: int) -> int:
    """Most tokens of a piece's text: a context less <s>, </s> and room for FIM's extra tokens."""
    return max(1, seq_len + 1 - 2 - FIM_ROOM)


def split_document(text: str, num_tokens: int, max_tokens: int) -> list[str]:
    """Split `text` (of `num_tokens` tokens) at line ends into pieces of about `max_tokens` tokens or fewer,
    sized by the text's average characters per token; a single line longer than a piece is cut inside."""
    if num_tokens <= max_tokens:
        return [text]
    max_chars = max(1, len(text) * max_tokens // num_tokens)
    pieces, start = [], 0
    while len(text) - start > max_chars:
        end = text.rfind("\n", start, start + max_chars) + 1
        if end <= start:
            end = start + max_chars
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


def split_lines(text: str, ids: Sequence[int], newline_id: int, max_tokens: int) -> list[tuple[int, int, int]]:
    """(start, end, tokens) spans of `text` cut at line ends into pieces of at most `max_tokens` of its tokens `ids`,
    read off where its newline tokens fall (exact, unlike `split_document`'s estimate). A line longer than a piece
    goes to `split_document`; so does a text whose tokenizer does not give every newline its own token (the tokens
    of such spans are estimated)."""
    newline_tokens = np.flatnonzero(np.asarray(ids) == newline_id)
    newline_chars = np.flatnonzero(np.frombuffer(text.encode("utf-32-le"), np.uint32) == ord("\n"))
    if len(newline_tokens) != len(newline_chars):
        return _estimated_spans(text, 0, len(text), len(ids), max_tokens)
    spans, token, char = [], 0, 0
    while len(ids) - token > max_tokens:
        k = int(np.searchsorted(newline_tokens, token + max_tokens)) - 1  # last newline within max_tokens
        if k >= 0 and newline_tokens[k] >= token:
            end_token, end_char = int(newline_tokens[k]) + 1, int(newline_chars[k]) + 1
            spans.append((char, end_char, end_token - token))
        else:  # the line starting here is longer than a piece
            k = int(np.searchsorted(newline_tokens, token))
            end_token, end_char = (
                (int(newline_tokens[k]) + 1, int(newline_chars[k]) + 1) if k < len(newline_chars) else (len(ids), len(text))
            )
            spans += _estimated_spans(text, char, end_char, end_token - token, max_tokens)
        token, char = end_token, end_char
    if char < len(text):
        spans.append((char, len(text), len(ids) - token))
    return spans


def _estimated_spans(text: str, start: int, end: int, num_tokens: int, max_tokens: int) -> list[tuple[int, int, int]]:
    """`split_document` of text[start:end] as spans, each with its share of `num_tokens` (rounded up)."""
    spans, char = [], start
    for part in split_document(text[start:end], num_tokens, max_tokens):
        spans.append((char, char + len(part), -(-num_tokens * len(part) // max(1, end - start))))
        char += len(part)
    return spans


@dataclass
class Sample:
    """Token ids to pack, from document `doc`. A FIM sample carries `plain`, its left-to-right version, for when it
    cannot stay whole."""

    ids: list[int]
    plain: list[int] | None = None
    doc: int = -1


def pack(samples: Iterable[Sample], size: int) -> Iterator[list[int]]:
    """Concatenate samples and cut them into contexts of `size` tokens; FIM samples are never cut (module doc)."""
    context: list[int] = []
    waiting: list[list[int]] = []
    for sample in samples:
        if sample.plain is not None and len(context) + len(sample.ids) > size:
            if len(waiting) < MAX_WAITING:
                waiting.append(sample.ids)
                continue
            context.extend(sample.plain)
        else:
            context.extend(sample.ids)
        while len(context) >= size:
            yield context[:size]
            context = _first_fit(waiting, size) + context[size:]


def _first_fit(waiting: list[list[int]], room: int) -> list[int]:
    """Remove and concatenate the waiting samples that fit in `room` tokens, oldest first."""
    placed: list[int] = []
    still: list[list[int]] = []
    for ids in waiting:
        if len(placed) + len(ids) <= room:
            placed.extend(ids)
        else:
            still.append(ids)
    waiting[:] = still
    return placed


class DocumentReader:
    """A built corpus's documents as samples (pieces, left-to-right or FIM); opens the corpus lazily, per process."""

    def __init__(self, corpus_dir: str | Path, seq_len: int, seed: int = 0):
        self.corpus_dir, self.seq_len, self.seed = Path(corpus_dir), seq_len, seed

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    @property
    def tokenizer(self) -> Tokenizer:
        if not hasattr(self, "_tokenizer"):
            self._tokenizer = Tokenizer(self.corpus_dir / "tokenizer.model")
        return self._tokenizer

    @property
    def newline_id(self) -> int:
        return self.tokenizer.processor.piece_to_id("<0x0A>")  # Llama's byte-fallback newline

    @property
    def documents(self) -> datasets.Dataset:
        if not hasattr(self, "_documents"):
            docs = datasets.load_from_disk(str(self.corpus_dir / "documents"))
            self._documents = docs.select_columns(["text", "input_ids", "num_tokens"])
        return self._documents

    def spans(self, doc: int, max_tokens: int) -> list[tuple[int, int, int]]:
        """(start, end, tokens) of the pieces of document `doc`: its characters cut at line ends into runs of at
        most `max_tokens` tokens (see `split_lines`)."""
        row = self.documents[doc]
        if row["num_tokens"] <= max_tokens:
            return [(0, len(row["text"]), row["num_tokens"])]
        return split_lines(row["text"], row["input_ids"], self.newline_id, max_tokens)

    def samples(
        self,
        doc: int,
        epoch: int,
        fim: FIMConfig = FIMConfig(),
        span: tuple[int, int] | None = None,
        max_tokens: int | None = None,
    ) -> Iterator[Sample]:
        """The samples of document `doc`, or of its characters `span`; their FIM draws come from
        (seed, epoch, doc, span start)."""
        rng = np.random.default_rng((self.seed, epoch, doc, span[0] if span else 0))
        for text, plain in self.pieces(doc, span, max_tokens):
            split = draw_split(text, rng, fim) if fim.fim_rate > 0 else None
            if split is None:
                yield Sample(plain, doc=doc)
            elif len(ids := fim_sample(self.tokenizer, split)) <= self.seq_len + 1:
                yield Sample(ids, plain, doc)
            else:  # a piece of one very long line: it could never be whole
                yield Sample(plain, doc=doc)

    def pieces(
        self, doc: int, span: tuple[int, int] | None = None, max_tokens: int | None = None
    ) -> list[tuple[str, list[int]]]:
        """(text, `<s> text </s>` ids) of the pieces of a document (or of its characters `span`), each at most
        `max_tokens` (default `piece_tokens`) + 2 ids long, unless it is a single line. A piece found longer than
        its estimate is split again, so FIM samples fit."""
        tok, limit = self.tokenizer, max_tokens or piece_tokens(self.seq_len)
        text = self.documents[doc]["text"]
        spans = [span] if span else [(a, b) for a, b, _ in self.spans(doc, limit)]
        pieces, todo = [], [text[a:b] for a, b in spans][::-1]
        while todo:
            text = todo.pop()
            ids = tok.encode(text, bos=True, eos=True)
            parts = split_document(text, len(ids) - 2, limit) if len(ids) > limit + 2 else [text]
            if len(parts) > 1:
                todo.extend(parts[::-1])
            else:
                pieces.append((text, ids))
        return pieces


@dataclass(frozen=True)
class PiecePlan:
    """The training pieces of a run: piece i is characters start[i]:end[i] of document doc[i], at most `max_tokens`
    tokens, planned to pack into at most cost[i] tokens. `largest_document_share`: the most any one document can
    be of a run of `token_budget` tokens (its planned tokens times the `epochs` such a run touches), or None
    without a budget."""

    doc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    cost: np.ndarray
    max_tokens: int
    token_budget: int | None
    epochs: int
    largest_document_share: float | None

    def __len__(self) -> int:
        return len(self.doc)


def plan_pieces(
    reader: DocumentReader,
    docs: Sequence[int],
    *,
    contiguous: bool = False,
    token_budget: int | None = None,
    max_document_share: float = 0.01,
) -> PiecePlan:
    """Cut documents into pieces (context-sized, or whole documents when `contiguous`) and, given a run's
    `token_budget`, keep of each document its first pieces up to a cap, so that no document can be more than
    `max_document_share` of the run's tokens however the shuffle falls: a document of `n` planned tokens is seen
    at most once per epoch, so at most `n x epochs` times. The cap starts at share x budget and is lowered while
    the capped corpus is small enough for the run to touch more epochs, but never below one context-sized piece: a
    run of fewer than 1/share contexts cannot keep the share (its plan says how close it gets)."""
    # <s>, </s>, a piece's own leading space and FIM's extra tokens, for every FIM rate: its arms see the same pieces
    overhead = 3 + FIM_ROOM
    most = sys.maxsize if contiguous else piece_tokens(reader.seq_len)
    cap = None if token_budget is None else max_document_share * token_budget
    consumed = None if token_budget is None else token_budget * (reader.seq_len + 1) / reader.seq_len
    floor = piece_tokens(reader.seq_len) + overhead  # a document may always give one context-sized piece
    cap = None if cap is None else max(cap, floor)
    limit, spans = None, []
    while True:
        if limit != (limit := most if cap is None else max(1, min(most, int(cap) - overhead))):
            # 1 token short of the limit: a piece re-encoded on its own gains a leading space, and is not split again
            spans = [(doc, reader.spans(int(doc), max(1, limit - 1))) for doc in docs]
        rows = []
        for doc, doc_spans in spans:
            total = 0
            for start, end, tokens in doc_spans:
                total += tokens + overhead
                if cap is not None and total > cap:
                    break
                rows.append((doc, start, end, tokens + overhead))
        doc, start, end, cost = (np.array(column, dtype=np.int64) for column in zip(*rows))
        if cap is None:
            return PiecePlan(doc, start, end, cost, limit, None, 1, None)
        epochs = int(consumed // cost.sum()) + 1
        largest = np.bincount(doc, weights=cost).max() * epochs / token_budget
        if largest <= max_document_share or cap == floor:
            return PiecePlan(doc, start, end, cost, limit, token_budget, epochs, float(largest))
        cap = max(floor, max_document_share * token_budget / epochs)


class ShardedStream(IterableDataset):
    """An infinite, deterministic stream of training examples, split into shards (one per rank and DataLoader
    worker) by `contexts(shard, num_shards)`; `start_batch` resumes after that many batches.

    DataLoader workers take batches in turn (batch k comes from worker k % workers), so on resume worker w plays
    the shard of the worker that was due next, and each skips the contexts its shard had already delivered.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, batch_size: int = 1, start_batch: int = 0):
        self.rank, self.world_size, self.batch_size, self.start_batch = rank, world_size, batch_size, start_batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        self.check_shards(self.world_size * workers)
        role = (worker + self.start_batch) % workers
        delivered = self.start_batch // workers + (role < self.start_batch % workers)
        contexts = self.contexts(self.rank * workers + role, self.world_size * workers)
        for context in itertools.islice(contexts, delivered * self.batch_size, None):
            yield self.example(context)

    def check_shards(self, num_shards: int) -> None:
        """Raise when `num_shards` shards cannot all be fed."""

    def contexts(self, shard: int, num_shards: int) -> Iterator[Any]:
        raise NotImplementedError

    def example(self, context: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class TrainStream(ShardedStream):
    """The infinite training stream of one rank over the pieces of `docs` (see the module doc and `plan_pieces`
    for `contiguous`, `token_budget` and `max_document_share`)."""

    def __init__(
        self,
        reader: DocumentReader,
        docs: Sequence[int],
        *,
        fim: FIMConfig = FIMConfig(),
        contiguous: bool = False,
        token_budget: int | None = None,
        max_document_share: float = 0.01,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
        start_batch: int = 0,
    ):
        super().__init__(rank, world_size, batch_size, start_batch)
        self.reader = reader
        self.fim = fim
        self.plan = plan_pieces(
            reader,
            docs,
            contiguous=contiguous,
            token_budget=token_budget,
            max_document_share=max_document_share,
        )

    def check_shards(self, num_shards: int) -> None:
        if len(self.plan) < num_shards:  # a shard without pieces would never yield
            raise DataError(
                f"{len(self.plan)} training pieces cannot feed {self.world_size} ranks x "
                f"{num_shards // self.world_size} dataloader workers; use fewer workers or a larger corpus"
            )

    def example(self, context: Sequence[int]) -> dict[str, torch.Tensor]:
        return to_example(context)

    def contexts(self, shard: int, num_shards: int) -> Iterator[list[int]]:
        size, seed = self.reader.seq_len + 1, self.reader.seed
        if self.fim.fim_level == "document":
            yield from pack(self.samples(shard, num_shards, self.fim), size)
            return
        for i, context in enumerate(pack(self.samples(shard, num_shards, FIMConfig()), size)):
            if self.fim.fim_rate > 0:
                rng = np.random.default_rng((seed, shard, num_shards, i))
                context = apply_context_fim(context, self.reader.tokenizer, rng, self.fim)
            yield context

    def samples(self, shard: int, num_shards: int, fim: FIMConfig) -> Iterator[Sample]:
        plan = self.plan
        for epoch in itertools.count():
            for i in self.shard_pieces(epoch, shard, num_shards):
                span = (int(plan.start[i]), int(plan.end[i]))
                yield from self.reader.samples(int(plan.doc[i]), epoch, fim, span, plan.max_tokens)

    def shard_pieces(self, epoch: int, shard: int, num_shards: int) -> np.ndarray:
        """Indices into `plan` of the pieces that shard `shard` of `num_shards` visits in `epoch`, in order."""
        order = np.random.default_rng((self.reader.seed, epoch)).permutation(len(self.plan))
        return order[shard::num_shards]


def validation_contexts(reader: DocumentReader, docs: Sequence[int]) -> torch.Tensor:
    """(N, seq_len + 1) left-to-right contexts of `docs` in the given order; the last partial context is dropped."""
    samples = (s for doc in docs for s in reader.samples(int(doc), epoch=0))  # no FIM: no draw matters
    contexts = list(pack(samples, reader.seq_len + 1))
    return torch.tensor(contexts, dtype=torch.long).reshape(len(contexts), reader.seq_len + 1)


def to_example(context: Sequence[int]) -> dict[str, torch.Tensor]:
    """Inputs and next-token labels of a context."""
    ids = torch.as_tensor(context, dtype=torch.long)
    return {"input_ids": ids[:-1], "labels": ids[1:]}
