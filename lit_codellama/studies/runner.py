"""Run a study: train and evaluate every arm x seed with the library's own code, resumably.

Layout of a study's results directory (default `ablations/results/<study>/` under the current directory):

    study.json                     what ran: preset, seeds, arms (labels, order, precision, corpus), evaluations,
                                   provenance (git commit, library versions, machine), wall time, and each
                                   claim's estimate, interval and verdict (recomputable from runs.csv)
    runs.csv                       tidy: one row per arm x seed x metric (x coordinates such as mode or length)
    summary.csv                    per study x preset x arm x metric: n seeds, mean, t-interval (low, high) at
                                   `confidence`, and the metric's unit
    runs/<arm>/seed=<s>/
        arm.yaml                   the run's definition (training config before resolution, parent, RoPE change)
        config.yaml, run.json      the resolved training config and run metadata (written by the training CLI)
        metrics.csv, events.*      training logs (CSV and TensorBoard)
        model/                     final weights; checkpoints/ the Lightning checkpoints
        eval/                      per-sample evaluation outputs
        metrics.json               the run's measurements; its presence marks the run finished
        run.log                    log records of the run
    .lock, .lock.holder            held while a study runs here (which process), so that two never run at once

A finished run is skipped when the study is run again; an interrupted one resumes training from its last checkpoint.
Every file is written atomically (a temporary name, then a rename); weights that do not read back are retrained.
Relative paths in a preset (training configs, recipes) resolve against the current directory, as for `fit`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from lit_codellama.arguments import check_output_dir
from lit_codellama.checkpoint import OUR_CONFIG, OUR_WEIGHTS, check_safetensors
from lit_codellama.config import ModelConfig, set_dotted
from lit_codellama.errors import CheckpointError, ConfigError
from lit_codellama.files import atomic_path, write_text_atomic
from lit_codellama.precision import AUTO, precision_record
from lit_codellama.progress import progress_bar
from lit_codellama.provenance import provenance
from lit_codellama.studies.stats import RUN_COLUMNS, assess_claims, format_claims, format_summary, summarize
from lit_codellama.studies.study import Arm, Preset, Run, Study

RESULTS_DIR = Path("ablations", "results")  # the default parent of a study's results, under the current directory
CONFIDENCE = 0.95  # of the summary's intervals


@dataclass(frozen=True)
class Plan:
    """Everything a study run needs, resolved before anything trains: `Plan.make(...)` then `execute(plan)`."""

    study: Study
    preset_name: str
    preset: Preset
    runs: list[Run]
    out: Path

    @classmethod
    def make(cls, study: Study, preset: str | None = None, seeds: int | None = None, out: str | Path | None = None):
        preset = preset or study.default_preset
        out = check_output_dir(Path(out) if out is not None else RESULTS_DIR / study.name).absolute()
        return cls(study, preset, study.preset(preset), study.runs(preset, seeds), out)

    def run_dir(self, run: Run) -> Path:
        return self.out / "runs" / run.key

    def definition(self, run: Run) -> dict[str, Any]:
        """What `arm.yaml` records, free of paths: a finished run is reused only if its definition is unchanged."""
        arm = self.preset.arms[run.arm]
        definition = {
            "study": self.study.name,
            "preset": self.preset_name,
            "arm": run.arm,
            "seed": run.seed,
            "init_from": None if arm.init_from is None else Run(arm.init_from, run.seed).key,
            "rope": dict(arm.rope) if arm.rope else None,
        }
        if arm.train:
            config = self.preset.train_config(run.arm)
            set_dotted(config, "seed_everything", run.seed)
            set_dotted(config, "data.seed", run.seed)
            for key, value in arm.overrides.items():
                set_dotted(config, key, value)
            definition["train"] = config
        return definition

    def train_config(self, run: Run) -> dict[str, Any]:
        """The run's training config with its directory and starting weights filled in."""
        config = self.definition(run)["train"]
        init_from = self.preset.arms[run.arm].init_from
        if init_from is not None:
            set_dotted(config, "model.init_checkpoint", str(self.model_dir(Run(init_from, run.seed)).resolve()))
        set_dotted(config, "trainer.default_root_dir", str(self.run_dir(run).resolve()))
        return config

    def model_dir(self, run: Run) -> Path:
        """The weights a run evaluates: its own final weights, or (not training) those of the arm it starts from."""
        arm = self.preset.arms[run.arm]
        if not arm.train:
            return self.model_dir(Run(arm.init_from, run.seed))
        return self.run_dir(run) / "model"

    def settings(self, arm: str) -> dict[str, Any]:
        """The training settings (dotted keys) of the weights an arm evaluates, with the inference-time RoPE change."""
        spec = self.preset.arms[arm]
        trained = arm if spec.train else spec.init_from
        settings = _flatten(self.definition(Run(trained, 0))["train"])
        for key in ("seed_everything", "data.seed"):
            settings.pop(key, None)
        return {**settings, **{f"inference.{k}": v for k, v in (spec.rope or {}).items()}}

    def model_config(self, arm: str) -> dict[str, Any] | None:
        """The resolved `ModelConfig` (as a dict) of the weights an arm evaluates, its inference-time RoPE applied;
        None when those weights are not on disk (runs whose results were made elsewhere)."""
        spec = self.preset.arms[arm]
        path = self.model_dir(next(run for run in self.runs if run.arm == arm)) / OUR_CONFIG
        return ModelConfig.from_file(path, **(spec.rope or {})).to_dict() if path.is_file() else None

    def data_config(self, run: Run) -> dict[str, Any]:
        arm = self.preset.arms[run.arm]
        source = run if arm.train else Run(arm.init_from, run.seed)
        return self.definition(source)["train"].get("data", {})


