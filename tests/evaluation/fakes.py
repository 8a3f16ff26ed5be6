"""Stand-in models whose predictions are known, so a test can compute what an evaluation must report."""

from types import SimpleNamespace

import torch


class UniformModel(torch.nn.Module):
    """Every token equally likely: each scored token costs exactly ln V nats, and argmax is token 0. Subclasses
    override `forward` with other logits they know."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.output = torch.nn.Linear(1, 1)  # where the evaluations find the device
        self.config = SimpleNamespace(rope_theta=1e4, rope_scaling=1.0)

    def forward(self, idx, mask=None):
        return torch.zeros(*idx.shape, self.vocab_size)
