"""The evaluations a study can ask for, each a thin call into `lit_codellama.evaluation` that returns tidy rows.

A preset lists them by name with their settings, e.g. `{"humaneval": {"max_new_tokens": 128}}`. Every function
takes an `EvalContext` and returns measurements: `{"metric": ..., "value": ..., <coordinates>}`. Losses are nats
per token, pass@1 and accuracies are fractions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentParser

from lit_codellama.checkpoint import load_for_inference
from lit_codellama.data import CodeDataModule
from lit_codellama.errors import ConfigError
from lit_codellama.generate import SamplingConfig
from lit_codellama.loss import LanguageModelingMetrics
from lit_codellama.model import Llama
from lit_codellama.tokenizer import Tokenizer

Measurement = dict[str, Any]


@dataclass
class EvalContext:
    """The weights under evaluation, their tokenizer, and the data they were trained on (for held-out text)."""

    model: Llama
    tok: Tokenizer
    data_config: dict[str, Any]  # the `data` section of the training config
    out_dir: Path  # per-sample outputs go to <out_dir>/<evaluation>/

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

    def held_out_texts(self, min_tokens: int, n: int) -> list[str]:
        """The first `n` validation documents of at least `min_tokens` tokens (the same for every arm and seed)."""
        texts = self.datamodule.val_documents(min_tokens=min_tokens, limit=n)
        if not texts:
            raise ConfigError(f"no validation document has {min_tokens} tokens; lower the evaluation lengths")
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
        progress=False,
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
            progress=False,
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


def perplexity(ctx: EvalContext, lengths: Sequence[int], n_documents: int = 8) -> list[Measurement]:
    """Perplexity at each context length, on the same held-out documents (long enough for the longest)."""
    from lit_codellama.evaluation import perplexity_by_context_length

    texts = ctx.held_out_texts(max(lengths), n_documents)
    summary = perplexity_by_context_length(ctx.model, ctx.tok, texts, lengths, out_dir=ctx.out_dir / "perplexity")
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
) -> list[Measurement]:
    """Table 18's key retrieval (greedy), with held-out documents as the filler code."""
    from lit_codellama.evaluation import key_retrieval_accuracy

    filler = ctx.held_out_texts(1, n_filler_documents)
    summary = key_retrieval_accuracy(
        ctx.model,
        ctx.tok,
        lengths,
        positions,
        n_per_cell,
        filler,
        batch_size=batch_size,
        out_dir=ctx.out_dir / "key_retrieval",
    )
    return [
        {"metric": "key_retrieval_accuracy", "length": c["length"], "position": c["position"], "value": c["accuracy"]}
        for c in summary["cells"]
    ]


EVALUATIONS: dict[str, Callable[..., list[Measurement]]] = {
    "val_loss": val_loss,
    "humaneval_loss": humaneval_loss,
    "humaneval": humaneval,
    "infilling": infilling,
    "middle_loss": middle_loss,
    "perplexity": perplexity,
    "key_retrieval": key_retrieval,
}


def evaluate(
    model_dir: Path,
    rope: Mapping[str, float] | None,
    data_config: dict[str, Any],
    evaluations: Mapping[str, Mapping[str, Any]],
    out_dir: Path,
) -> tuple[list[Measurement], dict[str, float]]:
    """Run the preset's evaluations on the weights in `model_dir` and its tokenizer, loaded as every inference entry
    point loads them (`load_for_inference`: on the GPU when there is one, with `rope` = {rope_theta, rope_scaling}
    applied); returns measurements and seconds per evaluation."""
    model, tok = load_for_inference(model_dir, **(rope or {}))
    ctx = EvalContext(model, tok, data_config, out_dir)
    measurements, timings = [], {}
    for name, settings in evaluations.items():
        start = time.monotonic()
        measurements += EVALUATIONS[name](ctx, **settings)
        timings[f"{name}_s"] = round(time.monotonic() - start, 2)
    return measurements, timings
