"""FIM rate 0 / 0.5 / 0.9: does infilling training cost left-to-right quality? (Code Llama Table 5 and Table 14.)

Every arm trains the same model from the same initialisation (per seed) on the same documents in the same order,
for the same number of tokens and steps; only the share of documents turned into FIM samples differs. Validation
data is left-to-right and identical for all arms.

    python ablations/fim_rate.py                   # small preset, 3 seeds, ~25 min on a 2-core CPU
    python ablations/fim_rate.py --preset tiny     # seconds per run; what the tests run
    python ablations/fim_rate.py --preset paper --dry-run
"""

import sys

from lit_codellama.studies import Arm, Preset, Study, run_cli
from lit_codellama.studies.configs import cpu_training

RATES = (0.0, 0.5, 0.9)


def arms(**overrides) -> dict[str, Arm]:
    return {f"fim={rate}": Arm({"data.fim_rate": rate, **overrides}, label=f"FIM {rate}") for rate in RATES}


STUDY = Study(
    name="fim_rate",
    question="Code Llama (Table 5): training with FIM costs little left-to-right quality while enabling infilling.",
    presets={
        "tiny": Preset(
            train=cpu_training(
                "cl-1m",
                seq_len=64,
                batch_size=8,
                steps=16,
                lr=3e-3,
                warmup_steps=4,
                recipe="ablations/tiny_corpus.yaml",
                val_every=8,
                val_batches=2,
            ),
            arms=arms(),
            evaluations={
                "val_loss": {"max_batches": 2},
                "humaneval_loss": {"limit": 8},
                "humaneval": {"limit": 4, "max_new_tokens": 16},
                "infilling": {"every": 200, "max_new_tokens": 8},
                "middle_loss": {"limit": 8},
            },
            seeds=2,
            notes="Plumbing check for the tests: cl-1m, 16 steps of 8x64 tokens on a 1.5 MB corpus, a few tasks.",
        ),
        "small": Preset(
            train=cpu_training(
                "cl-1m", seq_len=256, batch_size=8, steps=300, lr=3e-3, warmup_steps=15, val_every=75, val_batches=8
            ),
            arms=arms(),
            evaluations={
                "val_loss": {"max_batches": 32},
                "humaneval_loss": {},
                "humaneval": {"max_new_tokens": 128},
                "infilling": {"subset": "single-line", "every": 5, "max_new_tokens": 32},
                "middle_loss": {"subset": "single-line", "limit": 200},
            },
            seeds=3,
            notes="cl-1m (1.0M parameters, 2 layers), 300 steps of 8x256 tokens (0.6M tokens) on the default corpus; "
            "HumanEval: all 164 problems, greedy, 128 new tokens; single-line infilling: every 5th of the 1,033 "
            "tasks (207), greedy, PSM and SPM; middle loss: the first 200 single-line tasks.",
        ),
        "paper": Preset(
            train="configs/train/code-7b.yaml",
            arms=arms(),
            evaluations={
                "val_loss": {},
                "humaneval_loss": {},
                "humaneval": {"max_new_tokens": 512},
                "infilling": {"subset": "single-line", "max_new_tokens": 128},
                "middle_loss": {"subset": "single-line"},
            },
            seeds=1,
            notes="Code Llama 7B's code training (configs/train/code-7b.yaml): from Llama 2 7B, 500B tokens in "
            "4M-token batches of 4,096-token sequences, DeepSpeed ZeRO-3 on 64 A100s; full HumanEval and "
            "single-line infilling, greedy.",
        ),
    },
)

if __name__ == "__main__":
    sys.exit(run_cli(STUDY))
