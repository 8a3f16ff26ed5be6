"""Callbacks that make a run trustworthy: throughput/MFU, a non-finite-loss stop, a SIGTERM checkpoint, RNG
states in checkpoints, run metadata (provenance, seed, command, resume point), and the final export of the weights."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ThroughputMonitor
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_codellama.checkpoint import OUR_WEIGHTS, load_model, save_model
from lit_codellama.errors import LitCodeLlamaError
from lit_codellama.files import atomic_path
from lit_codellama.provenance import provenance


class NonFiniteLossError(LitCodeLlamaError, RuntimeError):
    """The training loss became NaN or infinite."""


def measure_matmul_flops(dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 0.5) -> float:
    """Achieved FLOP/s of a square matmul on the CPU: the ceiling MFU is measured against where no datasheet applies."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    iterations, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        a @ b
        iterations += 1
    return 2 * n**3 * iterations / elapsed


class TokenThroughputMonitor(ThroughputMonitor):
    """Lightning's `ThroughputMonitor` for `{"input_ids": (B, T)}` batches: tokens/s, FLOP/s and MFU.

    Logged as `train|validate/[device/]items_per_sec` (items are tokens), `.../flops_per_sec` and `.../mfu`.
    MFU needs the hardware's peak: Lightning knows CUDA datasheets; elsewhere `peak_flops` sets it, or, on CPU,
    a matmul measured at setup stands in for it. Tokens/s also goes to the progress bar.
    """

    def __init__(self, peak_flops: float | None = None, window_size: int = 20) -> None:
        super().__init__(
            batch_size_fn=lambda batch: batch["input_ids"].size(0),
            length_fn=lambda batch: batch["input_ids"].numel(),
            window_size=window_size,
        )
        self.peak_flops = peak_flops

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        peak = self.peak_flops
        if peak is None and self.available_flops is None and trainer.strategy.root_device.type == "cpu":
            peak = measure_matmul_flops()
        if peak is not None:
            self.available_flops = int(peak)
            for throughput in self._throughputs.values():
                throughput.available_flops = self.available_flops

    @rank_zero_only  # like the parent's: only rank 0 measures
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        per_device = self._throughputs[trainer.state.stage].compute().get("device/items_per_sec")  # items: tokens
        if per_device is not None:
            pl_module.log("tok/s", per_device * trainer.world_size, prog_bar=True, logger=False, rank_zero_only=True)


class StopOnNonFiniteLoss(L.Callback):
    """Raise before the backward pass of a NaN/inf loss, so neither the weights nor any checkpoint see it."""

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if not trainer.strategy.reduce_boolean_decision(not torch.isfinite(loss).all().item(), all=False):
            return
        last = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none saved yet"
        raise NonFiniteLossError(
            f"training loss is {loss.item()} (on at least one rank) at step {trainer.global_step}; the run stopped "
            f"before this step's update. Last good checkpoint: {last}. Lower model.lr, raise warmup_steps, or "
            "check the data, then resume with `--ckpt_path last`."
        )


SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class SigtermCheckpoint(L.Callback):
    """Save `<dirpath>/last.ckpt` when the job is told to stop (SLURM preemption, `kill`), then exit with status
    143, not Lightning's 0, so that a scheduler or script sees an unfinished run; `--ckpt_path last` resumes.

    Lightning turns SIGTERM into `SIGTERMException` (a `SystemExit`) at the end of the current step, so the state is
    consistent. Other exceptions (a NaN loss, a bug) save nothing, so the newest checkpoint stays the last good one.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.path = Path(dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.strategy.remove_checkpoint(self.path)  # may link to a periodic checkpoint (save_last="link")
            trainer.save_checkpoint(self.path)
            exception.code = SIGTERM_EXIT_STATUS  # Lightning re-raises this very exception
            if trainer.is_global_zero:
                print(f"stopped by SIGTERM after step {trainer.global_step}; saved {self.path}", file=sys.stderr)


class RNGState(L.Callback):
    """Saves the random number generators' states (Python, NumPy, torch, CUDA) in checkpoints and restores them on
    resume, which Lightning does not do by itself. Under sharded strategies the states saved are rank 0's.
    Plain lists and tensors only, so checkpoints still load with `torch.load(weights_only=True)`."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        state = {"python": random.getstate(), "numpy": (kind, keys.tolist(), position, has_gauss, gauss),
                 "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        kind, keys, position, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class RunMetadata(L.Callback):
    """Writes `run.json` into the run directory: seed, command line, world size, the checkpoint a resumed run
    started from, and `provenance()` (code version, libraries, machine, precision, corpus)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not at setup: Lightning picks the checkpoint to resume from (`trainer.ckpt_path`) after the setup hooks.
        log_dir = trainer.log_dir  # a collective call: every rank must make it
        if not trainer.is_global_zero or log_dir is None:
            return
        corpus = getattr(trainer.datamodule, "corpus", None)
        metadata = {
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seed": int(os.environ["PL_GLOBAL_SEED"]) if "PL_GLOBAL_SEED" in os.environ else None,
            "command": sys.argv,
            "resumed_from": None if trainer.ckpt_path is None else str(Path(trainer.ckpt_path).resolve()),
            "resumed_at_step": trainer.global_step if trainer.ckpt_path else None,
            "world_size": trainer.world_size,
            "num_nodes": trainer.num_nodes,
            "strategy": type(trainer.strategy).__name__,
            **provenance(precision=trainer.precision, corpus=None if corpus is None else corpus.path),
            "precision_choice": getattr(trainer, "precision_choice", None),  # set by CodeLlamaTrainer
        }
        path = Path(log_dir) / "run.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metadata, indent=2) + "\n")


class StepProgress(L.Callback):
    """Advances a progress bar (e.g. a study run's, which goes on through evaluation) by optimizer steps, showing
    the training loss; a resumed run starts at its step."""

    def __init__(self, bar) -> None:
        self.bar = bar

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.bar.total = (self.bar.total or 0) + max(trainer.max_steps, 0)
        self.bar.update(trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            self.bar.set_postfix(loss=f"{float(loss):.3g}", refresh=False)
        self.bar.update(trainer.global_step - self.bar.n)


class ExportModel(L.Callback):
    """At the end of training, save a full checkpoint (`checkpoint`) and the weights alone (`model_dir`:
    `model_config.yaml`, `model.safetensors` and the data's `tokenizer.model`), which evaluation and the next
    stage's `init_checkpoint` read.

    Going through a full checkpoint works for every strategy: a ZeRO-3 directory is consolidated to fp32 first.
    """

    def __init__(self, model_dir: str | Path, checkpoint: str | Path) -> None:
        self.model_dir, self.checkpoint = Path(model_dir), Path(checkpoint)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.checkpoint)
        if trainer.is_global_zero:
            self._export(self.checkpoint, trainer)
        trainer.strategy.barrier("export-model")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Resuming a run that had already finished trains nothing and skips `on_train_end`: if its export was cut
        # short (the job killed while writing it), export the checkpoint it resumed from, which holds the end state.
        if trainer.is_global_zero and trainer.ckpt_path and not (self.model_dir / OUR_WEIGHTS).is_file():
            self._export(Path(trainer.ckpt_path), trainer)

    def _export(self, checkpoint: Path, trainer: L.Trainer) -> None:
        model = load_model(checkpoint)
        tokenizer = getattr(trainer.datamodule, "tokenizer", None)
        if tokenizer is not None:  # before the weights, whose presence marks the export complete
            self.model_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.model_dir / "tokenizer.model") as tmp:
                shutil.copyfile(tokenizer.path, tmp)
        save_model(model, self.model_dir)
