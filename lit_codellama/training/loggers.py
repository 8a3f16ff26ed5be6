"""A CSV logger that survives resuming: Lightning's deletes the previous `metrics.csv` when it starts."""

from __future__ import annotations

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _ResumingWriter(ExperimentWriter):
    """Keeps the rows of earlier launches. A resumed run replays the steps between its checkpoint and the
    interruption, so earlier training rows (those with an `epoch`; validation-throughput rows are indexed by
    validation batch instead) at or after the first training step logged now are dropped."""

    def _check_log_dir_exists(self) -> None:
        self._earlier_rows: list[dict[str, str]] = []
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self._earlier_rows = list(csv.DictReader(file))

    def save(self) -> None:
        new_steps = [row["step"] for row in self.metrics if "epoch" in row]
        if self._earlier_rows and new_steps:
            first = min(new_steps)
            kept = [row for row in self._earlier_rows if not row["epoch"] or int(row["step"]) < first]
            self.metrics_keys = sorted(set().union(*self._earlier_rows))
            with self._fs.open(self.metrics_file_path, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
            self._earlier_rows = []
        super().save()


class ResumableCSVLogger(CSVLogger):
    """`CSVLogger` whose `metrics.csv` holds the whole run across resumptions, one row set per step."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumingWriter(log_dir=self.log_dir)
        return self._experiment
