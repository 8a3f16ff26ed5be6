"""RoPE base period vs position interpolation for long-context fine-tuning (Code Llama §2.4, Table 18, App. G).

Pretrain at a short context L with θ = 1e4, then fine-tune at 4L from those weights (same seed) with θ = 1e4,
θ = 1e6, or linear position interpolation (positions / 4); also evaluate the pretrained weights with θ raised to
1e6 at inference only. Perplexity from L to 8L and key retrieval at 1x, 2x, 4x and 6x L (Table 18's 4K-24K).

    python ablations/rope_base.py                  # small preset, 3 seeds
    python ablations/rope_base.py --preset tiny    # what the tests run
    python ablations/rope_base.py --preset paper --dry-run
"""

import sys

from lit_codellama.studies import Arm, Preset, Study, run_cli
from lit_codellama.studies.configs import SHORT_CONTEXT_PRETRAINING, continued_training

# Table 18's fine-tuned rows: label and RoPE settings.
LCFT = {
    "lcft_theta1e4": ("LCFT, θ=1e4", {"rope_theta": 1e4}),
    "lcft_pi4": ("LCFT, PI ×1/4", {"rope_theta": 1e4, "rope_scaling": 4.0}),
    "lcft_theta1e6": ("LCFT, θ=1e6", {"rope_theta": 1e6}),
}


def arms(lcft: dict, lcft_config: str | None = None) -> dict[str, Arm]:
    """Table 18's rows. `lcft`: overrides shared by the fine-tuned arms; `lcft_config`: their training config."""
    finetuned = {
        name: Arm(
            {**lcft, **{f"model.model_config.{k}": v for k, v in rope.items()}},
            config=lcft_config,
            init_from="pretrain",
            label=label,
        )
        for name, (label, rope) in LCFT.items()
    }
    return {
        "pretrain": Arm(label="no LCFT, θ=1e4"),
        "theta1e6_at_inference": Arm(
            init_from="pretrain", train=False, rope={"rope_theta": 1e6}, label="no LCFT, θ=1e6 at inference"
        ),
        **finetuned,
    }


def evaluations(L: int, n_per_cell: int, n_documents: int) -> dict[str, dict]:
    return {
        "perplexity": {"lengths": [L, 2 * L, 4 * L, 8 * L], "n_documents": n_documents},
        "key_retrieval": {"lengths": [L, 2 * L, 4 * L, 6 * L], "n_per_cell": n_per_cell},
    }


STUDY = Study(
    name="rope_base",
    question="Code Llama (Table 18): for long-context fine-tuning, raising RoPE θ to 1e6 beats θ = 1e4 and "
    "position interpolation beyond the fine-tuning length; without fine-tuning, neither θ extrapolates.",
    presets={
        "tiny": Preset(
            train=SHORT_CONTEXT_PRETRAINING["tiny"],
            arms=arms(continued_training(seq_len=128, batch_size=2, steps=4, lr=1e-3, warmup_steps=1)),
            evaluations=evaluations(32, n_per_cell=2, n_documents=1),
            seeds=1,
            notes="Plumbing check for the tests: cl-1m, L = 32 tokens, 12 + 4 steps on a 1.5 MB corpus.",
        ),
        "small": Preset(
            train=SHORT_CONTEXT_PRETRAINING["small"],
            arms=arms(continued_training(seq_len=512, batch_size=4, steps=150, lr=1e-3, warmup_steps=10)),
            evaluations=evaluations(128, n_per_cell=16, n_documents=8),
            seeds=3,
            notes="cl-1m, FIM 0.9 like Code Llama. Pretraining: L = 128 tokens, 600 steps of 16x128 tokens (1.2M); "
            "LCFT: 150 steps of 4x512 tokens (same tokens per step, 1/4 of the pretraining steps), LR 1e-3 "
            "(pretraining 3e-3). Perplexity at 128-1024 tokens on 8 held-out documents of >= 1024 tokens; key "
            "retrieval at 128/256/512/768 tokens, 16 prompts per cell.",
        ),
        "paper": Preset(
            train="configs/train/code-7b.yaml",
            arms=arms({}, lcft_config="configs/train/lcft-7b.yaml"),
            evaluations=evaluations(4096, n_per_cell=64, n_documents=64),
            seeds=1,
            notes="Code Llama 7B: code training at 4,096 tokens (configs/train/code-7b.yaml, 500B tokens), then "
            "LCFT at 16,384 tokens (configs/train/lcft-7b.yaml: 3,000 steps of 2M tokens, LR 2e-5) with each "
            "RoPE setting; key retrieval at 4K-24K with 64 prompts per cell as in Table 18.",
        ),
    },
)

if __name__ == "__main__":
    sys.exit(run_cli(STUDY))
