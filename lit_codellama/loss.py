"""The next-token loss and its token-weighted aggregate, shared by training, instruction tuning and evaluation.

Labels align with the logits (already shifted); positions labelled `IGNORE_INDEX` (padding, prompts, context)
count neither nats nor tokens nor bytes.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from torchmetrics import Metric

IGNORE_INDEX = -100


def next_token_nats(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy in nats (0 where labels are ignored); float32 whatever the logits' dtype."""
    return F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    ).view_as(labels)


def chunked_next_token_nats(
    hidden: torch.Tensor, output: nn.Module, labels: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """`next_token_nats(output(hidden), labels)` without ever holding every position's logits: `chunk_size`
    positions at a time, each chunk's logits recomputed in the backward pass instead of kept for it. With a large
    vocabulary the float32 logits are the biggest activation of all (8 x 4096 x 32016 x 4 bytes = 4.2 GB)."""
    flat, targets = hidden.flatten(0, 1), labels.flatten()
    chunks = [
        checkpoint(_nats, output, flat[start : start + chunk_size], targets[start : start + chunk_size],
                   use_reentrant=False)
        for start in range(0, len(flat), chunk_size)
    ]
    return torch.cat(chunks).view_as(labels)


def _nats(output: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # Through the module, not its weight: ZeRO-3 gathers a partitioned weight in the module's forward hooks.
    return F.cross_entropy(output(hidden).float(), targets, ignore_index=IGNORE_INDEX, reduction="none")


class LanguageModelingMetrics(Metric):
    """Token-weighted loss, perplexity and bits per byte, summed across batches and ranks."""

    full_state_update = False

    def __init__(self, byte_lengths: list[int] | None = None) -> None:
        super().__init__()
        self.add_state("nats", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("bytes", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        lengths = None if byte_lengths is None else torch.tensor(byte_lengths)
        self.register_buffer("byte_lengths", lengths, persistent=False)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        targets = labels[labels != IGNORE_INDEX]
        self.nats += next_token_nats(logits, labels).sum(dtype=torch.float64)
        self.tokens += targets.numel()
        if self.byte_lengths is not None:
            self.bytes += self.byte_lengths[targets].sum()

    def compute(self) -> dict[str, torch.Tensor]:
        loss = self.nats / self.tokens
        metrics = {"loss": loss, "ppl": loss.exp()}
        if self.byte_lengths is not None:
            metrics["bpb"] = self.nats / (math.log(2) * self.bytes)
        return metrics
