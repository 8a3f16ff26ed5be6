"""Wall time of a study preset's evaluations, run on one fixed model: cl-1m at a seeded random initialisation.

    python benchmarks/study_eval_throughput.py [--study fim_rate] [--preset small] [--recipe default]

The evaluations are the preset's own (settings unchanged), on the preset's data, through the same
`studies.evaluations.evaluate` a study run calls; the random model makes the work identical across code versions
(compare two checkouts by running this file with each on PYTHONPATH, alternately). Prints and saves seconds per
evaluation and every measurement (which must not change when only speed work changed), with the CPU and load
average, to benchmarks/results/study_eval_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from lit_codellama import Llama, ModelConfig
from lit_codellama.checkpoint import save_model
from lit_codellama.precision import cpu_info
from lit_codellama.studies.cli import load_study
from lit_codellama.data import CodeDataModule
from lit_codellama.studies.evaluations import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="fim_rate")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--recipe", help="data recipe instead of the preset's (e.g. ablations/tiny_corpus.yaml)")
    parser.add_argument("--only", nargs="+", help="run only these of the preset's evaluations")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "study_eval_throughput.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    preset = load_study(args.study).preset(args.preset)
    train = preset.train_config(next(iter(preset.arms)))
    data = dict(train["data"], **({"recipe": args.recipe} if args.recipe else {}))
    evaluations = {k: v for k, v in preset.evaluations.items() if not args.only or k in args.only}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tok = CodeDataModule(**data).tokenizer  # builds the corpus on first use (not timed)
        torch.manual_seed(0)
        save_model(Llama(ModelConfig.from_name("cl-1m", vocab_size=tok.vocab_size)), Path(tmp) / "model")
        shutil.copy(tok.path, Path(tmp) / "model" / "tokenizer.model")
        start = time.perf_counter()
        measurements, timings = evaluate(Path(tmp) / "model", None, data, evaluations, Path(tmp) / "eval")
        total = time.perf_counter() - start
    result = {
        "study": args.study, "preset": args.preset, "data": data, "evaluations": evaluations,
        "total_s": round(total, 2), "timings": timings, "measurements": measurements,
        "cpu": cpu_info(), "threads": torch.get_num_threads(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("total_s", "timings", "load_average_before", "load_average_after")}))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
