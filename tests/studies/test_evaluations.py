import pandas as pd
import pytest

from lit_codellama.errors import ConfigError
from lit_codellama.studies.evaluations import EvalContext, val_loss_curve


def training_log(path, val_steps, last_step):
    """A Lightning metrics.csv: training rows every 10 steps, validation rows (0-based steps) where given."""
    rows = [{"step": s, "train/loss": 5.0} for s in range(9, last_step + 1, 10)]
    rows += [{"step": s, "val/loss": 6.0 - s / 100} for s in val_steps]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_the_validation_curve_reads_the_loss_logged_at_each_quarter_of_training(tmp_path):
    log = training_log(tmp_path / "metrics.csv", val_steps=[74, 149, 224, 299], last_step=299)
    rows = val_loss_curve(EvalContext(None, None, {}, tmp_path, train_log=log))
    assert [(r["fraction"], r["step"]) for r in rows] == [(0.25, 75), (0.5, 150), (0.75, 225), (1.0, 300)]
    assert [r["value"] for r in rows] == [6.0 - s / 100 for s in (74, 149, 224, 299)]
    assert {r["metric"] for r in rows} == {"val_loss_curve"}


def test_a_curve_without_validation_at_a_fraction_says_how_often_to_validate(tmp_path):
    log = training_log(tmp_path / "metrics.csv", val_steps=[149, 299], last_step=299)
    with pytest.raises(ConfigError, match=r"no validation at step 75 \(0.25 of 300\).*validate every 75 steps"):
        val_loss_curve(EvalContext(None, None, {}, tmp_path, train_log=log))
    with pytest.raises(ConfigError, match="no training log"):
        val_loss_curve(EvalContext(None, None, {}, tmp_path, train_log=tmp_path / "missing.csv"))
