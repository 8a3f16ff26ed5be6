"""`InstructDataModule`: instruction dialogs packed into training contexts, with rehearsal of the code corpus.

Batches have `CodeDataModule`'s format, `{"input_ids": (B, T), "labels": (B, T)}`, with labels IGNORE_INDEX
where the next token belongs to a prompt (BOS, system message, user turn), so the loss is on answers only.

Dialogs are concatenated and cut into contexts of `seq_len + 1` tokens, as for Llama 2's supervised fine-tuning
(a long dialog continues into the next context). Each training context comes from one source, drawn with the
rehearsal weights: by default 6% code and 2% natural language from the corpus (§2.5), packed exactly as
`CodeDataModule` packs it, and 92% instruction dialogs. Validation is the held-out dialogs only (by content hash).
The stream is infinite, deterministic per seed, sharded across ranks and workers, and resumes exactly.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from lit_codellama.chat import encode_dialog
from lit_codellama.data.datamodule import CodeDataModule, Contexts
from lit_codellama.data.packing import ShardedStream, TrainStream
from lit_codellama.data.sources import sha256
from lit_codellama.data.split import hash_unit
from lit_codellama.errors import ConfigError
from lit_codellama.instruct.dataset import InstructSource, load_instruct
from lit_codellama.loss import IGNORE_INDEX
from lit_codellama.tokenizer import Tokenizer

INSTRUCT = "instruct"


class EncodedDialogs:
    """Token ids and labels of many dialogs, flat in two int32 arrays (a Python list per dialog would not scale)."""

    def __init__(self, encoded: Sequence[tuple[list[int], list[int]]]):
        lengths = np.array([len(ids) for ids, _ in encoded], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.ids = np.fromiter(itertools.chain.from_iterable(ids for ids, _ in encoded), np.int32, self.offsets[-1])
        self.labels = np.fromiter(itertools.chain.from_iterable(lab for _, lab in encoded), np.int32, self.offsets[-1])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[i], self.offsets[i + 1]
        return self.ids[start:end], self.labels[start:end]


def pack_dialogs(dialogs: EncodedDialogs, order: Iterator[int], size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Contexts of `size` (ids, labels) cut from the dialogs concatenated in `order`; contexts without a single
    answer token are skipped (a batch of them would have no loss to average)."""
    ids, labels = np.empty(0, np.int32), np.empty(0, np.int32)
    for i in order:
        ids, labels = np.concatenate([ids, dialogs[i][0]]), np.concatenate([labels, dialogs[i][1]])
        while len(ids) >= size:
            if (labels[1:size] != IGNORE_INDEX).any():
                yield ids[:size], labels[:size]
            ids, labels = ids[size:], labels[size:]


def example(ids: np.ndarray, labels: np.ndarray) -> dict[str, torch.Tensor]:
    """Inputs and next-token labels of a context (labels shifted like `packing.to_example`)."""
    return {"input_ids": torch.as_tensor(ids[:-1], dtype=torch.long), "labels": torch.as_tensor(labels[1:], dtype=torch.long)}


def labeled_example(context: Sequence) -> dict[str, torch.Tensor]:
    """`example` of an (ids, labels) pair."""
    return example(*context)


