"""Full definition of the Llama 2 decoder as Code Llama uses it, all of it in this single file.

RMSNorm, rotary position embeddings with a configurable base (and linear position interpolation),
grouped-query attention through `scaled_dot_product_attention`, a SwiGLU MLP, untied input and
output embeddings, no biases, and a KV cache for generation. Reading and writing checkpoints lives
in `checkpoint.py`; this file is only the math.

The rotary layout is Hugging Face's (rotate the two halves of each head), so converted checkpoints
load without permuting weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_codellama.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)  # one fused kernel
        # Lower precision: normalise in float32, then scale in the activation dtype, as the reference does.
        return self.weight * F.rms_norm(x.float(), (x.size(-1),), eps=self.eps).to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, head_size: int, theta: float, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 cos and signed sin of the rotation angles for `apply_rope`, shape positions.shape + (head_size,).

    theta is RoPE's base (1e4 in Llama 2, 1e6 in Code Llama); scaling > 1 is linear position
    interpolation (Chen et al. 2023), which divides every frequency by the factor.
    """
    exponents = torch.arange(0, head_size, 2, device=positions.device, dtype=torch.int64).float() / head_size
    inv_freq = 1.0 / (theta**exponents) / scaling
    angles = positions.float()[..., None] * inv_freq  # (..., T, hs/2)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Hugging Face's rotate-half RoPE, x * cos + cat(-x2, x1) * sin, with the sign folded into `signed_sin`.

    Rotates in float32 and returns x's dtype: bf16 cos/sin (8-bit mantissas) would misplace long positions.
    """
    x32 = x.float()
    x1, x2 = x32.chunk(2, dim=-1)
    return (x32 * cos + torch.cat((x2, x1), dim=-1) * signed_sin).to(x.dtype)


class KVCache(nn.Module):
    """Keys and values of every position decoded so far, preallocated for `max_seq_len`."""

    def __init__(self, batch_size: int, n_kv_head: int, max_seq_len: int, head_size: int, device, dtype) -> None:
        super().__init__()
        shape = (batch_size, n_kv_head, max_seq_len, head_size)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k.index_copy_(2, input_pos, k)
        self.v.index_copy_(2, input_pos, v)
        length = int(input_pos[-1]) + 1  # attend only to the filled part of the cache
        return self.k[:, :, :length], self.v[:, :, :length]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.n_kv_head, config.head_size
        self.qkv = nn.Linear(config.n_embd, (self.n_head + 2 * self.n_kv_head) * self.head_size, bias=False)
        self.wo = nn.Linear(self.n_head * self.head_size, config.n_embd, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x, cos, sin, mask, input_pos) -> torch.Tensor:
        B, T, _ = x.shape
        q_size, kv_size = self.n_head * self.head_size, self.n_kv_head * self.head_size
        q, k, v = self.qkv(x).split((q_size, kv_size, kv_size), dim=-1)
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)  # (B, nkv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if input_pos is not None:
            k, v = self.kv_cache.update(input_pos, k, v)  # (B, nkv, S, hs)
        groups = self.n_head // self.n_kv_head
        masked_gqa = mask is not None and groups > 1
        if masked_gqa:
            # CPU SDPA kernels are ~10x slower for GQA with a mask than for repeated K/V with one.
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, nh, S, hs)
        # Without a mask: causal over the sequence, or (one new token against the cache) attend to every key.
        causal = mask is None and input_pos is None
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=groups > 1 and not masked_gqa
        )  # (B, nh, T, hs)
        return self.wo(y.transpose(1, 2).reshape(B, T, q_size))


class SwiGLU(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        # Gate and up stay separate: fused, their strided halves slow SwiGLU's elementwise ops and backward on CPU.
        self.w1 = nn.Linear(config.n_embd, config.intermediate_size, bias=False)  # gate
        self.w3 = nn.Linear(config.n_embd, config.intermediate_size, bias=False)  # up
        self.w2 = nn.Linear(config.intermediate_size, config.n_embd, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attention = CausalSelfAttention(config)
        self.ffn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.feed_forward = SwiGLU(config)

    def forward(self, x, cos, sin, mask, input_pos) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin, mask, input_pos)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.output = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        """GPT-2/Llama-style init: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer).

        Under DeepSpeed ZeRO-3 parameters are already partitioned here: call this again inside
        `deepspeed.zero.GatheredParameters(model.parameters(), modifier_rank=0)`.
        """
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        # The projections that write into the residual stream: each block adds two outputs to it.
        residual = {m for block in self.layers for m in (block.attention.wo, block.feed_forward.w2)}
        for module in self.modules():  # in registration order, so a seed draws the same weights as ever
            if isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
            elif isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=residual_std if module in residual else 0.02)

    def forward(
        self,
        idx: torch.Tensor,
        input_pos: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids `idx` (B, T).

        input_pos: (T,) KV-cache slots to write (after `setup_kv_cache`); None runs without the cache.
        positions: RoPE positions, (T,) or (B, T) for left-padded batches; defaults to input_pos or 0..T-1.
        mask: boolean attention mask broadcastable to (B, nh, T, S), True = attend; defaults to causal (a single
            token decoded against the cache attends to every cached key).
        """
        return self.output(self.hidden_states(idx, input_pos, positions, mask))

    def hidden_states(
        self,
        idx: torch.Tensor,
        input_pos: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The final normalised hidden states (B, T, C) that `output` turns into logits; arguments as `forward`'s."""
        B, T = idx.shape
        if positions is None:
            positions = input_pos if input_pos is not None else torch.arange(T, device=idx.device)
        if input_pos is not None and mask is None and T > 1:
            mask = torch.arange(int(input_pos[-1]) + 1, device=idx.device) <= input_pos[:, None]  # (T, S)
        x = self.tok_embeddings(idx)  # (B, T, C)
        cos, sin = rope_cos_sin(positions, self.config.head_size, self.config.rope_theta, self.config.rope_scaling)
        if positions.dim() == 2:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, hs): broadcast over heads
        for layer in self.layers:
            x = layer(x, cos, sin, mask, input_pos)
        return self.norm(x)

    def set_rope(self, rope_theta: float | None = None, rope_scaling: float | None = None) -> None:
        """Change RoPE's base and/or linear interpolation factor, e.g. 1e4 -> 1e6 for long-context fine-tuning."""
        changes = {k: v for k, v in (("rope_theta", rope_theta), ("rope_scaling", rope_scaling)) if v is not None}
        self.config = ModelConfig.from_dict({**self.config.to_dict(), **changes})

    def setup_kv_cache(self, batch_size: int, max_seq_len: int) -> None:
        param = self.output.weight
        for layer in self.layers:
            c = self.config
            layer.attention.kv_cache = KVCache(batch_size, c.n_kv_head, max_seq_len, c.head_size, param.device, param.dtype)

    def clear_kv_cache(self) -> None:
        for layer in self.layers:
            layer.attention.kv_cache = None

    def num_params(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.tok_embeddings.weight.numel() if exclude_embeddings else n

    def flops_per_token(self, seq_len: int, backward: bool = True) -> int:
        """The one FLOPs formula (training MFU, benchmarks): per token at context `seq_len`, 2N for the matmuls plus
        4 * n_layer * n_head * head_size * seq_len for attention's scores and values, forward only; three times that
        with the backward pass. Within 0.1% of what `measure_flops` counts for the small presets."""
        c = self.config
        forward = 2 * self.num_params(exclude_embeddings=True) + 4 * c.n_layer * c.n_head * c.head_size * seq_len
        return 3 * forward if backward else forward
