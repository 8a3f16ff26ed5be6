import itertools
import math

import pytest
from torch import nn

from lit_codellama.config import ModelConfig
from lit_codellama.model import Llama
from lit_codellama.training.optim import cosine_with_warmup, param_groups


def lr(step: int) -> float:
    return cosine_with_warmup(step, warmup_steps=1000, decay_steps=10_000, min_lr_ratio=1 / 30)


def test_schedule_warms_up_linearly_then_decays_to_a_thirtieth_of_the_peak():
    assert lr(0) == pytest.approx(1 / 1000)
    assert lr(499) == pytest.approx(0.5)
    assert lr(999) == pytest.approx(1.0)
    assert lr(1000) == pytest.approx(1.0)
    assert lr(5500) == pytest.approx((1 + 1 / 30) / 2)  # halfway through the cosine
    assert lr(10_000) == pytest.approx(1 / 30)
    assert lr(50_000) == pytest.approx(1 / 30)  # constant after the decay
    decay = [lr(s) for s in range(1000, 10_001, 100)]
    assert all(a >= b for a, b in itertools.pairwise(decay))


def test_weight_decay_applies_to_linear_weights_only():
    model = Llama(ModelConfig.from_name("cl-1m"))
    decayed, not_decayed = param_groups(model, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.1 and not_decayed["weight_decay"] == 0.0
    assert {names[id(p)] for p in not_decayed["params"]} == {
        n for n, _ in model.named_parameters() if "norm" in n or n == "tok_embeddings.weight"
    }
    linear = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    assert {id(p) for p in decayed["params"]} == linear
    assert len(decayed["params"]) + len(not_decayed["params"]) == len(list(model.parameters()))
    assert math.isclose(sum(p.numel() for g in (decayed, not_decayed) for p in g["params"]), model.num_params())
