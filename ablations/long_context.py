"""Long-context fine-tuning: perplexity vs context length before and after (Code Llama Fig. 4a), and what it costs
at short context (Tables 10 and 14).

Pretrain at a short context L (θ = 1e4, FIM 0.9), then either fine-tune at 4L with θ = 1e6 (LCFT) or continue at L
with θ = 1e4 for the same steps and tokens: the control separates LCFT's effect from that of more training.

    python ablations/long_context.py                  # small preset, 3 seeds
    python ablations/long_context.py --preset tiny    # what the tests run
    python ablations/long_context.py --preset paper --dry-run
"""

import sys

from lit_codellama.studies import Arm, Preset, Study, run_cli
from lit_codellama.studies.configs import SHORT_CONTEXT_PRETRAINING, continued_training


def arms(control: dict, lcft: dict, lcft_config: str | None = None) -> dict[str, Arm]:
    """`control`, `lcft`: overrides of the two continuations; `lcft_config`: LCFT's own training config."""
    return {
        "base": Arm(label="before LCFT"),
        "continued": Arm(control, init_from="base", label="continued at L, θ=1e4 (control)"),
        "lcft": Arm(lcft, config=lcft_config, init_from="base", label="LCFT at 4L, θ=1e6"),
    }


def evaluations(
    L: int, n_documents: int, every: int, limit: int | None, middle_limit: int | None, max_new_tokens: int
) -> dict[str, dict]:
    """`limit`: HumanEval problems (None: all 164); `every`: every k-th single-line infilling task."""
    return {
        "perplexity": {"lengths": [L // 2 * 2**i for i in range(6)], "n_documents": n_documents},
        "val_loss": {"seq_len": L, "max_batches": 32},
        "humaneval_loss": {"limit": limit},
        "humaneval": {"limit": limit, "max_new_tokens": max_new_tokens},
        "infilling": {"subset": "single-line", "every": every, "max_new_tokens": max_new_tokens // 4},
        "middle_loss": {"subset": "single-line", "limit": middle_limit},
    }


STUDY = Study(
    name="long_context",
    question="Code Llama (Fig. 4a, Tables 10 and 14): after LCFT, perplexity keeps falling beyond the training "
    "context, at a small cost on short-context benchmarks.",
    presets={
        "tiny": Preset(
            train=SHORT_CONTEXT_PRETRAINING["tiny"],
            arms=arms(
                continued_training(32, batch_size=8, steps=4, lr=1e-3, warmup_steps=1),
                continued_training(128, batch_size=2, steps=4, lr=1e-3, warmup_steps=1, rope_theta=1e6),
            ),
            evaluations=evaluations(32, n_documents=1, every=200, limit=4, middle_limit=8, max_new_tokens=16),
            seeds=1,
            notes="Plumbing check for the tests: cl-1m, L = 32 tokens, 12 + 4 steps on a 1.5 MB corpus.",
        ),
        "small": Preset(
            train=SHORT_CONTEXT_PRETRAINING["small"],
            arms=arms(
                continued_training(128, batch_size=16, steps=150, lr=1e-3, warmup_steps=10),
                continued_training(512, batch_size=4, steps=150, lr=1e-3, warmup_steps=10, rope_theta=1e6),
            ),
            evaluations=evaluations(128, n_documents=8, every=5, limit=None, middle_limit=200, max_new_tokens=128),
            seeds=3,
            notes="cl-1m, FIM 0.9. Pretraining: L = 128 tokens, 600 steps of 16x128 tokens; then 150 steps of "
            "2,048 tokens either at 512 tokens with θ = 1e6 (LCFT) or at 128 with θ = 1e4 (control), LR 1e-3. "
            "Perplexity at 64-2048 tokens on 8 held-out documents of >= 2048 tokens; HumanEval (164, greedy), "
            "every 5th single-line infilling task (207), middle loss on the first 200.",
        ),
        "paper": Preset(
            train="configs/train/code-7b.yaml",
            # The control matches lcft-7b.yaml's steps, LR schedule and 2M-token batches at 4,096 tokens.
            arms=arms(
                continued_training(4096, batch_size=2, accumulate=4, steps=3000, lr=2e-5, warmup_steps=1000),
                {},
                lcft_config="configs/train/lcft-7b.yaml",
            ),
            evaluations=evaluations(4096, n_documents=64, every=1, limit=None, middle_limit=None, max_new_tokens=512),
            seeds=1,
            notes="Code Llama 7B: code training at 4,096 tokens (configs/train/code-7b.yaml), then 3,000 steps of "
            "2M tokens at LR 2e-5 either at 16,384 with θ = 1e6 (configs/train/lcft-7b.yaml) or at 4,096 with "
            "θ = 1e4 (control); perplexity at 2K-64K tokens.",
        ),
    },
)

if __name__ == "__main__":
    sys.exit(run_cli(STUDY))
