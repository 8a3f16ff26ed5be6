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

The training stream is infinite and deterministic: epoch e visits the documents in the permutation drawn from
(seed, e), shard s of n (one per rank and dataloader worker) takes every n-th of them, and a document's FIM draws
come from (seed, e, document), so the same seed gives the same samples on every rank and worker.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from lit_codellama.data.recipe import DataError
from lit_codellama.fim import apply_context_fim, draw_split, fim_sample
from lit_codellama.tokenizer import Tokenizer

MAX_WAITING = 32
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


def split_lines(text: str, ids: Sequence[int], newline_id: int, max_tokens: int) -> list[str]:
    """Split `text` at line ends into pieces of at most `max_tokens` of its tokens `ids`, read off where its
    newline tokens fall (exact, unlike `split_document`'s estimate). A line longer than a piece goes to
    `split_document`; so does a text whose tokenizer does not give every newline its own token."""
    newline_tokens = np.flatnonzero(np.asarray(ids) == newline_id)
    newline_chars = [i for i, c in enumerate(text) if c == "\n"]
    if len(newline_tokens) != len(newline_chars):
        return split_document(text, len(ids), max_tokens)
    pieces, token, char = [], 0, 0
    while len(ids) - token > max_tokens:
        k = int(np.searchsorted(newline_tokens, token + max_tokens)) - 1  # last newline within max_tokens
        if k >= 0 and newline_tokens[k] >= token:
            end_token, end_char = int(newline_tokens[k]) + 1, newline_chars[k] + 1
            pieces.append(text[char:end_char])
        else:  # the line starting here is longer than a piece
            k = int(np.searchsorted(newline_tokens, token))
            end_token, end_char = (
                (int(newline_tokens[k]) + 1, newline_chars[k] + 1) if k < len(newline_chars) else (len(ids), len(text))
            )
            pieces += split_document(text[char:end_char], end_token - token, max_tokens)
        token, char = end_token, end_char
    if char < len(text):
        pieces.append(text[char:])
    return pieces


@dataclass
class Sample:
    """Token ids to pack. A FIM sample carries `plain`, its left-to-right version, for when it cannot stay whole."""

    ids: list[int]
    plain: list[int] | None = None


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

    def samples(self, doc: int, epoch: int, fim_rate: float = 0.0, spm_rate: float = 0.5) -> Iterator[Sample]:
        """The samples of document `doc`; its FIM draws come from (seed, epoch, doc)."""
        rng = np.random.default_rng((self.seed, epoch, doc))
        for text, plain in self.pieces(doc):
            split = draw_split(text, rng, fim_rate, spm_rate) if fim_rate > 0 else None
            if split is None:
                yield Sample(plain)
            elif len(ids := fim_sample(self.tokenizer, split)) <= self.seq_len + 1:
                yield Sample(ids, plain)
            else:  # a piece of one very long line: it could never be whole
                yield Sample(plain)

    def pieces(self, doc: int) -> list[tuple[str, list[int]]]:
        """(text, `<s> text </s>` ids) of the pieces of a document, each at most `piece_tokens` + 2 ids long,
        unless it is a single line. A piece found longer than the estimate is split again, so FIM samples fit."""
        tok, row, limit = self.tokenizer, self.documents[doc], piece_tokens(self.seq_len)
        if row["num_tokens"] <= limit:
            return [(row["text"], [tok.bos_id, *row["input_ids"], tok.eos_id])]
        pieces, todo = [], split_lines(row["text"], row["input_ids"], self.newline_id, limit)[::-1]
        while todo:
            text = todo.pop()
            ids = tok.encode(text, bos=True, eos=True)
            parts = split_document(text, len(ids) - 2, limit) if len(ids) > limit + 2 else [text]
            if len(parts) > 1:
                todo.extend(parts[::-1])
            else:
                pieces.append((text, ids))
        return pieces


class TrainStream(IterableDataset):
    """The infinite training stream of one rank; see the module doc. `start_batch` resumes after that many batches.

    DataLoader workers take batches in turn (batch k comes from worker k % workers), so on resume worker w plays
    the shard of the worker that was due next, and each skips the contexts its shard had already delivered.
    """

    def __init__(
        self,
        reader: DocumentReader,
        docs: Sequence[int],
        *,
        fim_rate: float = 0.0,
        spm_rate: float = 0.5,
        fim_level: str = "document",
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
        start_batch: int = 0,
    ):
        self.reader, self.docs = reader, np.asarray(docs)
        self.fim_rate, self.spm_rate, self.fim_level = fim_rate, spm_rate, fim_level
        self.rank, self.world_size, self.batch_size, self.start_batch = rank, world_size, batch_size, start_batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        if len(self.docs) < self.world_size * workers:  # a shard without documents would never yield
            raise DataError(
                f"{len(self.docs)} training documents cannot feed {self.world_size} ranks x {workers} dataloader "
                "workers; use fewer workers or a larger corpus"
            )
        role = (worker + self.start_batch) % workers
        delivered = self.start_batch // workers + (role < self.start_batch % workers)
        contexts = self.contexts(self.rank * workers + role, self.world_size * workers)
        for context in itertools.islice(contexts, delivered * self.batch_size, None):
            yield to_example(context)

    def contexts(self, shard: int, num_shards: int) -> Iterator[list[int]]:
        size, seed = self.reader.seq_len + 1, self.reader.seed
        if self.fim_level == "document":
            yield from pack(self.samples(shard, num_shards, self.fim_rate), size)
            return
        for i, context in enumerate(pack(self.samples(shard, num_shards, 0.0), size)):
            if self.fim_rate > 0:
                rng = np.random.default_rng((seed, shard, num_shards, i))
                context = apply_context_fim(context, self.reader.tokenizer, rng, self.fim_rate, self.spm_rate)
            yield context

    def samples(self, shard: int, num_shards: int, fim_rate: float) -> Iterator[Sample]:
        for epoch in itertools.count():
            for doc in self.shard_documents(epoch, shard, num_shards):
                yield from self.reader.samples(int(doc), epoch, fim_rate, self.spm_rate)

    def shard_documents(self, epoch: int, shard: int, num_shards: int) -> np.ndarray:
        """Document indices that shard `shard` of `num_shards` visits in `epoch`, in order."""
        order = np.random.default_rng((self.reader.seed, epoch)).permutation(len(self.docs))
        return self.docs[order[shard::num_shards]]


def validation_contexts(reader: DocumentReader, docs: Sequence[int]) -> torch.Tensor:
    """(N, seq_len + 1) left-to-right contexts of `docs` in the given order; the last partial context is dropped."""
    samples = (s for doc in docs for s in reader.samples(int(doc), epoch=0))  # no FIM: no draw matters
    contexts = list(pack(samples, reader.seq_len + 1))
    return torch.tensor(contexts, dtype=torch.long).reshape(len(contexts), reader.seq_len + 1)


def to_example(context: Sequence[int]) -> dict[str, torch.Tensor]:
    """Inputs and next-token labels of a context."""
    ids = torch.as_tensor(context, dtype=torch.long)
    return {"input_ids": ids[:-1], "labels": ids[1:]}
