import torch

from lit_codellama.checkpoint import save_model
from lit_codellama.config import ModelConfig
from lit_codellama.model import Llama
from lit_codellama.training.module import CodeLlamaLM


def test_base_checkpoint_with_a_smaller_vocabulary_grows_rows_at_their_mean(tmp_path):
    torch.manual_seed(0)
    base = Llama(ModelConfig.from_name("cl-1m", vocab_size=500))
    save_model(base, tmp_path / "base")
    module = CodeLlamaLM({"preset": "cl-1m"}, vocab_size=516, init_checkpoint=str(tmp_path / "base"))
    module.configure_model()
    for name in ("tok_embeddings.weight", "output.weight"):
        grown, rows = module.model.state_dict()[name], base.state_dict()[name]
        assert grown.shape == (516, 96)
        assert torch.equal(grown[:500], rows)
        torch.testing.assert_close(grown[500:], rows.mean(0).expand(16, -1))
    assert torch.equal(module.model.layers[0].attention.qkv.weight, base.layers[0].attention.qkv.weight)
    assert module.hparams.model_config == {**ModelConfig.from_name("cl-1m", vocab_size=516).to_dict()}


def test_throughput_flops_are_the_models_formula_and_match_what_torch_counts():
    from lightning.fabric.utilities.throughput import measure_flops

    module = CodeLlamaLM("cl-1m", vocab_size=256)
    batch = torch.zeros(2, 64, dtype=torch.long)
    with torch.device("meta"):
        meta = Llama(module.model_config)
    for training in (True, False):
        module.train(training)
        module._count_flops(batch)
        assert module.flops_per_batch == meta.flops_per_token(64, backward=training) * batch.numel()
        counted = measure_flops(meta, lambda: meta(batch.to("meta")), (lambda y: y.sum()) if training else None)
        assert abs(module.flops_per_batch / counted - 1) < 0.005
