"""A study can evaluate an instruction-tuned run: its `data` section names the data module by class_path."""

import json
import math

from lit_codellama.studies.evaluations import evaluate


def test_a_study_evaluates_a_run_whose_data_section_names_its_class(tmp_path, corpus, tiny_checkpoint):
    dialogs = tmp_path / "dialogs.jsonl"
    rows = [{"instruction": f"What is {a} plus {b}?", "output": f"The sum is {a + b}."} for a in range(8) for b in range(8)]
    dialogs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = {
        "class_path": "lit_codellama.instruct.InstructDataModule",
        "init_args": {"datasets": [{"path": str(dialogs)}], "data_dir": str(corpus.path), "seq_len": 64,
                      "batch_size": 2, "val_fraction": 0.1, "dialog_val_fraction": 0.2},
    }
    measurements, _ = evaluate(tiny_checkpoint, None, data, {"val_loss": {"max_batches": 2}}, tmp_path / "eval")
    [row] = measurements
    assert row["metric"] == "val_loss" and math.isfinite(row["value"]) and row["value"] > 0
