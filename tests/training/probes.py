"""Test-only callbacks, importable by class path in the subprocesses the tests launch."""

import json
import os
import signal
from pathlib import Path

import lightning as L
import torch


class KillAtStep(L.Callback):
    """Crash without warning (SIGKILL) when step `step` is about to run."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class TerminateAtStep(L.Callback):
    """Ask the run to stop (SIGTERM, as SLURM does before preemption) during step `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class PoisonAtStep(L.Callback):
    """Make a weight infinite before step `step`, so its loss is not finite."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
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
