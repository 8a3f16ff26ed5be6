"""`python -m lit_codellama fit --config configs/train/<stage>.yaml` and `train(...)`, its Python twin.

Both build the same LightningCLI, so a study runner and a user at the shell run identical code. Every run
directory (`trainer.default_root_dir`) ends up holding:

    config.yaml      the resolved config (every default filled in)
    run.json         the latest launch: seed, command line, world size, the checkpoint it resumed from, and its
                     provenance (git commit and dirty flag, library versions, machine, precision, corpus)
    metrics.csv      CSV log across resumptions; TensorBoard event files and hparams.yaml next to it
    checkpoints/     step=N.ckpt every `checkpoint.every_n_train_steps`, last.ckpt (also written on SIGTERM),
                     final.ckpt
    model/           the final weights: model_config.yaml, model.safetensors, the data's tokenizer.model

Resume an interrupted run with `--ckpt_path last` (`train` does so by default); a run stopped by SIGTERM exits with
status 143 and prints that command. The data section configures a
`CodeDataModule` unless it names another class (a subclass exposing `.tokenizer`), e.g. instruction tuning's
`data: {class_path: lit_codellama.instruct.InstructDataModule, init_args: {...}}`.
"""

from __future__ import annotations

import copy
import difflib
import re
import shlex
import sys
import zipfile
from argparse import ArgumentError
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import (
    _RICH_AVAILABLE,
    RichProgressBarTheme,
)
from lightning.pytorch.cli import LightningCLI
from lightning.fabric.connector import _PRECISION_INPUT
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_codellama.config import load_yaml, set_dotted
from lit_codellama.data import CodeDataModule
from lit_codellama.errors import CheckpointError, ConfigError, LitCodeLlamaError
from lit_codellama.precision import precision_record
from lit_codellama.training.callbacks import (
    ExportModel,
    SIGTERM_EXIT_STATUS,
    RNGState,
    RunMetadata,
    SigtermCheckpoint,
    StopOnNonFiniteLoss,
    TokenThroughputMonitor,
)
from lit_codellama.training.loggers import ResumableCSVLogger
from lit_codellama.training.module import CodeLlamaLM


class CodeLlamaTrainer(Trainer):
    """Lightning's Trainer that also takes `precision: auto` (see `lit_codellama.precision`), resolved before any
    other setup; `precision_choice` records what was asked, what it became and why (run.json holds it)."""

    def __init__(self, *, precision: _PRECISION_INPUT | Literal["auto"] | None = None, **kwargs: Any) -> None:
        accelerator = kwargs.get("accelerator", "auto")
        self.precision_choice = precision_record(precision, accelerator if isinstance(accelerator, str) else None)
        super().__init__(precision=self.precision_choice["resolved"], **kwargs)


