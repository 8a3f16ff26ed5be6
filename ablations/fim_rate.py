"""FIM rate 0 vs 0.9: does infilling training cost left-to-right quality? (Code Llama Table 5 and Table 14.)

Every arm trains the same model from the same initialisation (per seed) on the same documents in the same order,
for the same number of tokens and steps; only the share of documents turned into FIM samples differs. Validation
data is left-to-right and identical for all arms. The `scaling` preset (beyond the paper) repeats the comparison at
three model sizes with the same tokens per parameter.

    python ablations/fim_rate.py                    # small preset, 10 seeds, ~20 min on 2 cores of an fp32 CPU
    python ablations/fim_rate.py --preset scaling --out ablations/results/fim_rate_scaling  # 3 sizes, ~45 min
    python ablations/fim_rate.py --preset tiny      # seconds per run; what the tests run
    python ablations/fim_rate.py --preset paper --dry-run
    python ablations/fim_rate.py --preset gpu       # cl-100m on one H100-class GPU, < 1 h (estimated)
"""

import sys

from lit_codellama.studies import Arm, Claim, Preset, Study, run_cli
from lit_codellama.studies.configs import cpu_training, gpu_training, non_embedding_parameters
from lit_codellama.studies.stats import seeds_for_half_width

RATES = (0.0, 0.9)  # Table 5: no FIM vs FIM 0.9
FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # of training, for the left-to-right validation-loss trajectory
NO_COST_MARGIN = 0.01  # "costs little": within ±1% of the FIM-0 loss (a log ratio of 0.01)
HALF_WIDTH_GOAL = 0.005  # the primary left-to-right interval: at most ±0.5% of the FIM-0 loss

# Pilot of the small preset's training (seeds 0-3 of both arms, 2026-12-01, bf16-mixed): the paired log ratio of the
# final validation loss, FIM 0.9 vs FIM 0, per seed. It sets the number of seeds, nothing else.
PILOT_LOG_RATIOS = (0.00375, -0.00175, 0.00154, -0.00506)
SMALL_SEEDS = seeds_for_half_width(PILOT_LOG_RATIOS, HALF_WIDTH_GOAL)


def arm_name(rate: float, size: str = "") -> str:
    return f"{size}{'-' if size else ''}fim={rate}"


def arms(size: str = "", **overrides) -> dict[str, Arm]:
    label = f"{size} " if size else ""
    return {arm_name(r, size): Arm({"data.fim_rate": r, **overrides}, label=f"{label}FIM {r}") for r in RATES}


def claims(size: str = "", primary: bool = True, trajectory: bool = True) -> tuple[Claim, ...]:
    """The paper's two findings for one pair of arms, and exploratory detail. `trajectory`: the left-to-right
    claim reads the validation loss logged at each quarter of training (else the final `val_loss` evaluation)."""
    fim, base = arm_name(0.9, size), arm_name(0.0, size)
    at = f" ({size} model)" if size else ""

    def l2r(fraction: float, is_primary: bool) -> Claim:
        metric, where = ("val_loss_curve", {"fraction": fraction}) if trajectory else ("val_loss", {})
        when = "" if fraction == 1.0 else f" after {fraction:.0%} of training"
        return Claim(f"FIM costs little left-to-right quality{when} (Table 5: 7B loss .408 without, .407 with){at}",
                     metric, fim, base, where, "log_ratio", margin=NO_COST_MARGIN, primary=is_primary)

    return (
        l2r(1.0, primary),
        Claim(f"FIM teaches the model to use the suffix: PSM suffix gain in bits/char (Table 14){at}", "suffix_gain",
              fim, base, {"mode": "psm"}, primary=primary),
        *(l2r(f, False) for f in FRACTIONS[:-1] if trajectory),
        Claim(f"... and in SPM{at}", "suffix_gain", fim, base, {"mode": "spm"}, primary=False),
        Claim(f"FIM lowers the middle's bits/char given prefix and suffix (PSM){at}", "middle_bits_per_char", fim,
              base, {"mode": "psm"}, direction=-1, primary=False),
        Claim(f"FIM costs little HumanEval canonical-solution loss{at}", "humaneval_solution_loss", fim, base,
              transform="log_ratio", margin=NO_COST_MARGIN, primary=False),
    )


