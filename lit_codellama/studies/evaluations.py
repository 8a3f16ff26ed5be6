"""The evaluations a study can ask for, each a thin call into `lit_codellama.evaluation` that returns tidy rows.

A preset lists them by name with their settings, e.g. `{"humaneval": {"max_new_tokens": 128}}`. Every function
takes an `EvalContext` and returns measurements: `{"metric": ..., "value": ..., <coordinates>}`. Losses are nats
per token (bits per character where named), pass@1 and accuracies are fractions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentParser
from tqdm.auto import tqdm

from lit_codellama.checkpoint import load_for_inference
from lit_codellama.data import CodeDataModule
from lit_codellama.errors import ConfigError
from lit_codellama.generate import SamplingConfig
from lit_codellama.loss import LanguageModelingMetrics
from lit_codellama.model import Llama
from lit_codellama.tokenizer import Tokenizer

Measurement = dict[str, Any]
log = logging.getLogger(__name__)


@dataclass
class EvalContext:
    """The weights under evaluation, their tokenizer, and the data they were trained on (for held-out text)."""

    model: Llama
    tok: Tokenizer
    data_config: dict[str, Any]  # the `data` section of the training config
    out_dir: Path  # per-sample outputs go to <out_dir>/<evaluation>/
    train_log: Path | None = None  # Lightning's metrics.csv of the run that trained the weights
    progress: bool = False  # progress bars of generation, sandbox runs and perplexity (on a terminal)

    @cached_property
    def datamodule(self):
        return self.datamodule_with()

    def datamodule_with(self, **overrides: Any):
        """The training run's data module (built as the fit CLI builds it: CodeDataModule, or the subclass its
        `class_path` names), with `overrides` of its arguments, set up for validation."""
        section = self.data_config if "class_path" in self.data_config else {
            "class_path": "lit_codellama.data.CodeDataModule", "init_args": self.data_config}
        section = {**section, "init_args": {**section.get("init_args", {}), **overrides}}
        parser = ArgumentParser(exit_on_error=False)
        parser.add_subclass_arguments(CodeDataModule, "data", required=True)
        datamodule = parser.instantiate_classes(parser.parse_object({"data": section})).data
        datamodule.setup("validate")
        return datamodule

    def held_out_texts(self, min_tokens: int, n: int, exactly: bool = False) -> list[str]:
        """The first `n` validation documents of at least `min_tokens` tokens (the same for every arm and seed);
        `exactly`: fewer than `n` is an error rather than what there is."""
        texts = self.datamodule.val_documents(min_tokens=min_tokens, limit=n)
        if not texts or (exactly and len(texts) < n):
            raise ConfigError(
                f"{len(texts)} validation documents have {min_tokens} tokens, the evaluation needs {n if exactly else 1}; "
                "raise the data's val_fraction (a larger held-out share) or lower the evaluation lengths"
            )
        return texts


def val_loss(ctx: EvalContext, seq_len: int | None = None, max_batches: int | None = None) -> list[Measurement]:
    """Left-to-right validation loss on the held-out split, at the training context or at `seq_len`."""
    datamodule = ctx.datamodule if seq_len is None else ctx.datamodule_with(seq_len=seq_len)
    device = ctx.model.output.weight.device
    metrics = LanguageModelingMetrics().to(device)
    with torch.inference_mode():
        for i, batch in enumerate(datamodule.val_dataloader()):
            if max_batches is not None and i >= max_batches:
                break
            metrics.update(ctx.model(batch["input_ids"].to(device)), batch["labels"].to(device))
    return [{"metric": "val_loss", "value": float(metrics.compute()["loss"])}]


def val_loss_curve(ctx: EvalContext, fractions: Sequence[float] = (0.25, 0.5, 0.75, 1.0)) -> list[Measurement]:
    """The validation loss logged during training at these fractions of its steps (validate every quarter, or as
    often as the fractions need): how a cost in left-to-right loss changes with the tokens seen."""
    import pandas as pd

    if ctx.train_log is None or not ctx.train_log.is_file():
        raise ConfigError(f"no training log {ctx.train_log} to read the validation curve from; did this run train?")
    log = pd.read_csv(ctx.train_log)
    logged = log.dropna(subset=["val/loss"]) if "val/loss" in log else log.iloc[:0]
    if logged.empty:
        raise ConfigError(f"{ctx.train_log} logs no val/loss; set the trainer's val_check_interval")
    last = int(logged["step"].max()) + 1  # logged steps count from 0: the last validation ends the run
    by_step = dict(zip(logged["step"].astype(int) + 1, logged["val/loss"], strict=True))
    rows = []
    for fraction in fractions:
        step = round(fraction * last)
        if step not in by_step:
            raise ConfigError(f"{ctx.train_log}: no validation at step {step} ({fraction:g} of {last}); logged at "
                              f"{sorted(by_step)}: validate every {last // 4} steps")
        rows.append({"metric": "val_loss_curve", "fraction": fraction, "step": step, "value": float(by_step[step])})
    return rows


def humaneval_loss(ctx: EvalContext, limit: int | None = None) -> list[Measurement]:
    from lit_codellama.evaluation import humaneval_solution_loss

    return [{"metric": "humaneval_solution_loss", "value": humaneval_solution_loss(ctx.model, ctx.tok, limit)["loss"]}]


def humaneval(ctx: EvalContext, max_new_tokens: int = 256, limit: int | None = None, batch_size: int = 16):
    """Greedy HumanEval pass@1, every program run in the sandbox."""
    from lit_codellama.evaluation import evaluate_humaneval

    summary = evaluate_humaneval(
        ctx.model,
        ctx.tok,
        sampling=SamplingConfig(max_new_tokens=max_new_tokens),
        limit=limit,
        ks=(1,),
        batch_size=batch_size,
        out_dir=ctx.out_dir / "humaneval",
        progress=ctx.progress,
    )
    return [{"metric": "humaneval_pass@1", "value": summary["pass@1"]}]


def infilling(
    ctx: EvalContext,
    subset: str = "single-line",
    modes: Sequence[str] = ("psm", "spm"),
    every: int = 1,
    max_new_tokens: int = 64,
    batch_size: int = 16,
) -> list[Measurement]:
    """Greedy HumanEval-infilling pass@1 in PSM and SPM; `every`: score every k-th task (a fixed, spread subset)."""
    from lit_codellama.evaluation import infilling_problems
    from lit_codellama.evaluation.tasks import evaluate_problems

    problems = infilling_problems(subset)[::every]
    rows = []
    for mode in modes:
        summary = evaluate_problems(
            f"infilling-{subset}-{mode}",
            problems,
            ctx.model,
            ctx.tok,
            infill_mode=mode,
            sampling=SamplingConfig(max_new_tokens=max_new_tokens),
            batch_size=batch_size,
            ks=(1,),
            out_dir=ctx.out_dir / f"infilling-{subset}-{mode}",
            progress=ctx.progress,
        )
        rows.append({"metric": "infilling_pass@1", "subset": subset, "mode": mode, "value": summary["pass@1"]})
    return rows


def middle_loss(
    ctx: EvalContext, subset: str = "single-line", modes: Sequence[str] = ("psm", "spm"), limit: int | None = None
) -> list[Measurement]:
    """Loss of the canonical middle given prefix and suffix, laid out as in FIM training."""
    from lit_codellama.evaluation import infilling_middle_loss

    return [
        {
            "metric": "middle_loss",
            "subset": subset,
            "mode": mode,
            "value": infilling_middle_loss(ctx.model, ctx.tok, subset, mode, limit)["loss"],
        }
        for mode in modes
    ]


def infilling_likelihood(
    ctx: EvalContext, subset: str = "single-line", modes: Sequence[str] = ("psm", "spm"), limit: int | None = None
) -> list[Measurement]:
    """Teacher-forced infilling on every task of the subset: middle bits per character, token accuracy and suffix
    gain per mode (see `evaluation.likelihood.infilling_likelihood`), and the prefix-only bits per character."""
    from lit_codellama.evaluation.likelihood import infilling_likelihood as score

    summary = score(ctx.model, ctx.tok, subset, modes, limit)
    rows = [{"metric": "prefix_only_bits_per_char", "subset": subset, "value": summary["prefix_only_bits_per_char"]}]
    for mode in modes:
        for key, metric in (("bits_per_char", "middle_bits_per_char"), ("token_accuracy", "middle_token_accuracy"),
                            ("suffix_gain", "suffix_gain")):
            rows.append({"metric": metric, "subset": subset, "mode": mode, "value": summary[mode][key]})
    return rows


def context_gain(
    ctx: EvalContext, window: int, max_length: int, n_documents: int = 32, stride: int | None = None
) -> list[Measurement]:
    """Per position bucket [W, 2W), [2W, 4W), ... of `n_documents` held-out documents of `max_length` tokens:
    loss with all preceding tokens, with at most `window`, and their difference `context_gain` (> 0: the
    longer context helps). Per-position curves go to <out_dir>/context_gain/curve.csv."""
    from lit_codellama.evaluation.likelihood import context_gain as score

    texts = ctx.held_out_texts(max_length, n_documents, exactly=True)
    summary = score(ctx.model, ctx.tok, texts, window, max_length, stride, out_dir=ctx.out_dir / "context_gain")
    return [
        {"metric": metric, "position": bucket["position"], "value": bucket[metric]}
        for bucket in summary["buckets"]
        for metric in ("context_gain", "loss_full", "loss_capped")
    ]


def perplexity(ctx: EvalContext, lengths: Sequence[int], n_documents: int = 8) -> list[Measurement]:
    """Perplexity at each context length, on the same held-out documents (long enough for the longest)."""
    from lit_codellama.evaluation import perplexity_by_context_length

    texts = ctx.held_out_texts(max(lengths), n_documents)
    summary = perplexity_by_context_length(ctx.model, ctx.tok, texts, lengths, out_dir=ctx.out_dir / "perplexity",
                                           progress=ctx.progress)
    return [
        {"metric": "perplexity", "length": row["context_length"], "value": row["perplexity"]}
        for row in summary["by_length"]
    ]


def key_retrieval(
    ctx: EvalContext,
    lengths: Sequence[int],
    positions: Sequence[float] = (0.0, 0.2, 0.4),
    n_per_cell: int = 16,
    n_filler_documents: int = 64,
    batch_size: int = 8,
    scoring: str = "greedy",
    template: str = "paper",
    k: int = 10,
) -> list[Measurement]:
    """Key retrieval with held-out documents as the filler code. `scoring="greedy"`: Table 18's accuracy (the
    greedy completion starts with the key); `"candidates"`: the key's top-1 share among `k` candidates (chance
    1/k) and its log-share above chance (nats; 0 at chance). `template`: "paper" or "one_hop"."""
    from lit_codellama.evaluation.key_retrieval import key_retrieval_accuracy, key_retrieval_ranking

    filler = ctx.held_out_texts(1, n_filler_documents)
    common = dict(filler_texts=filler, batch_size=batch_size, template=template, out_dir=ctx.out_dir / "key_retrieval")
    if scoring == "greedy":
        summary = key_retrieval_accuracy(ctx.model, ctx.tok, lengths, positions, n_per_cell, **common)
        metrics = {"key_retrieval_accuracy": "accuracy"}
    elif scoring == "candidates":
        summary = key_retrieval_ranking(ctx.model, ctx.tok, lengths, positions, n_per_cell, k, **common)
        metrics = {"key_retrieval_top1": "top1", "key_retrieval_nats_above_chance": "nats_above_chance"}
    else:
        raise ConfigError(f"key_retrieval scoring must be 'greedy' or 'candidates', got {scoring!r}")
    rows = [
        {"metric": metric, "length": c["length"], "position": c["position"], "value": c[field]}
        for c in summary["cells"]
        for metric, field in metrics.items()
    ]
    for n in lengths:  # pooled over key positions (no `position`): what a claim at a length tests
        cells = [c for c in summary["cells"] if c["length"] == n]
        rows += [{"metric": metric, "length": n, "value": sum(c[field] for c in cells) / len(cells)}
                 for metric, field in metrics.items()]
    return rows


UNITS = {  # of each measurement: losses in nats per token, pass@k and accuracies as fractions
    **dict.fromkeys(("val_loss", "val_loss_curve", "humaneval_solution_loss", "middle_loss", "loss_full",
                     "loss_capped"), "nats/token"),
    **dict.fromkeys(("humaneval_pass@1", "infilling_pass@1", "middle_token_accuracy", "key_retrieval_accuracy",
                     "key_retrieval_top1"), "fraction"),
    **dict.fromkeys(("prefix_only_bits_per_char", "middle_bits_per_char"), "bits/char"),
    "suffix_gain": "bits/char (difference)",
    "context_gain": "nats/token (difference)",
    "key_retrieval_nats_above_chance": "nats",
    "perplexity": "exp(nats/token)",
}


def unit_of(metric: str) -> str | None:
    """The unit of a measurement (`UNITS`); None, with a warning, for a metric not listed there."""
    if metric not in UNITS:  # a finished study's summary is still worth writing
        log.warning("no unit known for metric %r; add it to studies.evaluations.UNITS", metric)
    return UNITS.get(metric)


EVALUATIONS: dict[str, Callable[..., list[Measurement]]] = {
    "val_loss": val_loss,
    "val_loss_curve": val_loss_curve,
    "humaneval_loss": humaneval_loss,
    "humaneval": humaneval,
    "infilling": infilling,
    "middle_loss": middle_loss,
    "infilling_likelihood": infilling_likelihood,
    "perplexity": perplexity,
    "context_gain": context_gain,
    "key_retrieval": key_retrieval,
}


def evaluate(
    model_dir: Path,
    rope: Mapping[str, float] | None,
    data_config: dict[str, Any],
    evaluations: Mapping[str, Mapping[str, Any]],
    out_dir: Path,
    bar: tqdm | None = None,
) -> tuple[list[Measurement], dict[str, float]]:
    """Run the preset's evaluations on the weights in `model_dir` and its tokenizer, loaded as every inference entry
    point loads them (`load_for_inference`: on the GPU when there is one, with `rope` = {rope_theta, rope_scaling}
    applied); returns measurements and seconds per evaluation. `bar`: a progress bar that advances by one per
    evaluation (and names the one running); when it shows, so do the evaluations' own bars."""
    model, tok = load_for_inference(model_dir, **(rope or {}))
    ctx = EvalContext(model, tok, data_config, out_dir, train_log=Path(model_dir).parent / "metrics.csv",
                      progress=bar is not None and not bar.disable)
    measurements, timings = [], {}
    for name, settings in evaluations.items():
        if bar is not None:
            bar.set_postfix_str(name)
        start = time.monotonic()
        measurements += EVALUATIONS[name](ctx, **settings)
        timings[f"{name}_s"] = round(time.monotonic() - start, 2)
        if bar is not None:
            bar.update()
    return measurements, timings