def execute(plan: Plan, progress: bool = True) -> pd.DataFrame:
    """Train and evaluate every pending run, then write and print the tidy table and its summary. `progress`: a
    live bar per run on a terminal (training steps, then each evaluation); a line per finished run either way."""
    start = time.monotonic()
    plan.out.mkdir(parents=True, exist_ok=True)
    with _exclusive(plan.out):
        return _execute(plan, start, progress)


def _execute(plan: Plan, start: float, progress: bool) -> pd.DataFrame:
    pending = pending_runs(plan)
    print(f"{plan.study.name} ({plan.preset_name}): {len(plan.runs)} runs, {len(pending)} to do, results in {plan.out}")
    _build_corpora(plan, pending)  # now, so that the build's own progress comes before the runs' lines
    for i, run in enumerate(pending, 1):
        name = f"[{i}/{len(pending)}] {run.key}"
        with progress_bar(desc=name, unit="step", leave=False, enabled=progress) as bar:
            timings = execute_run(plan, run, bar)
        total, train_s = sum(timings.values()), timings.get("train_s", 0.0)
        print(f"{name} ... {total:.0f} s (training {train_s:.0f} s, evaluation {total - train_s:.0f} s)", flush=True)
    with atomic_path(plan.out / "runs.csv") as tmp:
        collect(plan).to_csv(tmp, index=False)
    table = pd.read_csv(plan.out / "runs.csv")  # what the claims recompute from
    summary = summarize(table, CONFIDENCE)
    with atomic_path(plan.out / "summary.csv") as tmp:
        labelled(plan, summary).to_csv(tmp, index=False)
    claims = assess_claims(table, plan.preset.claims)
    _write_study_json(plan, wall_s=time.monotonic() - start, ran=len(pending), claims=claims)
    print(f"\n{plan.study.question}\n")
    if claims:
        print(format_claims(claims, {name: arm.label or name for name, arm in plan.preset.arms.items()}) + "\n")
    print(format_summary(summary, list(plan.preset.arms)))
    print(
        f"\n(mean ± half-width of the {CONFIDENCE:.0%} t-interval over {table['seed'].nunique()} seed(s); "
        f"{time.monotonic() - start:.0f} s; tidy table: {plan.out / 'runs.csv'})"
    )
    return table


def pending_runs(plan: Plan) -> list[Run]:
    """Runs without `metrics.json`. A finished run whose definition changed is an error, not silently reused."""
    pending = []
    for run in plan.runs:
        run_dir = plan.run_dir(run)
        if not (run_dir / "metrics.json").is_file():
            pending.append(run)
            continue
        saved = yaml.safe_load((run_dir / "arm.yaml").read_text()) if (run_dir / "arm.yaml").is_file() else None
        if saved != _yaml_roundtrip(plan.definition(run)):
            raise ConfigError(
                f"{run_dir} holds a finished run of a different definition (another preset, or the study changed); "
                f"compare {run_dir / 'arm.yaml'} with `--dry-run`, then pass a fresh --out or delete that directory"
            )
    return pending