def scaling_arms(sizes: dict[str, dict], tokens_per_parameter: float, tokens_per_step: int) -> dict[str, Arm]:
    """FIM 0 and 0.9 at each size (model-config overrides of cl-1m), trained for the same tokens per parameter
    outside the embeddings; steps a multiple of 4 so that validation falls on each quarter."""
    result = {}
    for size, model in sizes.items():
        steps = 4 * round(tokens_per_parameter * non_embedding_parameters("cl-1m", **model) / tokens_per_step / 4)
        result |= arms(
            size,
            **{f"model.model_config.{k}": v for k, v in model.items()},
            **{"trainer.max_steps": steps, "trainer.val_check_interval": steps // 4,
               "checkpoint.every_n_train_steps": steps, "model.warmup_steps": max(1, steps // 20)},
        )
    return result


# Three widths of cl-1m (2 layers): 0.36M, 0.61M (cl-1m itself) and 0.92M parameters outside the embeddings.
SIZES = {
    "S": {"n_embd": 64, "n_head": 2, "intermediate_size": 172},
    "M": {},
    "L": {"n_embd": 128, "n_head": 4, "intermediate_size": 344},
}
SCALING_ARMS = scaling_arms(SIZES, tokens_per_parameter=1.0, tokens_per_step=8 * 256)
SCALING_STEPS = ", ".join(str(SCALING_ARMS[arm_name(0.0, size)].overrides["trainer.max_steps"]) for size in SIZES)
SMALL_TRAINING = cpu_training(
    "cl-1m", seq_len=256, batch_size=8, steps=300, lr=1e-3, warmup_steps=15, val_every=75, val_batches=32
)
SMALL_EVALUATIONS = {
    "val_loss_curve": {"fractions": list(FRACTIONS)},
    "val_loss": {"max_batches": 32},
    "humaneval_loss": {},
    "infilling_likelihood": {"subset": "single-line"},
    "infilling": {"subset": "single-line", "every": 10, "max_new_tokens": 32},
}

# One H100-class GPU, bf16: cl-100m (GPU checks not yet run: the time is an estimate).
GPU = Preset(
    train=gpu_training("cl-100m", seq_len=1024, batch_size=8, steps=1500, lr=6e-4, warmup_steps=100, val_every=375,
                       val_batches=32),
    arms=arms(),
    evaluations={
        **SMALL_EVALUATIONS,
        "val_loss": {"max_batches": 64},
        "humaneval": {"max_new_tokens": 256},
        "infilling": {"subset": "single-line", "max_new_tokens": 64},
    },
    seeds=3,
    claims=claims(),
    notes="cl-100m (~90M parameters, 12 layers), 1,500 steps of 8x1024 tokens (12M, ~2 passes over the default "
    "corpus) in bf16-mixed on one GPU, validated at each quarter; the small preset's evaluations plus HumanEval "
    "pass@1 (256 new tokens) and pass@1 on all 1,033 single-line infilling tasks, greedy. Estimated < 1 h for 6 runs.",
)

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
                val_every=4,
                val_batches=2,
            ),
            arms=arms(),
            evaluations={
                "val_loss_curve": {},
                "val_loss": {"max_batches": 2},
                "humaneval_loss": {"limit": 8},
                "humaneval": {"limit": 4, "max_new_tokens": 16},
                "infilling_likelihood": {"limit": 8},
                "infilling": {"every": 200, "max_new_tokens": 8},
            },
            seeds=2,
            claims=claims(),
            notes="Plumbing check for the tests: cl-1m, 16 steps of 8x64 tokens on a 1.5 MB corpus, a few tasks.",
        ),
        "small": Preset(
            train=SMALL_TRAINING,
            arms=arms(),
            evaluations=SMALL_EVALUATIONS,
            seeds=SMALL_SEEDS,
            claims=claims(),
            notes="cl-1m (0.61M parameters outside the embeddings, 2 layers), 300 steps of 8x256 tokens (0.6M "
            "tokens) at LR 1e-3 on the default corpus, validated on 32 batches at each quarter of training. "
            "Infilling: all 1,033 single-line tasks teacher-forced (bits/char, token accuracy, suffix gain; PSM and "
            "SPM); pass@1 (secondary, at the floor for this size) on every 10th task (104), greedy. HumanEval pass@1 "
            "is left out (no 1M model writes a correct body); its canonical-solution loss stays. LR: at 3e-3 (the "
            "previous preset) training is chaotic: the same FIM-0 seed trained in fp32 and in bf16 ended 0.086 nats "
            "apart, and the paired seed SD was ~0.10 nats; at 1e-3 the two precisions end 0.0004 apart (FIM-0 runs "
            "only; chosen before any FIM comparison). Power: the primary left-to-right claim needs a paired "
            f"half-width <= {HALF_WIDTH_GOAL:.1%} of the FIM-0 loss; a 4-seed pilot at LR 1e-3 gave paired log "
            "ratios with SD 0.0039; with the SD's upper 80% bound (x1.73), t(0.975, n-1) * 0.0067 / sqrt(n) <= "
            f"{HALF_WIDTH_GOAL} gives n = {SMALL_SEEDS} seeds (`seeds_for_half_width`); the pilot's seeds are "
            "seeds 0-3 of the study. Budget (2 cores, fp32): a run ~45 s of training and validation (measured) and "
            "~10 s of evaluation (benchmarks/study_eval_throughput.py): "
            f"{2 * SMALL_SEEDS} runs ~20 min.",
        ),
        "scaling": Preset(
            train=SMALL_TRAINING,
            arms=SCALING_ARMS,
            evaluations={
                "val_loss_curve": {"fractions": list(FRACTIONS)},
                "infilling_likelihood": {"subset": "single-line"},
            },
            seeds=3,
            claims=tuple(c for size in SIZES for c in claims(size, primary=False)[:2]),
            notes="Beyond the paper: FIM 0 vs 0.9 at three widths of cl-1m (S 0.36M, M 0.61M = the small preset, "
            "L 0.92M parameters outside the embeddings), each trained on 1 token per such parameter ("
            f"{SCALING_STEPS} steps of 8x256 tokens): how the left-to-right cost and the suffix gain change with size and tokens "
            "(one claim pair per size; compare the intervals across sizes). Budget (2 cores, fp32, measured under "
            "load): 0.25 / 0.27 / 0.42 s per step -> 43 / 80 / 187 s of training, ~45 s of evaluation per run: "
            "~15 min per seed, 3 seeds ~45 min.",
        ),
        "paper": Preset(
            train="configs/train/code-7b.yaml",
            arms=arms(),
            evaluations={
                "val_loss": {},
                "humaneval_loss": {},
                "humaneval": {"max_new_tokens": 512},
                "infilling_likelihood": {"subset": "single-line"},
                "infilling": {"subset": "single-line", "max_new_tokens": 128},
            },
            seeds=1,
            claims=claims(trajectory=False),
            notes="Code Llama 7B's code training (configs/train/code-7b.yaml): from Llama 2 7B, 500B tokens in "
            "4M-token batches of 4,096-token sequences, DeepSpeed ZeRO-3 on 64 A100s; full HumanEval and "
            "single-line infilling, greedy.",
        ),
        "gpu": GPU,
    },
)

if __name__ == "__main__":
    sys.exit(run_cli(STUDY))
