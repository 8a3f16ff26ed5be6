import math

import torch
import torch.nn.functional as F

from lit_codellama.loss import IGNORE_INDEX, LanguageModelingMetrics, chunked_next_token_nats, next_token_nats


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


def _loss_and_grads(model, idx, labels, chunk_size):
    model.zero_grad()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        if chunk_size is None:
            nats = next_token_nats(model(idx), labels)
        else:
            nats = chunked_next_token_nats(model.hidden_states(idx), model.output, labels, chunk_size)
        loss = nats.sum() / (labels != IGNORE_INDEX).sum()
    loss.backward()
    vocab = model.config.vocab_size
    all_logits = [shape for shape in saved if shape[-1:] == (vocab,) and math.prod(shape) == labels.numel() * vocab]
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, all_logits


def test_chunked_loss_equals_the_full_loss_and_gradients_without_keeping_all_logits():
    from lit_codellama import Llama, ModelConfig

    torch.manual_seed(0)
    model = Llama(ModelConfig.from_name("cl-1m", vocab_size=1024))
    idx, labels = torch.randint(0, 1024, (2, 32)), torch.randint(0, 1024, (2, 32))
    labels[0, :7] = IGNORE_INDEX
    full_loss, full_grads, full_saved = _loss_and_grads(model, idx, labels, None)
    loss, grads, saved = _loss_and_grads(model, idx, labels, chunk_size=10)  # 64 positions: 10, ..., 10, 4
    torch.testing.assert_close(loss, full_loss, rtol=1e-6, atol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    assert full_saved  # the full path keeps every position's logits for the backward pass
    assert not saved  # the chunked one recomputes each chunk's in the backward pass
