"""Training configs the study presets start from (the `fit` command's YAML layout, as dicts)."""

from __future__ import annotations

from typing import Any

import torch

from lit_codellama.config import ModelConfig
from lit_codellama.model import Llama
from lit_codellama.studies.rope import paper_geometry


def cpu_training(
    model: str,
    seq_len: int,
    batch_size: int,
    steps: int,
    lr: float,
    warmup_steps: int,
    recipe: str = "default",
    fim_rate: float = 0.0,
    val_every: int | None = None,
    val_batches: int = 8,
    val_fraction: float | None = None,
    **model_config: Any,
) -> dict[str, Any]:
    """A single-process CPU run of `steps` optimizer steps on `recipe`'s corpus, validated every `val_every` steps.

    Model-config overrides (e.g. `rope_theta`) go to `model.model_config`; `block_size` follows `seq_len`.
    `val_fraction`: the held-out share of documents (the data module's default unless given).
    """
    data = {"recipe": recipe, "seq_len": seq_len, "batch_size": batch_size, "fim_rate": fim_rate}
    if val_fraction is not None:
        data["val_fraction"] = val_fraction
    return {
        "model": {
            "model_config": {"preset": model, "block_size": seq_len, **model_config},
            "lr": lr,
            "warmup_steps": warmup_steps,
        },
        "data": data,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "precision": "auto",  # bf16-mixed where the CPU has bf16 units that measure faster
            "max_steps": steps,
            "gradient_clip_val": 1.0,
            "val_check_interval": val_every or steps,
            "check_val_every_n_epoch": None,  # the training stream has no epochs
            "limit_val_batches": val_batches,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": max(1, min(10, steps // 20)),
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "checkpoint": {"every_n_train_steps": steps},
    }


def non_embedding_parameters(preset: str, **model_config: Any) -> int:
    """Parameters outside the token embeddings of a model preset with overrides (counted without allocating)."""
    with torch.device("meta"):
        return Llama(ModelConfig.from_name(preset, **model_config)).num_params(exclude_embeddings=True)


def gpu_training(model: str, seq_len: int, batch_size: int, steps: int, lr: float, warmup_steps: int, **kwargs: Any):
    """`cpu_training`'s run on one CUDA GPU in bf16-mixed (float32 weights and optimizer, bf16 matmuls)."""
    config = cpu_training(model, seq_len, batch_size, steps, lr, warmup_steps, **kwargs)
    config["trainer"].update(accelerator="gpu", precision="bf16-mixed")
    config["data"]["num_workers"] = 2  # tokenised-shard reading and FIM off the training process
    return config


# The long-context studies' model: cl-1m with two heads of 64 (Llama's head size; cl-1m's own 24 gives RoPE only 12
# frequencies, too few for θ to matter at our windows), and the windows: pretraining at L, LCFT at 4L.
LONG_CONTEXT_MODEL = {"n_embd": 128, "n_head": 2}
WINDOWS = {"tiny": (32, 128), "small": (128, 512)}  # (L, 4L) per preset
# Per preset: the RoPE bases that give L Llama 2's rotary geometry at 4K (θ = 1e4) and 4L Code Llama's at 16K
# (θ = 1e6), derived from Liu et al.'s critical dimension for this head size before any run (studies.rope).
ROPE = {
    preset: paper_geometry(L, lcft, head_size=ModelConfig.from_name("cl-1m", **LONG_CONTEXT_MODEL).head_size)
    for preset, (L, lcft) in WINDOWS.items()
}

# What both long-context studies (rope_base, long_context) fine-tune from: the model above with FIM 0.9 at the
# short context L and its matched base. A held-out share of 10% leaves >= 32 documents of 8 x 4L = 4,096 tokens
# for the context-gain evaluation (35 in the pinned default corpus; 5 at the default 2%).
SHORT_CONTEXT_PRETRAINING = {
    "tiny": cpu_training(
        "cl-1m", seq_len=32, batch_size=8, steps=12, lr=3e-3, warmup_steps=3, fim_rate=0.9,
        recipe="ablations/tiny_corpus.yaml", val_batches=2, rope_theta=ROPE["tiny"]["pretrain_theta"],
        **LONG_CONTEXT_MODEL,
    ),
    "small": cpu_training(
        "cl-1m", seq_len=128, batch_size=16, steps=600, lr=3e-3, warmup_steps=30, fim_rate=0.9, val_every=150,
        val_fraction=0.1, rope_theta=ROPE["small"]["pretrain_theta"], **LONG_CONTEXT_MODEL,
    ),
    # cl-100m (heads of 64, as above) on one H100-class GPU at the small preset's windows and bases: 1,500 steps of
    # 64 x 128 tokens (12M, ~2 passes over the default corpus).
    "gpu": gpu_training(
        "cl-100m", seq_len=128, batch_size=64, steps=1500, lr=6e-4, warmup_steps=100, fim_rate=0.9, val_every=500,
        val_batches=32, val_fraction=0.1, rope_theta=ROPE["small"]["pretrain_theta"],
    ),
}


# FIM rate of continued training. The paper gives FIM for code training (§2.3) and says nothing of it for LCFT; we
# continue left-to-right, so that every sample is contiguous text packed up to the sequence length (FIM samples
# must fit whole in one context).
CONTINUED_FIM_RATE = 0.0


def continued_training(
    seq_len: int,
    batch_size: int,
    steps: int,
    lr: float,
    warmup_steps: int,
    rope_theta: float | None = None,
    rope_scaling: float | None = None,
    accumulate: int | None = None,
    fim_rate: float = CONTINUED_FIM_RATE,
    min_doc_tokens: int | None = None,
) -> dict[str, Any]:
    """Arm overrides that turn a preset's pretraining config into training continued from another arm's weights:
    long-context fine-tuning (a longer `seq_len`, a RoPE change), or its compute-matched control. Validates once,
    at the end (`val_check_interval` counts micro-batches).

    The data: documents pretraining never read (`stage: continued`), of at least `min_doc_tokens` tokens (default
    `seq_len`: long documents), packed whole across contexts when left-to-right, at an explicit `fim_rate`."""
    overrides = {
        "data.seq_len": seq_len,
        "data.batch_size": batch_size,
        "data.stage": "continued",
        "data.fim_rate": fim_rate,
        "data.contiguous": fim_rate == 0,
        "data.min_doc_tokens": seq_len if min_doc_tokens is None else min_doc_tokens,
        "model.model_config.block_size": seq_len,
        "model.lr": lr,
        "model.warmup_steps": warmup_steps,
        "trainer.max_steps": steps,
        "trainer.val_check_interval": steps * (accumulate or 1),
        "checkpoint.every_n_train_steps": steps,
    }
    optional = {
        "model.model_config.rope_theta": rope_theta,
        "model.model_config.rope_scaling": rope_scaling,
        "trainer.accumulate_grad_batches": accumulate,
    }
    return {**overrides, **{key: value for key, value in optional.items() if value is not None}}
