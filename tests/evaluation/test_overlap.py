"""Evaluation runs each batch's programs in the sandbox while the model generates the next batch: the verdicts are
those of generating everything first, and Ctrl-C in the middle of generation still kills what runs."""

import json
import signal
import threading
import time
import uuid

import pytest

from lit_codellama.evaluation.execution import ProgramPool
from lit_codellama.evaluation.sandbox import Sandbox
from lit_codellama.evaluation.tasks import CodeProblem, evaluate_problems, generate_samples, score_samples
from lit_codellama.generate import SamplingConfig

# The completion ends at its first newline, inside a comment: the program runs whatever an untrained model writes.
COMMENT = "x = 1  # "
# Problem i's tests pass, fail or end the program before the token (a verdict known from i alone).
TESTS = ("\nassert x == 1\n", "\nassert x == 2\n", "\nimport os\nos._exit(0)\n")
STATUSES = ("passed", "failed", "exited_early")
SAMPLING = SamplingConfig(max_new_tokens=8, temperature=1.0)


def problems_with_known_verdicts(n: int) -> list[CodeProblem]:
    return [CodeProblem(f"T/{i}", COMMENT, TESTS[i % 3], stop=("\n",)) for i in range(n)]


class RecordingSandbox(Sandbox):
    """The real sandbox, noting in `events` when each program starts."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def run(self, *args, **kwargs):
        self.events.append("run")
        return super().run(*args, **kwargs)


def hung_program(marker: str) -> str:
    return ("import os, sys\n"
            f"os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n")


def verdicts(out_dir) -> list[tuple]:
    rows = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    return [(r["task_id"], r["completion_id"], r["completion"], r["status"], r["returncode"], r["output"])
            for r in rows]


def test_programs_run_while_the_model_generates_with_the_verdicts_of_generating_first(
    tiny_model, tokenizer, tmp_path
):
    problems = problems_with_known_verdicts(9)
    events: list[str] = []
    hook = tiny_model.register_forward_pre_hook(lambda *_: events.append("forward"))
    try:
        summary = evaluate_problems("known", problems, tiny_model, tokenizer, SAMPLING, n_samples=2, batch_size=2,
                                    sandbox=RecordingSandbox(events), ks=(1,), workers=2, out_dir=tmp_path / "overlap",
                                    progress=False)
    finally:
        hook.remove()
    assert events.index("run") < len(events) - 1 - events[::-1].index("forward")  # a program ran before the end
    samples = generate_samples(tiny_model, tokenizer, problems, SAMPLING, n_samples=2, batch_size=2)
    score_samples("known", problems, samples, ks=(1,), workers=2, out_dir=tmp_path / "first", progress=False)
    overlapped = verdicts(tmp_path / "overlap")
    assert overlapped == verdicts(tmp_path / "first")
    assert [(task_id, status) for task_id, _, _, status, _, _ in overlapped] == [
        (p.task_id, STATUSES[i % 3]) for i, p in enumerate(problems) for _ in range(2)
    ]
    assert summary["n_samples"] == 18 and summary["pass@1"] == pytest.approx(3 / 9)


def test_ctrl_c_during_generation_kills_the_programs_in_flight(tiny_model, tokenizer, tmp_path, host_processes_with):
    marker = f"hung-{uuid.uuid4().hex}"
    problems = [CodeProblem(f"H/{i}", f"{hung_program(marker)}{i}\n{COMMENT}", "", stop=("\n",)) for i in range(2)]  # 2 programs
    # Longer prompts than the hung ones', so generated after them (batches go by prompt length).
    problems += [CodeProblem(f"P/{i}", "x = 1\n" * 30 + COMMENT, TESTS[0], stop=("\n",)) for i in range(60)]
    both_hang = threading.Event()

    def watch():
        while not both_hang.is_set() and len(host_processes_with(marker)) < 2:
            time.sleep(0.05)
        both_hang.set()

    interrupted = []

    def ctrl_c_once_both_hang(*_):  # the user presses Ctrl-C while the model is generating
        if both_hang.is_set() and not interrupted:
            interrupted.append(time.monotonic())
            signal.raise_signal(signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()
    hook = tiny_model.register_forward_pre_hook(ctrl_c_once_both_hang)
    try:
        with pytest.raises(KeyboardInterrupt):
            evaluate_problems("hung", problems, tiny_model, tokenizer, SamplingConfig(max_new_tokens=8), batch_size=1,
                              timeout_s=60, workers=3, out_dir=tmp_path / "out", progress=False)
        seconds = time.monotonic() - interrupted[0]
    finally:
        hook.remove()
        both_hang.set()
    assert seconds < 10, seconds  # a loose bound: the programs that run are killed, the queued ones never start
    assert host_processes_with(marker) == []
    assert not (tmp_path / "out" / "results.jsonl").exists()  # as when Ctrl-C comes before any program runs


class LeavePool(Exception):
    pass


def test_submitting_waits_while_max_pending_programs_are_queued_or_running(sandbox, host_processes_with):
    marker = f"hung-{uuid.uuid4().hex}"
    submitted = []

    def submit_another(pool):
        try:
            submitted.append(pool.submit("pass"))
        except RuntimeError:  # the pool shut down while it waited
            pass

    with pytest.raises(LeavePool), ProgramPool(sandbox, workers=1, max_pending=1, progress=False) as pool:
        pool.submit(hung_program(marker))
        waiting = threading.Thread(target=submit_another, args=(pool,), daemon=True)
        waiting.start()
        while not host_processes_with(marker):
            time.sleep(0.05)
        waiting.join(timeout=1)
        assert not submitted  # the one program runs for a minute: no room for a second before then
        raise LeavePool
    assert host_processes_with(marker) == []  # leaving on an exception killed it
