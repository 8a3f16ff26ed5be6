import math

import torch
import torch.nn.functional as F

from lit_codellama.config import ModelConfig
from lit_codellama.model import Llama
from lit_codellama.training.module import CodeLlamaLM, LanguageModelingMetrics


def test_validation_metrics_weight_every_target_token_and_count_its_bytes():
    torch.manual_seed(0)
    byte_lengths = torch.randint(0, 5, (50,))
    batches = [(torch.randn(2, 7, 50), torch.randint(0, 50, (2, 7))) for _ in range(2)]
    batches[1][1][0, :5] = -100  # ignored positions (padding, prompts) count neither nats nor bytes
    metrics = LanguageModelingMetrics(byte_lengths.tolist())
    for logits, labels in batches:
        metrics.update(logits, labels)
    result = metrics.compute()

    logits = torch.cat([b[0].flatten(0, 1) for b in batches])
    labels = torch.cat([b[1].flatten() for b in batches])
    nats = F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum").double()
    targets = labels[labels != -100]
    assert math.isclose(result["loss"], nats / len(targets), rel_tol=1e-6)
    assert math.isclose(result["ppl"], math.exp(nats / len(targets)), rel_tol=1e-6)
    assert math.isclose(result["bpb"], nats / math.log(2) / byte_lengths[targets].sum(), rel_tol=1e-6)


def test_base_checkpoint_with_a_smaller_vocabulary_grows_rows_at_their_mean(tmp_path):
    torch.manual_seed(0)
    base = Llama(ModelConfig.from_name("cl-1m", vocab_size=500))
    base.save_pretrained(tmp_path / "base")
    module = CodeLlamaLM({"preset": "cl-1m"}, vocab_size=516, init_checkpoint=str(tmp_path / "base"))
    module.configure_model()
    for name in ("tok_embeddings.weight", "output.weight"):
        grown, rows = module.model.state_dict()[name], base.state_dict()[name]
        assert grown.shape == (516, 96)
        assert torch.equal(grown[:500], rows)
        torch.testing.assert_close(grown[500:], rows.mean(0).expand(16, -1))
    assert torch.equal(module.model.layers[0].attention.qkv.weight, base.layers[0].attention.qkv.weight)
    assert module.hparams.model_config == {**ModelConfig.from_name("cl-1m", vocab_size=516).to_dict()}