class InstructStream(ShardedStream):
    """The infinite training stream of one rank: each context drawn from the instruction dialogs or a rehearsal
    source with the given weights; sharded and resumed as every `packing.ShardedStream`."""

    def __init__(self, dialogs: EncodedDialogs, rehearsal: dict[str, TrainStream], weights: dict[str, float],
                 seq_len: int, seed: int, rank: int = 0, world_size: int = 1, batch_size: int = 1, start_batch: int = 0):
        super().__init__(rank, world_size, batch_size, start_batch)
        self.dialogs, self.rehearsal, self.weights = dialogs, rehearsal, weights
        self.seq_len, self.seed = seq_len, seed

    def example(self, context: tuple[np.ndarray, np.ndarray]) -> dict[str, torch.Tensor]:
        return labeled_example(context)

    def contexts(self, shard: int, num_shards: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        streams = {INSTRUCT: pack_dialogs(self.dialogs, self.dialog_order(shard, num_shards), self.seq_len + 1)}
        for name, stream in self.rehearsal.items():
            streams[name] = ((np.asarray(c), np.asarray(c)) for c in stream.contexts(shard, num_shards))
        names = list(self.weights)
        p = np.array([self.weights[n] for n in names])
        rng = np.random.default_rng((self.seed, shard, num_shards))
        while True:
            yield next(streams[names[rng.choice(len(names), p=p)]])

    def dialog_order(self, shard: int, num_shards: int) -> Iterator[int]:
        """Dialog indices for one shard: a fresh permutation per epoch, every `num_shards`-th of it."""
        for epoch in itertools.count():
            order = np.random.default_rng((self.seed, epoch)).permutation(len(self.dialogs))
            yield from order[shard::num_shards].tolist()


class InstructDataModule(CodeDataModule):
    """Instruction fine-tuning data: dialogs from `datasets`, rehearsal contexts from the code corpus.

    Args:
        datasets: instruction data, each a local JSONL `path`, a `hub` dataset or a `builtin` set (see
            `lit_codellama.instruct.dataset` for the schema); all their dialogs are trained on together.
        rehearsal: corpus source name -> share of training contexts taken from that source; the rest are
            dialogs. `{}` trains on dialogs only (the corpus then only provides the tokenizer).
        dialog_val_fraction: share of dialogs (by content hash) held out for validation. The corpus keeps its own
            split (`val_fraction`): its validation documents are never rehearsed.
        **kwargs: `CodeDataModule`'s: the corpus (`data_dir` / `recipe`, whose tokenizer must be the model's),
            `seq_len`, `batch_size`, `seed`, `num_workers`, and `fim_rate` etc. for the rehearsal contexts.
    """

    def __init__(
        self,
        datasets: list[InstructSource],
        rehearsal: dict[str, float] | None = None,
        dialog_val_fraction: float = 0.02,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.rehearsal = {"code": 0.06, "nl": 0.02} if rehearsal is None else dict(rehearsal)
        total = sum(self.rehearsal.values())
        problems = [f"rehearsal[{name!r}] must be in [0, 1)" for name, w in self.rehearsal.items() if not 0 <= w < 1]
        problems += [f"rehearsal shares sum to {total}; they must leave room for dialogs"] if total >= 1 else []
        problems += ["datasets must name at least one instruction source"] if not datasets else []
        problems += ["dialog_val_fraction must be in [0, 1)"] if not 0 <= dialog_val_fraction < 1 else []
        if problems:
            raise ConfigError("InstructDataModule: " + "; ".join(problems))
        self.sources = [s if isinstance(s, InstructSource) else InstructSource(**s) for s in datasets]
        self.dialog_val_fraction = dialog_val_fraction

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "_dialogs"):
            return
        super().setup(stage)
        missing = sorted(set(self.rehearsal) - set(self.corpus.report["mix"]["target"]))
        if missing:
            raise ConfigError(f"InstructDataModule: rehearsal sources {missing} are not sources of the corpus "
                              f"{self.corpus.path} (it has {sorted(self.corpus.report['mix']['target'])})")
        sources = self.corpus.documents["source"]
        self._rehearsal_docs = {
            name: [i for i in self._train_docs if sources[i] == name] for name, weight in self.rehearsal.items() if weight > 0
        }
        empty = [name for name, docs in self._rehearsal_docs.items() if not docs]
        if empty:
            raise ConfigError(f"InstructDataModule: the corpus {self.corpus.path} has no training documents of the "
                              f"rehearsal sources {empty}; give them weight 0 or use a corpus that has them")
        train, val = split_dialogs([d for s in self.sources for d in load_instruct(s)], self.dialog_val_fraction)
        if not train:
            raise ConfigError(f"InstructDataModule: no training dialogs are left with dialog_val_fraction={self.dialog_val_fraction}")
        self._dialogs = EncodedDialogs([encode_dialog(self.tokenizer, d) for d in train])
        val_dialogs = EncodedDialogs([encode_dialog(self.tokenizer, d) for d in val])
        self._val_contexts = validation_contexts(val_dialogs, self.seq_len, self.tokenizer)

    def train_dataloader(self) -> DataLoader:
        return self._training_loader(self.instruct_stream)

    def instruct_stream(self, rank: int = 0, world_size: int = 1) -> InstructStream:
        """The training stream of rank `rank` of `world_size` (resuming after `batches_consumed` batches)."""
        rehearsal = {name: TrainStream(self._reader, docs, fim=self.fim) for name, docs in self._rehearsal_docs.items()}
        weights = {INSTRUCT: 1 - sum(self.rehearsal.values()), **{n: self.rehearsal[n] for n in rehearsal}}
        self._world_size = world_size
        return InstructStream(self._dialogs, rehearsal, weights, self.seq_len, self.seed, rank, world_size,
                              self.batch_size, self.batches_consumed)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(Contexts(self._val_contexts, labeled_example), batch_size=self.batch_size,
                          num_workers=self.num_workers)

    def _layout(self, world_size: int | None) -> dict[str, Any]:
        instruct = {"sources": [vars(s) for s in self.sources], "rehearsal": self.rehearsal,
                    "dialog_val_fraction": self.dialog_val_fraction}
        return {**super()._layout(world_size), "instruct": instruct}


def split_dialogs(dialogs: list[list[dict[str, str]]], val_fraction: float) -> tuple[list, list]:
    """(train, validation) dialogs; a dialog is held out by a hash of its content, so the split does not depend
    on the order or the other dialogs. Validation is in hash order."""
    hashes = [sha256(json.dumps(d, sort_keys=True)) for d in dialogs]
    held_out = [hash_unit(h) < val_fraction for h in hashes]
    train = [d for d, v in zip(dialogs, held_out) if not v]
    val = [d for _, d in sorted(((h, d) for h, d, v in zip(hashes, dialogs, held_out) if v), key=lambda hd: hd[0])]
    return train, val


def validation_contexts(dialogs: EncodedDialogs, seq_len: int, tok: Tokenizer) -> torch.Tensor:
    """(N, 2, seq_len + 1) ids and labels of the validation dialogs packed in order. Consecutive contexts share
    one token (the last target of one is the first input of the next) and the last is padded with ignored labels,
    so every held-out answer token is scored exactly once."""
    pad = -(len(dialogs.ids) - 1) % seq_len if len(dialogs.ids) else 0
    ids = np.concatenate([dialogs.ids, np.full(pad, tok.pad_id, np.int32)])
    labels = np.concatenate([dialogs.labels, np.full(pad, IGNORE_INDEX, np.int32)])
    if len(ids) <= seq_len:
        return torch.empty(0, 2, seq_len + 1, dtype=torch.long)
    windows = np.lib.stride_tricks.sliding_window_view(np.stack([ids, labels]), seq_len + 1, axis=1)[:, ::seq_len]
    return torch.from_numpy(windows.transpose(1, 0, 2).copy()).long()