class CodeLlamaCLI(LightningCLI):
    """LightningCLI with this project's run directory layout and always-on callbacks.

    `checkpoint.*` and `throughput.*` configure the checkpointing and throughput callbacks; the rest
    (non-finite-loss stop, SIGTERM checkpoint, run metadata, final export) needs no settings.
    """

    def __init__(self, args: list[str] | None = None, callbacks: Iterable[Callback] = ()) -> None:
        self._extra_callbacks = list(callbacks)
        super().__init__(
            CodeLlamaLM,
            CodeDataModule,
            trainer_class=CodeLlamaTrainer,
            subclass_mode_data=True,  # e.g. `data: {class_path: lit_codellama.instruct.InstructDataModule, ...}`
            args=args,
            seed_everything_default=1234,
            save_config_kwargs={"overwrite": True},  # resuming rewrites it (with the resume path)
            parser_kwargs={"exit_on_error": False},  # parse errors become a ConfigError that lists the valid keys
        )

    def parse_arguments(self, parser, args: list[str] | None) -> None:
        # Replaces LightningCLI's, which warns when `args` and sys.argv are both given: passing args is our purpose.
        try:
            self.config = parser.parse_args(args)
        except ArgumentError as error:
            raise ConfigError(self._explain(str(error))) from None

    def instantiate_classes(self) -> None:
        # jsonargparse wraps an error raised by a class's __init__ (a ConfigError naming the field) in its own.
        try:
            super().instantiate_classes()
        except Exception as error:
            cause = error
            while cause is not None and not isinstance(cause, LitCodeLlamaError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise cause from None

    def _explain(self, error: str) -> str:
        """For an unknown key (in YAML or on the command line): the closest valid ones and every valid key of its
        section. Else jsonargparse's text."""
        option = re.search(
            r"ption '([\w.]+)' is not accepted|does not accept option '([\w.]+)'|unrecognized arguments: --([\w.]+)", error
        )
        if option is None:
            return error
        parent = re.search(r'Parser key "([\w.]+)"', error)  # an unknown argument of a class given by class_path
        unknown = ".".join(filter(None, (parent and parent.group(1), next(filter(None, option.groups())))))
        subcommand = next((name for name in self._subcommand_parsers if f"'{name}'" in error), "fit")
        defaults = self._subcommand_parsers[subcommand].get_defaults().keys()
        valid = sorted({key.replace(".init_args.", ".") for key in defaults if not key.endswith(".class_path")})
        section = unknown.rpartition(".")[0]
        in_section = [key for key in valid if key.startswith(f"{section}.")] if section else sorted(
            {key.split(".")[0] for key in valid}
        )
        close = difflib.get_close_matches(unknown, in_section or valid, n=3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        where = f" under {section!r}" if section else ""
        listing = f"Valid keys{where}: {', '.join(in_section)}" if in_section else f"See `fit --help` for {section!r}."
        return f"unknown config key {unknown!r}.{hint} {listing}"

    def add_arguments_to_parser(self, parser) -> None:
        # Without a class_path, `data:` configures a CodeDataModule; stages with other data (instruction tuning)
        # name a subclass. Any of them must expose `.tokenizer`, which sets the model's vocabulary.
        parser.set_defaults({"data": {"class_path": "lit_codellama.data.CodeDataModule"}})
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

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads an explicit --ckpt_path here, before anything is built: a torn file would be a traceback.
        if self.config.get("subcommand"):
            _check_resume_checkpoint(self.config[self.config.subcommand].get("ckpt_path"))
        super()._parse_ckpt_path()

    def before_fit(self) -> None:
        if self._get(self.config, "ckpt_path") == "last":
            _check_resume_checkpoint(Path(self.trainer.checkpoint_callback.dirpath) / "last.ckpt")

    before_validate = before_fit

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        if self.subcommand != "fit":
            self.save_config_callback = None  # `validate` of a checkpoint keeps its training run's config.yaml
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
            RNGState(),
            RunMetadata(),
            ExportModel(run_dir / "model", Path(checkpoint.dirpath) / "final.ckpt"),
            *self._extra_callbacks,
        ]
        if config["enable_progress_bar"] is not False and _RICH_AVAILABLE:
            # Rich's default ".3f" shows a 3e-4 learning rate as 0.000.
            kwargs["callbacks"].append(RichProgressBar(theme=RichProgressBarTheme(metrics_format=".3g")))
        return super().instantiate_trainer(**kwargs)


def _check_resume_checkpoint(path: str | Path | None) -> None:
    """Refuse, in one line, a checkpoint file that is not complete (torch writes a zip whose index comes last)."""
    if path is not None and Path(path).is_file() and not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"--ckpt_path: {path} is truncated or corrupt; resume from an earlier checkpoint "
            f"(--ckpt_path {Path(path).parent}/step=N.ckpt) or move it away"
        )


def train(
    config: str | Path | dict[str, Any],
    overrides: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = True,
    callbacks: Iterable[Callback] = (),
) -> Path:
    """Run `fit` as the CLI would; returns the directory of the final weights (`<run_dir>/model`).

    config: a YAML path or the same content as a dict. overrides: dotted keys replacing values of the config
    (a list replaces the whole list), e.g. `{"model.lr": 1e-3, "data.fim_rate": 0.0, "trainer.max_steps": 200}`.
    resume: continue from the run directory's newest checkpoint when there is one. callbacks: extra callbacks
    (for example evaluation).

    Call it in one process, or in every process a launcher started (torchrun, srun): for `trainer.devices > 1`
    without a launcher, Lightning re-runs the calling script once per extra device.
    """
    config = load_yaml(config) if isinstance(config, (str, Path)) else copy.deepcopy(config)
    for key, value in (overrides or {}).items():
        set_dotted(config, key, value)
    if run_dir is not None:
        set_dotted(config, "trainer.default_root_dir", str(run_dir))
    args = ["fit", "--config", yaml.safe_dump(config)] + (["--ckpt_path=last"] if resume else [])
    cli = CodeLlamaCLI(args, callbacks=callbacks)
    return Path(cli.trainer.default_root_dir) / "model"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        CodeLlamaCLI(argv)
    except SIGTERMException as stop:
        print(f"resume with: {resume_command(argv)}", file=sys.stderr)
        return stop.code or SIGTERM_EXIT_STATUS
    return 0


def resume_command(argv: list[str]) -> str:
    """The command line `argv` (`fit ...`) continued from the newest checkpoint (a later option wins)."""
    resumes = " ".join(argv[-2:]) == "--ckpt_path last" or argv[-1:] == ["--ckpt_path=last"]
    return shlex.join(["python", "-m", "lit_codellama", *argv, *([] if resumes else ["--ckpt_path", "last"])])
