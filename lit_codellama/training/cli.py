"""`python -m lit_codellama fit --config configs/train/<stage>.yaml` and `train(...)`, its Python twin.

Both build the same LightningCLI, so a study runner and a user at the shell run identical code. Every run
directory (`trainer.default_root_dir`) ends up holding:

    config.yaml      the resolved config (every default filled in)
    run.json         git commit, seed, command line, library versions
    metrics.csv      CSV log; TensorBoard event files next to it; hparams.yaml
    checkpoints/     step=N.ckpt every `checkpoint.every_n_train_steps`, last.ckpt, final.ckpt, sigterm.ckpt
    model/           the final weights (model_config.yaml + model.safetensors)

Resume an interrupted run with `--ckpt_path last` (`train` does so by default).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE, RichProgressBarTheme
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from lit_codellama.data import CodeDataModule
from lit_codellama.training.callbacks import (
    ExportModel,
    RunMetadata,
    SigtermCheckpoint,
    StopOnNonFiniteLoss,
    TokenThroughputMonitor,
)
from lit_codellama.training.loggers import ResumableCSVLogger
from lit_codellama.training.module import CodeLlamaLM


class CodeLlamaCLI(LightningCLI):
    """LightningCLI with this project's run directory layout and always-on callbacks.

    `checkpoint.*` and `throughput.*` configure the checkpointing and throughput callbacks; the rest
    (non-finite-loss stop, SIGTERM checkpoint, run metadata, final export) needs no settings.
    """

    def __init__(self, args: list[str] | None = None, callbacks: Iterable[Callback] = ()) -> None:
        self._extra_callbacks = list(callbacks)
        with warnings.catch_warnings():
            # Passing `args` from Python is this class's purpose; LightningCLI warns when sys.argv is also set.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().__init__(
                CodeLlamaLM,
                CodeDataModule,
                args=args,
                seed_everything_default=1234,
                save_config_kwargs={"overwrite": True},  # resuming rewrites it (with the resume path)
            )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.filename": "step={step}",
                "checkpoint.every_n_train_steps": 1000,
                "checkpoint.save_top_k": -1,
                "checkpoint.save_last": True,
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(TokenThroughputMonitor, "throughput")
        parser.link_arguments(
            "data", "model.vocab_size", compute_fn=lambda data: data.tokenizer.vocab_size, apply_on="instantiate"
        )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self._get(self.config_init, "trainer")
        run_dir = Path(config["default_root_dir"] or ".")
        checkpoint = self._get(self.config_init, "checkpoint")
        checkpoint.dirpath = checkpoint.dirpath or str(run_dir / "checkpoints")
        if config["logger"] is None:
            # name="" and version="" make the loggers write into the run directory itself.
            kwargs["logger"] = [
                TensorBoardLogger(run_dir, name="", version=""),
                ResumableCSVLogger(run_dir, name="", version=""),
            ]
        kwargs["callbacks"] = [
            *(config["callbacks"] or []),
            StopOnNonFiniteLoss(),
            SigtermCheckpoint(checkpoint.dirpath),
            RunMetadata(),
            ExportModel(run_dir / "model", Path(checkpoint.dirpath) / "final.ckpt"),
            *self._extra_callbacks,
        ]
        if config["enable_progress_bar"] is not False and _RICH_AVAILABLE:
            # Rich's default ".3f" shows a 3e-4 learning rate as 0.000.
            kwargs["callbacks"].append(RichProgressBar(theme=RichProgressBarTheme(metrics_format=".3g")))
        return super().instantiate_trainer(**kwargs)


def train(
    config: str | Path | dict[str, Any],
    overrides: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = True,
    callbacks: Iterable[Callback] = (),
) -> Path:
    """Run `fit` as the CLI would; returns the directory of the final weights (`<run_dir>/model`).

    config: a YAML path or the same content as a dict. overrides: dotted keys as on the command line,
    e.g. `{"model.lr": 1e-3, "data.fim_rate": 0.0, "trainer.max_steps": 200}`. resume: continue from the
    run directory's newest checkpoint when there is one. callbacks: extra callbacks (for example evaluation).
    """
    args = ["fit", "--config", str(config) if isinstance(config, (str, Path)) else yaml.safe_dump(config)]
    args += [f"--{key}={json.dumps(value)}" for key, value in (overrides or {}).items()]
    if run_dir is not None:
        args.append(f"--trainer.default_root_dir={run_dir}")
    if resume:
        args.append("--ckpt_path=last")
    cli = CodeLlamaCLI(args, callbacks=callbacks)
    return Path(cli.trainer.default_root_dir) / "model"


def main(argv: list[str] | None = None) -> int:
    CodeLlamaCLI(argv)
    return 0
