"""Training configs the study presets start from (the `fit` command's YAML layout, as dicts)."""

from __future__ import annotations

from typing import Any


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
    **model_config: Any,
) -> dict[str, Any]:
    """A single-process CPU run of `steps` optimizer steps on `recipe`'s corpus, validated every `val_every` steps.

    Model-config overrides (e.g. `rope_theta`) go to `model.model_config`; `block_size` follows `seq_len`.
    """
    return {
        "model": {
            "model_config": {"preset": model, "block_size": seq_len, **model_config},
            "lr": lr,
            "warmup_steps": warmup_steps,
        },
        "data": {"recipe": recipe, "seq_len": seq_len, "batch_size": batch_size, "fim_rate": fim_rate},
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "precision": "32-true",
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


def paper_training(
    steps: int = 125_000,
    seq_len: int = 4096,
    batch_size: int = 4,
    accumulate: int = 8,
    lr: float = 3e-4,
    warmup_steps: int = 1000,
    init_checkpoint: str | None = "checkpoints/Llama-2-7b-hf",
    recipe: str = "code",
    fim_rate: float = 0.9,
    **model_config: Any,
) -> dict[str, Any]:
    """Code Llama 7B code training (§2.6): from Llama 2 7B, AdamW (0.9, 0.95), cosine to 1/30 of 3e-4 after 1,000
    warm-up steps, 4M-token batches (4 nodes x 8 A100 x 4 sequences x 8 accumulation x 4,096 tokens), bf16,
    DeepSpeed ZeRO-3. The defaults are the 500B-token stage; RoPE θ is Llama 2's 1e4 until long-context fine-tuning.
    """
    return {
        "model": {
            "model_config": {"preset": "codellama-7b", "block_size": seq_len, "rope_theta": 10_000.0, **model_config},
            "init_checkpoint": init_checkpoint,
            "lr": lr,
            "warmup_steps": warmup_steps,
        },
        "data": {"recipe": recipe, "seq_len": seq_len, "batch_size": batch_size, "fim_rate": fim_rate, "num_workers": 4},
        "trainer": {
            "accelerator": "gpu",
            "devices": 8,
            "num_nodes": 4,
            "strategy": {
                "class_path": "lightning.pytorch.strategies.DeepSpeedStrategy",
                "init_args": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True},
            },
            "precision": "bf16-mixed",
            "max_steps": steps,
            "accumulate_grad_batches": accumulate,
            "gradient_clip_val": 1.0,
            "val_check_interval": 5000,
            "check_val_every_n_epoch": None,
            "limit_val_batches": 50,
            "log_every_n_steps": 10,
        },
        "checkpoint": {"every_n_train_steps": 1000},
    }


def continued_training(
    seq_len: int,
    batch_size: int,
    steps: int,
    lr: float,
    warmup_steps: int,
    rope_theta: float | None = None,
    rope_scaling: float | None = None,
    accumulate: int | None = None,
) -> dict[str, Any]:
    """Arm overrides that turn a preset's pretraining config into training continued from another arm's weights:
    long-context fine-tuning (a longer `seq_len`, a RoPE change), or its compute-matched control."""
    overrides = {
        "data.seq_len": seq_len,
        "data.batch_size": batch_size,
        "model.model_config.block_size": seq_len,
        "model.lr": lr,
        "model.warmup_steps": warmup_steps,
        "trainer.max_steps": steps,
        "trainer.val_check_interval": steps,
        "checkpoint.every_n_train_steps": steps,
    }
    optional = {"model.model_config.rope_theta": rope_theta, "model.model_config.rope_scaling": rope_scaling,
                "trainer.accumulate_grad_batches": accumulate}
    return {**overrides, **{key: value for key, value in optional.items() if value is not None}}
