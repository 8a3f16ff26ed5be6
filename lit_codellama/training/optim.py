"""AdamW parameter groups and the paper's learning-rate schedule (Code Llama §2.6, Llama 2 §2.2)."""

from __future__ import annotations

import math

from torch import nn


def cosine_with_warmup(step: int, warmup_steps: int, decay_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier: linear warm-up to 1 over `warmup_steps`, cosine decay to `min_lr_ratio` at `decay_steps`.

    Code Llama: 1,000 warm-up steps, final learning rate 1/30 of the peak. Constant after `decay_steps`.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, decay_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on the weights of linear layers only; none on embeddings and norms.

    Grouped by module type rather than by `param.ndim`: under ZeRO-3 every parameter is a flat
    partition, so shapes no longer tell matrices from vectors.
    """
    decay = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0},
    ]
