"""Test-only callbacks, importable by class path in the subprocesses the tests launch."""

import json
import os
import signal
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from lit_codellama.data.datamodule import CodeDataModule
from lit_codellama.data.packing import TrainStream


class AtStep(L.Callback):
    """Do `act` when step `step` is about to run."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            self.act(pl_module)

    def act(self, pl_module) -> None:
        raise NotImplementedError


class KillAtStep(AtStep):
    """Crash without warning (SIGKILL) when step `step` is about to run."""

    def act(self, pl_module):
        os.kill(os.getpid(), signal.SIGKILL)


class TerminateAtStep(AtStep):
    """Ask the run to stop (SIGTERM, as SLURM does before preemption) during step `step`."""

    def act(self, pl_module):
        os.kill(os.getpid(), signal.SIGTERM)


class PoisonAtStep(AtStep):
    """Make a weight infinite before step `step`, so its loss is not finite."""

    def act(self, pl_module):
        with torch.no_grad():
            pl_module.model.norm.weight.fill_(float("inf"))


class RecordShards(L.Callback):
    """Write, per rank, how many elements of each parameter the rank holds (ZeRO-3's `ds_tensor`)."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)

    def on_train_start(self, trainer, pl_module):
        shards = {name: [p.ds_tensor.numel(), p.ds_numel] for name, p in pl_module.model.named_parameters()}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"shards-rank{trainer.global_rank}.json").write_text(json.dumps(shards))


class RecordLosses(L.Callback):
    """Write the training loss of every step, averaged over ranks, to `<path>` (rank 0)."""

    def __init__(self, path: str):
        self.path, self.losses = Path(path), []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(trainer.strategy.reduce(outputs["loss"].detach(), reduce_op="mean").item())
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(self.losses))


class _RankSlice(IterableDataset):
    def __init__(self, stream, global_batch_size: int, rank: int, world_size: int):
        self.stream, self.global_batch_size, self.rank = stream, global_batch_size, rank
        self.per_rank = global_batch_size // world_size

    def __iter__(self):
        for i, example in enumerate(self.stream):
            if (i % self.global_batch_size) // self.per_rank == self.rank:
                yield example


class SplitBatches(CodeDataModule):
    """The one-process training stream, each batch of `batch_size` split evenly across the ranks: runs with any
    number of processes see the same global batches, so strategies can be compared step by step."""

    def train_dataloader(self):
        world_size, rank = self.trainer.world_size, self.trainer.global_rank
        stream = TrainStream(self._reader, self._train_docs, fim=self.fim,
                             batch_size=self.batch_size)
        per_rank = _RankSlice(stream, self.batch_size, rank, world_size)
        return DataLoader(per_rank, batch_size=self.batch_size // world_size)
