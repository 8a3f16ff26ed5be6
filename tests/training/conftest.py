import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lit_codellama.data import build_corpus, load_recipe

HERE = Path(__file__).parent
REPO = HERE.parents[1]

TINY_RECIPE = {
    "name": "training-tests",
    "tokenizer": {"vocab_size": 512},
    "dedup": {"near": False},
    "decontamination": {"enabled": False},
    "sources": [{"name": "code", "weight": 1.0,
                 "inputs": [{"kind": "files", "roots": ["{stdlib}/json", "{stdlib}/email"], "include": ["*.py"]}]}],
}


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """~30 stdlib modules, a 512-piece tokenizer (with infilling pieces), ~200k tokens; built in ~2 s."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "recipe.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    return build_corpus(load_recipe(root / "recipe.yaml"), root / "tiny", num_proc=1).path


def tiny_config(corpus_dir: Path, run_dir: Path, max_steps: int = 8, every: int = 2) -> dict:
    """A complete `fit` config: the ~0.3M-parameter preset on 4 x 64-token batches, a checkpoint every `every` steps."""
    return copy.deepcopy({
        "seed_everything": 1234,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "max_steps": max_steps, "gradient_clip_val": 1.0,
            "val_check_interval": 4, "limit_val_batches": 2, "num_sanity_val_steps": 0, "log_every_n_steps": 1,
            "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(run_dir),
        },
        "model": {"model_config": {"preset": "cl-1m"}, "lr": 3e-3, "warmup_steps": 2},
        "checkpoint": {"every_n_train_steps": every},
        "throughput": {"window_size": 2},
        "data": {"data_dir": str(corpus_dir), "seq_len": 64, "batch_size": 4, "val_fraction": 0.1,
                 "fim_rate": 0.5},
    })


def run_cli(config: dict, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m lit_codellama fit` in a subprocess; `probes.py` (test-only callbacks) is importable there."""
    path = Path(config["trainer"]["default_root_dir"]).with_suffix(".yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "lit_codellama", "fit", "--config", str(path), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