def execute_run(plan: Plan, run: Run, bar: tqdm | None = None) -> dict[str, float]:
    """Train (with the `fit` command's code path, resuming an interrupted run) unless the weights exist, evaluate,
    and write `metrics.json` last. Returns the seconds each step took. `bar` advances by training steps and then
    by evaluations."""
    from lit_codellama.studies.evaluations import evaluate
    from lit_codellama.training.callbacks import StepProgress
    from lit_codellama.training.cli import train

    run_dir = plan.run_dir(run)
    arm: Arm = plan.preset.arms[run.arm]
    weights = plan.model_dir(run) / OUR_WEIGHTS
    needs_training = arm.train and not _readable(weights)
    if needs_training and (weights.exists() or not any(run_dir.glob("checkpoints/*.ckpt"))):
        # Nothing to resume: logs left here (a crash before the first checkpoint, or results copied from elsewhere)
        # would mix with the new run's. Torn weights (an export cut short) make the whole run suspect.
        shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "arm.yaml", yaml.safe_dump(_plain(plan.definition(run)), sort_keys=False))
    timings: dict[str, float] = {}
    if bar is not None:
        bar.reset(total=len(plan.preset.evaluations))  # training adds its steps when it starts
    with _log_to(run_dir / "run.log"):
        if needs_training:
            start = time.monotonic()
            train(plan.train_config(run), run_dir=run_dir, callbacks=[StepProgress(bar)] if bar is not None else ())
            timings["train_s"] = round(time.monotonic() - start, 1)
        measurements, eval_timings = evaluate(
            plan.model_dir(run), arm.rope, plan.data_config(run), plan.preset.evaluations, run_dir / "eval", bar
        )
    result = {"arm": run.arm, "seed": run.seed, "measurements": measurements, "timings": {**timings, **eval_timings}}
    write_text_atomic(run_dir / "metrics.json", json.dumps(result, indent=2) + "\n")  # the "finished" marker
    return result["timings"]


def _build_corpora(plan: Plan, runs: list[Run]) -> None:
    """Build (or find in the cache) the corpus of every run's data, before any run starts."""
    from lit_codellama.data import CodeDataModule

    configs = {json.dumps(plan.data_config(run), sort_keys=True, default=str): plan.data_config(run) for run in runs}
    for config in configs.values():
        if "class_path" not in config:  # another data module builds its own data
            CodeDataModule(**config).corpus  # noqa: B018


def _readable(weights: Path) -> bool:
    try:
        check_safetensors(weights)
    except CheckpointError:
        return False
    return True


@contextmanager
def _exclusive(out: Path):
    """One study at a time in a results directory: two would train the same runs at once and tear each other's
    files. The lock is the operating system's (released when its process dies); `.lock.holder` says who holds it."""
    lock, holder = FileLock(out / ".lock"), out / ".lock.holder"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = holder.read_text().strip() if holder.is_file() else "another process"
        raise ConfigError(
            f"{out} is in use by another study ({who}); wait for it to finish, or pass another --out"
        ) from None
    try:
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_text_atomic(holder, f"pid {os.getpid()} on {platform.node()}, since {started}\n")
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def collect(plan: Plan) -> pd.DataFrame:
    """The tidy table of every run in the plan: study, preset, arm, seed, metric, coordinates..., value."""
    rows = []
    for run in plan.runs:
        result = json.loads((plan.run_dir(run) / "metrics.json").read_text())
        for m in result["measurements"]:
            rows.append({"study": plan.study.name, "preset": plan.preset_name, "arm": run.arm, "seed": run.seed, **m})
    table = pd.DataFrame(rows)
    coords = sorted(c for c in table.columns if c not in (*RUN_COLUMNS, "metric", "value"))
    return table[[*RUN_COLUMNS, "metric", *coords, "value"]]


