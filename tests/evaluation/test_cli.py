"""`python -m lit_codellama eval ...` end to end, on completions files and on a tiny checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from lit_codellama.evaluation.cli import main
from lit_codellama.evaluation.humaneval import humaneval_problems


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_summary(out):
    return json.loads((out / "summary.json").read_text())


def test_scores_completions_made_elsewhere(tmp_path, capsys):
    problems = humaneval_problems(limit=4)
    rows = [{"task_id": p.task_id, "completion": p.reference} for p in problems[:3]]
    rows.append({"task_id": problems[3].task_id, "completion": "    return 0\n"})
    completions = write_jsonl(tmp_path / "samples.jsonl", rows)
    assert main(["humaneval", "--completions", str(completions), "--limit", "4", "--out", str(tmp_path / "out")]) == 0
    summary = read_summary(tmp_path / "out")
    assert summary["pass@1"] == 0.75 and summary["n_problems"] == 4 and summary["completions"] == str(completions)
    assert json.loads(capsys.readouterr().out)["pass@1"] == 0.75
    rows = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(rows) == 4 and json.loads(rows[3])["status"] == "failed"


def test_a_completion_that_is_not_valid_unicode_fails_alone_and_the_rest_are_scored(tmp_path, caplog):
    problems = humaneval_problems(limit=3)
    completions = tmp_path / "samples.jsonl"
    lines = [json.dumps({"task_id": p.task_id, "completion": p.reference}) for p in problems]
    lines[1] = lines[1].replace('"completion": "', '"completion": "\\ud800', 1)  # a lone surrogate, JSON-escaped
    completions.write_text("\n".join(lines) + "\n")
    assert main(["humaneval", "--completions", str(completions), "--limit", "3", "--out", str(tmp_path / "out")]) == 0
    summary = read_summary(tmp_path / "out")
    assert summary["pass@1"] == pytest.approx(2 / 3) and summary["n_samples"] == 3
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in rows] == [True, False, True]
    assert rows[1]["completion"].startswith("\ud800") and "lone surrogate" in rows[1]["output"]
    assert "HumanEval/1" in caplog.text and "lone surrogate" in caplog.text


def test_ctrl_c_kills_the_running_programs_cancels_the_queue_and_keeps_what_finished(tmp_path, host_processes_with):
    marker = f"hung-{uuid.uuid4().hex}"
    hang = ("    import os, sys\n"
            f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n")
    problems = humaneval_problems(limit=8)
    completions = write_jsonl(tmp_path / "samples.jsonl", [{"task_id": p.task_id, "completion": p.reference if i < 2
                                                            else hang} for i, p in enumerate(problems)])
    command = [sys.executable, "-m", "lit_codellama", "eval", "humaneval", "--completions", str(completions),
               "--limit", "8", "--timeout", "60", "--workers", "2", "--out", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(600):  # until two hung programs run (importing the CLI takes a while)
            if len(host_processes_with(marker)) == 2:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, err = proc.communicate(timeout=60)  # the queue would take 4 minutes
        seconds = time.monotonic() - start
    finally:
        proc.kill()
    assert seconds < 10, seconds  # a loose bound: the running programs are killed, the queued ones never start
    assert proc.returncode == 2 and "Traceback" not in err
    assert "error: interrupted: 2 of 8 programs had finished" in err, err
    assert host_processes_with(marker) == []
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["passed"]) for r in rows] == [(p.task_id, True) for p in problems[:2]]
    assert not (tmp_path / "out" / "summary.json").exists()


def test_bad_completions_file_is_one_clear_error(tmp_path, capsys):
    completions = tmp_path / "samples.jsonl"
    completions.write_text('{"task_id": "HumanEval/0", "completion": ""}\nnot json\n')
    assert main(["humaneval", "--completions", str(completions), "--out", str(tmp_path / "out")]) == 2
    assert "samples.jsonl, line 2: not valid JSON" in capsys.readouterr().err
    assert main(["humaneval", "--out", str(tmp_path / "out")]) == 2
    assert "--checkpoint is required" in capsys.readouterr().err


def test_multipl_e_completions_for_one_language(tmp_path):
    problem = {"name": "HumanEval_0_double", "language": "sh", "prompt": "#!/bin/bash\ndouble() {\n",
               "tests": "}\n\nset -e\n[[ $(double 4) = \"8\" ]]", "stop_tokens": ["\n}"]}
    data = write_jsonl(tmp_path / "sh.jsonl", [problem])
    completion = {"task_id": "HumanEval_0_double", "completion": "    echo $(( $1 * 2 ))"}
    completions = write_jsonl(tmp_path / "samples.jsonl", [completion])
    argv = ["multipl-e", "--languages", "sh", "--data", f"sh={data}", "--completions", str(completions),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    assert read_summary(tmp_path / "out")["pass@1"] == 1.0


def test_code_tasks_with_a_checkpoint(tiny_checkpoint, tmp_path):
    common = ["--checkpoint", str(tiny_checkpoint), "--limit", "2", "--max-new-tokens", "6", "--timeout", "1"]
    assert main(["humaneval", *common, "--out", str(tmp_path / "he")]) == 0
    assert read_summary(tmp_path / "he")["n_samples"] == 2
    assert main(["infilling", "--subset", "random-span", "--mode", "spm", *common, "--out", str(tmp_path / "fim")]) == 0
    assert read_summary(tmp_path / "fim")["task"] == "infilling-random-span-spm"


def test_likelihood_tasks_with_a_checkpoint(tiny_checkpoint, tmp_path, stdlib_texts):
    text = tmp_path / "held_out.py"
    text.write_text(stdlib_texts[1][:2500])
    common = ["--checkpoint", str(tiny_checkpoint)]
    assert main(["perplexity", *common, "--data", str(tmp_path / "*.py"), "--context-length", "128",
                 "--out", str(tmp_path / "ppl")]) == 0
    assert read_summary(tmp_path / "ppl")["context_length"] == 128
    assert main(["long-context", *common, "--data", str(text), "--lengths", "64,256", "--rope-theta", "1e6",
                 "--out", str(tmp_path / "long")]) == 0
    long = read_summary(tmp_path / "long")
    assert long["rope_theta"] == 1e6 and [r["context_length"] for r in long["by_length"]] == [64, 256]
    assert main(["key-retrieval", *common, "--filler", str(text), "--lengths", "96", "--positions", "0,0.4",
                 "--n-per-cell", "1", "--out", str(tmp_path / "keys")]) == 0
    assert len(read_summary(tmp_path / "keys")["cells"]) == 2


def test_help_lists_every_task(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    for task in ("humaneval", "mbpp", "multipl-e", "infilling", "perplexity", "long-context", "key-retrieval"):
        assert task in help_text
