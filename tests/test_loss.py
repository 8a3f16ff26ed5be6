import math

import torch
import torch.nn.functional as F

from lit_codellama.loss import IGNORE_INDEX, LanguageModelingMetrics


def test_validation_metrics_weight_every_target_token_and_count_its_bytes():
    torch.manual_seed(0)
    byte_lengths = torch.randint(0, 5, (50,))
    batches = [(torch.randn(2, 7, 50), torch.randint(0, 50, (2, 7))) for _ in range(2)]
    batches[1][1][0, :5] = IGNORE_INDEX  # ignored positions (padding, prompts) count neither nats nor bytes
    metrics = LanguageModelingMetrics(byte_lengths.tolist())
    for logits, labels in batches:
        metrics.update(logits, labels)
    result = metrics.compute()

    logits = torch.cat([b[0].flatten(0, 1) for b in batches])
    labels = torch.cat([b[1].flatten() for b in batches])
    nats = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum").double()
    targets = labels[labels != IGNORE_INDEX]
    assert math.isclose(result["loss"], nats / len(targets), rel_tol=1e-6)
    assert math.isclose(result["ppl"], math.exp(nats / len(targets)), rel_tol=1e-6)
    assert math.isclose(result["bpb"], nats / math.log(2) / byte_lengths[targets].sum(), rel_tol=1e-6)