def labelled(plan: Plan, summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as a file that stands on its own: which study and preset, the intervals' confidence, units."""
    from lit_codellama.studies.evaluations import unit_of

    table = summary.assign(confidence=CONFIDENCE, unit=summary["metric"].map(unit_of))
    table.insert(0, "study", plan.study.name)
    table.insert(1, "preset", plan.preset_name)
    return table


def describe(plan: Plan) -> str:
    """The plan in words and YAML: what `--dry-run` prints."""
    lines = [
        f"study {plan.study.name}, preset {plan.preset_name}: {len(plan.runs)} runs -> {plan.out}",
        plan.preset.notes.strip(),
        "",
        "evaluations:",
        yaml.safe_dump(_plain(plan.preset.evaluations)).rstrip(),
        "",
        "claims (stated before any run):",
        *(f"  {'primary' if c.primary else 'exploratory'}: {c.text} [{c.metric} {dict(c.where)}, {c.arm} vs "
          f"{c.baseline}, {c.transform}{'' if c.margin is None else f', margin ±{c.margin:g}'}]"
          for c in plan.preset.claims),
    ]
    for run in plan.runs:
        definition = plan.definition(run)
        if "train" in definition:
            definition["train"] = plan.train_config(run)  # as executed: with its directory and starting weights
        lines += ["", f"--- {run.key}", yaml.safe_dump(_plain(definition), sort_keys=False).rstrip()]
    return "\n".join(lines)


def _write_study_json(plan: Plan, wall_s: float, ran: int, claims: list[dict]) -> None:
    arms, shas = {}, set()
    for name, arm in plan.preset.arms.items():
        records = _training_records(plan, name)
        shas |= {r["corpus"]["sha256"] for r in records if (r.get("corpus") or {}).get("sha256")}
        arms[name] = {
            "label": arm.label or name,
            "init_from": arm.init_from,
            "train": arm.train,
            "overrides": _plain(arm.overrides),
            "rope": _plain(arm.rope),
            "settings": plan.settings(name),
            "model_config": plan.model_config(name),
            "precision": _common(r.get("precision") for r in records),
            "corpus": _common(r.get("corpus") for r in records),
        }
    info = {
        "study": plan.study.name,
        "question": plan.study.question,
        "preset": plan.preset_name,
        "notes": plan.preset.notes,
        "seeds": sorted({run.seed for run in plan.runs}),
        "arms": arms,
        "evaluations": _plain(plan.preset.evaluations),
        "data": {"largest_document_share": _largest_document_share(plan)},
        "claims": claims,
        "confidence": CONFIDENCE,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "invocation_wall_s": round(wall_s, 1),  # this invocation only: a resumed study ran in several
        "run_seconds": round(sum(_run_seconds(plan, run) for run in plan.runs), 1),  # training + evaluation, all runs
        "runs_executed": ran,
        # Of this invocation; each run's own is in its run.json. Precision: the one every arm's training runs share
        # (null where they differ; then see `arms`).
        **provenance(precision=_common(spec["precision"] for spec in arms.values())),
        # What the training runs recorded (a list if the arms trained on several corpora).
        "corpus": {"sha256": sorted(shas)[0] if len(shas) == 1 else sorted(shas) or None},
    }
    info["machine"]["load_average_at_finish"] = [round(x, 2) for x in os.getloadavg()]
    info["machine"]["precision_auto"] = precision_record(AUTO, "auto")  # what `precision: auto` resolves to here
    write_text_atomic(plan.out / "study.json", json.dumps(info, indent=2) + "\n")


def _largest_document_share(plan: Plan) -> float | None:
    """The most of its run's training tokens any one document can be, over the training arms (seed-independent)."""
    from lit_codellama.data.datamodule import planned_document_share

    shares = [planned_document_share(plan.definition(Run(arm, 0))["train"]) for arm, spec in plan.preset.arms.items()
              if spec.train]
    return max((share for share in shares if share is not None), default=None)


def _training_records(plan: Plan, arm: str) -> list[dict[str, Any]]:
    """The `run.json` of the training runs behind an arm's weights (its own, or those of the arm it evaluates)."""
    paths = [plan.model_dir(run).parent / "run.json" for run in plan.runs if run.arm == arm]
    return [json.loads(path.read_text()) for path in paths if path.is_file()]


def _common(values) -> Any:
    """The value all of `values` share; None if they differ or there are none."""
    distinct = {json.dumps(v, sort_keys=True) for v in values}
    return json.loads(distinct.pop()) if len(distinct) == 1 else None


def _run_seconds(plan: Plan, run: Run) -> float:
    return sum(json.loads((plan.run_dir(run) / "metrics.json").read_text())["timings"].values())


def _plain(value: Any) -> Any:
    """Mappings and tuples as plain dicts and lists, so YAML and JSON dumps read naturally."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _plain(value)
    return flat


def _yaml_roundtrip(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(_plain(value)))


@contextmanager
def _log_to(path: Path):
    """Copy every log record and warning emitted during a run into `path` (Lightning's loggers do not propagate);
    the console shows only Lightning's warnings and errors, so that a study's progress lines stay readable."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in ("", "lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    consoles = [h for logger in loggers[1:] for h in logger.handlers if type(h) is logging.StreamHandler]
    console_levels = [h.level for h in consoles]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    for console in consoles:
        console.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
        for console, level in zip(consoles, console_levels, strict=True):
            console.setLevel(level)
        handler.close()
