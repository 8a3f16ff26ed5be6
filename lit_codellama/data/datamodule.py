"""`CodeDataModule`: a built corpus as packed, FIM-transformed, resumable training batches.

Batches are `{"input_ids": LongTensor(B, T), "labels": LongTensor(B, T)}` with labels the next tokens. Training
data is an infinite stream (bound the run with `max_steps`); validation is a fixed set of left-to-right contexts,
identical for every FIM setting and seed, so the arms of an ablation are scored on the same tokens. Documents go
to validation by a hash of their content, so the split is stable however the corpus was built or ordered.

Continued training (long-context fine-tuning and its control, `stage="continued"`) reads a share of the training
documents that pretraining never reads, chosen by another part of the same hash: disjoint whatever either stage's
length, seed or budget, unlike an offset into one stream. Each run caps any one document's share of its tokens
(`max_document_share` of `token_budget`, by default max_steps x batch x seq_len x accumulation x devices).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from torch.utils.data import DataLoader, Dataset, IterableDataset

from lit_codellama.data.corpus import Corpus, build_corpus, default_corpus_dir, load_corpus
from lit_codellama.data.packing import DocumentReader, TrainStream, to_example, validation_contexts
from lit_codellama.data.recipe import DataError, load_recipe
from lit_codellama.data.split import CONTINUED, VALIDATION, hash_unit
from lit_codellama.errors import ConfigError
from lit_codellama.fim import FIMConfig
from lit_codellama.tokenizer import Tokenizer


class CodeDataModule(L.LightningDataModule):
    """Packed training and validation batches of a corpus built by `lit_codellama.data.build_corpus`.

    Args:
        data_dir: a built corpus dir; with `recipe`, where that recipe is built (default: a cache dir per recipe).
        recipe: build this recipe (a name in configs/data/, e.g. "default", or a YAML path) on first use.
        seq_len: tokens per training sequence.
        batch_size: sequences per batch and per device.
        fim_rate: probability that a document (piece) becomes a FIM sample; 0 trains left-to-right only.
        spm_rate: share of FIM samples in SPM rather than PSM order.
        fim_level: "document" (the paper: before packing, never cut) or "context" (BigCode: after packing).
            The three travel on as one `fim.FIMConfig`, `self.fim`.
        seed: drives the order of documents per epoch and the FIM draws.
        num_workers: DataLoader worker processes.
        val_fraction: share of documents (by content hash) held out for validation.
        min_doc_tokens: train only on documents at least this long (long-context fine-tuning prefers long files).
        stage: "pretraining" or "continued": which of the two disjoint parts of the training documents to read.
        continued_fraction: share of training documents (by content hash) reserved for the continued stage.
        contiguous: pack whole documents cut across contexts instead of context-sized pieces, so that a context
            holds up to `seq_len` tokens of one document (long-context training; needs fim_rate=0).
        max_document_share: most of a run's training tokens any one document may be.
        token_budget: a run's training tokens, for that cap; default: from the Trainer (max_steps x batch_size x
            seq_len x accumulate_grad_batches x world size); None without max_steps (no cap).
        num_proc: processes for building the corpus (default: all cores).

    The DataModule's `state_dict` (saved in Lightning checkpoints) holds the number of training batches consumed,
    counted in `on_before_batch_transfer`, so a resumed run continues with exactly the next batch. (A LightningModule
    that overrides `on_before_batch_transfer` takes the hook over; it must then call this one.)
    """

    def __init__(
        self,
        data_dir: str | None = None,
        recipe: str | None = None,
        seq_len: int = 256,
        batch_size: int = 8,
        fim_rate: float = 0.0,
        spm_rate: float = 0.5,
        fim_level: Literal["document", "context"] = "document",
        seed: int = 1234,
        num_workers: int = 0,
        val_fraction: float = 0.02,
        min_doc_tokens: int = 0,
        stage: Literal["pretraining", "continued"] = "pretraining",
        continued_fraction: float = 0.2,
        contiguous: bool = False,
        max_document_share: float = 0.01,
        token_budget: int | None = None,
        num_proc: int | None = None,
    ):
        super().__init__()
        self.fim = FIMConfig(fim_rate, spm_rate, fim_level)  # checks its three values
        checks = {
            "give data_dir (a built corpus) or recipe (e.g. 'default')": data_dir is not None or recipe is not None,
            "seq_len must be >= 16": seq_len >= 16,
            "batch_size must be >= 1": batch_size >= 1,
            "val_fraction must be in [0, 1)": 0 <= val_fraction < 1,
            "num_workers must be >= 0": num_workers >= 0,
            "stage must be 'pretraining' or 'continued'": stage in ("pretraining", "continued"),
            "continued_fraction must be in [0, 1)": 0 <= continued_fraction < 1,
            "contiguous packing cuts documents across contexts: it needs fim_rate=0": not (contiguous and fim_rate),
            "max_document_share must be in (0, 1]": 0 < max_document_share <= 1,
            "token_budget must be >= 1": token_budget is None or token_budget >= 1,
        }
        problems = [message for message, ok in checks.items() if not ok]
        if problems:
            raise ConfigError("CodeDataModule: " + "; ".join(problems))
        self.save_hyperparameters()
        self.data_dir, self.recipe = data_dir, recipe
        self.seq_len, self.batch_size, self.num_workers = seq_len, batch_size, num_workers
        self.seed = seed
        self.val_fraction, self.min_doc_tokens, self.num_proc = val_fraction, min_doc_tokens, num_proc
        self.stage, self.continued_fraction, self.contiguous = stage, continued_fraction, contiguous
        self.max_document_share, self.token_budget = max_document_share, token_budget
        self.batches_consumed = 0
        self._loaded_state: dict[str, Any] | None = None

    # -- corpus ---------------------------------------------------------------------------------------------------

    @cached_property
    def corpus(self) -> Corpus:
        """The corpus, built from `recipe` first if needed (a cache hit when it was built before)."""
        if self.recipe is None:
            return load_corpus(self.data_dir)
        recipe = load_recipe(self.recipe)
        return build_corpus(recipe, self.data_dir or default_corpus_dir(recipe), self.num_proc)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.corpus.tokenizer

    def prepare_data(self) -> None:
        self.corpus  # noqa: B018  (builds on first use; Lightning calls this on one process per node)

    def setup(self, stage: str | None = None) -> None:
        """Split the corpus: `_train_docs` and `_val_docs` (in validation order) index `corpus.documents`."""
        if hasattr(self, "_train_docs"):
            return
        docs = self.corpus.documents
        sha, lengths = docs["sha256"], docs["num_tokens"]
        val = [i for i, h in enumerate(sha) if hash_unit(h, VALIDATION) < self.val_fraction]
        held_out, continued = set(val), self.stage == "continued"
        self._train_docs = [
            i
            for i, (h, n) in enumerate(zip(sha, lengths))
            if i not in held_out and (hash_unit(h, CONTINUED) < self.continued_fraction) == continued
            and n >= self.min_doc_tokens
        ]
        if not self._train_docs:
            raise DataError(
                f"corpus {self.corpus.path} has no training documents with val_fraction={self.val_fraction}, "
                f"stage={self.stage!r} (continued_fraction={self.continued_fraction}) and "
                f"min_doc_tokens={self.min_doc_tokens} (it has {len(sha)} documents); change them or build a larger "
                "corpus"
            )
        if self.fim.fim_rate > 0 and not self.tokenizer.has_infilling:
            raise ConfigError(
                f"CodeDataModule: fim_rate={self.fim.fim_rate} but the tokenizer of {self.corpus.path} has no "
                "infilling pieces; use fim_rate=0 or a corpus whose tokenizer has them"
            )
        self._val_docs = sorted(val, key=lambda i: sha[i])  # an order that does not depend on the build
        self._reader = DocumentReader(self.corpus.path, self.seq_len, self.seed)
        self._val = validation_contexts(self._reader, self._val_docs) if val else torch.empty(0, self.seq_len + 1)
        if self.val_fraction > 0 and len(self._val) == 0:
            raise DataError(
                f"corpus {self.corpus.path}: its {len(val)} validation documents (val_fraction={self.val_fraction}) "
                f"do not fill one sequence of {self.seq_len + 1} tokens; raise val_fraction or lower seq_len"
            )

    def val_documents(self, min_tokens: int = 0, limit: int | None = None) -> list[str]:
        """Texts of the validation documents with at least `min_tokens` tokens, in the fixed validation order
        (the same for every FIM setting and seed), at most `limit` of them."""
        self.setup()
        docs = self.corpus.documents
        long_enough = (i for i in self._val_docs if docs[i]["num_tokens"] >= min_tokens)
        return [docs[i]["text"] for i in itertools.islice(long_enough, limit)]

    # -- loaders --------------------------------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        return self._training_loader(self.train_stream)

    def _training_loader(self, stream_of: Callable[[int, int], IterableDataset]) -> DataLoader:
        """Batches of `stream_of(rank, world_size)`, once a resumed run's layout and the Trainer's bound are checked."""
        rank, world_size = self._rank_and_world_size()
        self._check_resumable(world_size)
        require_bounded_run(self.trainer, type(self).__name__)
        return DataLoader(stream_of(rank, world_size), batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_stream(self, rank: int = 0, world_size: int = 1) -> TrainStream:
        """The training stream of rank `rank` of `world_size` (resuming after `batches_consumed` batches)."""
        self.setup()
        self._world_size = world_size
        self._stream = TrainStream(
            self._reader,
            self._train_docs,
            fim=self.fim,
            contiguous=self.contiguous,
            token_budget=self.run_token_budget(world_size),
            max_document_share=self.max_document_share,
            rank=rank,
            world_size=world_size,
            batch_size=self.batch_size,
            start_batch=self.batches_consumed,
        )
        return self._stream

    def run_token_budget(self, world_size: int = 1) -> int | None:
        """The run's training tokens: `token_budget`, or what the Trainer's max_steps implies (None without)."""
        if self.token_budget is not None or self.trainer is None:
            return self.token_budget
        return self.tokens_of(self.trainer.max_steps, self.trainer.accumulate_grad_batches, world_size)

    def tokens_of(self, max_steps: int | None, accumulate: int, world_size: int) -> int | None:
        """Training tokens of a run of `max_steps` optimizer steps (None for -1: unbounded)."""
        return None if max_steps in (None, -1) else max_steps * accumulate * self.batch_size * self.seq_len * world_size

    @property
    def largest_document_share(self) -> float | None:
        """The most of the run's training tokens any one document can be (see `packing.plan_pieces`); None for an
        uncapped run."""
        stream = getattr(self, "_stream", None) or self.train_stream()
        return stream.plan.largest_document_share

    def val_dataloader(self) -> DataLoader:
        return DataLoader(Contexts(self._val, to_example), batch_size=self.batch_size, num_workers=self.num_workers)

    def _rank_and_world_size(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    # -- resuming -------------------------------------------------------------------------------------------------

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            self.batches_consumed += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"batches_consumed": self.batches_consumed, **self._layout(getattr(self, "_world_size", None))}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches_consumed = state_dict["batches_consumed"]
        self._loaded_state = state_dict

    def _layout(self, world_size: int | None) -> dict[str, Any]:
        """What must not change for batch n of a resumed run to be batch n of the original one."""
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "world_size": world_size,
            "num_workers": self.num_workers,
            **asdict(self.fim),
            "stage": self.stage,
            "continued_fraction": self.continued_fraction,
            "min_doc_tokens": self.min_doc_tokens,
            "contiguous": self.contiguous,
            "max_document_share": self.max_document_share,
            "token_budget": self.run_token_budget(world_size or 1),
            "corpus": self.corpus.report["fingerprint"],
        }

    def _check_resumable(self, world_size: int) -> None:
        if self._loaded_state is None:
            return
        saved, now = self._loaded_state, self._layout(world_size)
        changed = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
        if changed:
            raise ConfigError(
                "CodeDataModule: cannot resume the data stream exactly, these settings changed since the checkpoint "
                f"(saved, now): {changed}; resume with the saved settings"
            )


def require_bounded_run(trainer: L.Trainer | None, who: str) -> None:
    """Refuse a Trainer that would read an infinite training stream without end (neither max_steps nor max_time,
    which Lightning turns into a `Timer`)."""
    if trainer is not None and trainer.max_steps == -1 and not any(isinstance(c, Timer) for c in trainer.callbacks):
        raise ConfigError(f"{who} streams training data without end; set Trainer(max_steps=...)")


def planned_document_share(config: dict[str, Any]) -> float | None:
    """The largest document share (see `CodeDataModule.largest_document_share`) of the training run `config` (the
    `fit` command's layout: `data` and `trainer` sections), without training: what the study runner records.
    None when the run's corpus is not built (nothing trained on it) or the run has no budget."""
    dm, trainer = _from_config(config.get("data", {})), config.get("trainer", {})
    if dm is None:
        return None
    if dm.token_budget is None:
        devices = trainer.get("devices", 1)
        dm.token_budget = dm.tokens_of(trainer.get("max_steps"), trainer.get("accumulate_grad_batches") or 1,
                                       devices if isinstance(devices, int) else 1)
    return dm.largest_document_share


def _from_config(data: dict[str, Any]) -> CodeDataModule | None:
    """A `CodeDataModule` of a `data` section, plain or `{class_path, init_args}` (the corpus settings only), or None
    when its corpus is not built."""
    data = data.get("init_args", data)
    params = inspect.signature(CodeDataModule).parameters
    dm = CodeDataModule(**{k: v for k, v in data.items() if k in params})
    recipe = None if dm.recipe is None else load_recipe(dm.recipe)
    where = Path(dm.data_dir) if dm.data_dir or recipe is None else default_corpus_dir(recipe)
    if not (where / "corpus.json").is_file():
        return None
    if recipe is not None and load_corpus(where).report.get("fingerprint") != recipe.fingerprint():
        return None
    return dm


class Contexts(Dataset):
    """Fixed validation contexts (a tensor, one row each) as examples, made by `example` from each row."""

    def __init__(self, contexts: torch.Tensor, example: Callable[[torch.Tensor], dict[str, torch.Tensor]]):
        self.contexts, self.example = contexts, example

    def __len__(self) -> int:
        return len(self.contexts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.example(self.contexts[i])
