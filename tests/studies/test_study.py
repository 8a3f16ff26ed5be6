import inspect
import io
import json
import logging

import pandas as pd
import pytest
import yaml

from lit_codellama.checkpoint import OUR_CONFIG
from lit_codellama.config import ModelConfig, set_dotted
from lit_codellama.errors import ConfigError
from lit_codellama.studies import Arm, Plan, Preset, Run, Study, collect, execute
from lit_codellama.studies.analysis import StudyResults
from lit_codellama.studies.study import Claim
from lit_codellama.studies.runner import _log_to, pending_runs

BASE = {
    "model": {"model_config": {"preset": "cl-1m"}, "lr": 1e-3},
    "data": {"seq_len": 64},
    "trainer": {"max_steps": 5},
}


def lcft_study(**arms_overrides) -> Study:
    arms = {
        "lcft": Arm({"data.seq_len": 256, "model.model_config.rope_theta": 1e6}, init_from="pretrain"),
        "pretrain": Arm({"model.model_config.rope_theta": 1e4}),
        "inference_theta": Arm(init_from="pretrain", train=False, rope={"rope_theta": 1e6}),
        **arms_overrides,
    }
    return Study("lcft", "does it work?", {"small": Preset(BASE, arms, evaluations={"val_loss": {}}, seeds=2)})


def test_runs_expand_arms_times_seeds_with_parents_first():
    runs = lcft_study().runs("small")
    assert len(runs) == 3 * 2
    assert [r.arm for r in runs].index("pretrain") < [r.arm for r in runs].index("lcft")
    assert [r.arm for r in runs].index("pretrain") < [r.arm for r in runs].index("inference_theta")
    assert {r.seed for r in runs} == {0, 1}
    assert len(lcft_study().runs("small", seeds=5)) == 15


def test_arm_overrides_seed_and_parent_weights_reach_the_training_config(tmp_path):
    plan = Plan.make(lcft_study(), "small", out=tmp_path)
    config = plan.train_config(Run("lcft", 1))
    assert config["model"]["model_config"] == {"preset": "cl-1m", "rope_theta": 1e6}
    assert config["data"] == {"seq_len": 256, "seed": 1}
    assert config["seed_everything"] == 1
    assert config["model"]["init_checkpoint"] == str((tmp_path / "runs/pretrain/seed=1/model").resolve())
    assert config["trainer"]["default_root_dir"] == str((tmp_path / "runs/lcft/seed=1").resolve())
    assert BASE["data"] == {"seq_len": 64}, "the preset's base config must not be modified"


def test_an_evaluation_only_arm_evaluates_its_parents_weights(tmp_path):
    plan = Plan.make(lcft_study(), "small", out=tmp_path)
    run = Run("inference_theta", 0)
    assert plan.model_dir(run) == tmp_path / "runs/pretrain/seed=0/model"
    assert "train" not in plan.definition(run)
    assert plan.data_config(run) == {"seq_len": 64, "seed": 0}


@pytest.mark.parametrize(
    "arms, message",
    [
        ({"a": Arm(init_from="missing")}, "unknown arm 'missing'"),
        ({"a": Arm(init_from="b"), "b": Arm(init_from="a")}, "cycle"),
        ({"a": Arm(train=False)}, "needs `init_from`"),
        ({"a": Arm(), "b": Arm({"data.seq_len": 8}, init_from="a", train=False)}, "training config would be ignored"),
        ({"a/b": Arm()}, "plain directory name"),
        ({"a": Arm(), "b": Arm(init_from="a", train=False, rope={"theta": 1e6})},
         r"rope has unknown key\(s\) \['theta'\]; valid keys: \['rope_theta', 'rope_scaling'\]"),
    ],
)
def test_inconsistent_arms_are_rejected_when_the_study_is_declared(arms, message):
    with pytest.raises(ConfigError, match=message):
        Study("bad", "?", {"small": Preset(BASE, arms, evaluations={})})


def test_unknown_preset_names_the_available_ones():
    with pytest.raises(ConfigError, match=r"no preset 'huge'.*\['small'\]"):
        lcft_study().runs("huge")


def test_set_dotted_creates_sections_and_refuses_to_descend_into_a_value():
    config = {"model": {"model_config": "cl-1m"}}
    set_dotted(config, "trainer.max_steps", 3)
    assert config["trainer"] == {"max_steps": 3}
    with pytest.raises(ConfigError, match="'model_config' is 'cl-1m', not a section"):
        set_dotted(config, "model.model_config.rope_theta", 1e6)


def finish(plan: Plan, run: Run, measurements: list[dict], run_json: dict | None = None) -> None:
    """What `execute_run` leaves behind for a finished run (and the training CLI's `run.json`, if given)."""
    run_dir = plan.run_dir(run)
    run_dir.mkdir(parents=True)
    (run_dir / "arm.yaml").write_text(yaml.safe_dump(plan.definition(run), sort_keys=False))
    (run_dir / "metrics.json").write_text(json.dumps({"measurements": measurements, "timings": {"train_s": 1.0}}))
    if plan.preset.arms[run.arm].train:  # the trained weights' config, which study.json records per arm
        (run_dir / "model").mkdir()
        (run_dir / "model" / OUR_CONFIG).write_text(yaml.safe_dump(ModelConfig.from_name("cl-1m").to_dict()))
    if run_json is not None:
        (run_dir / "run.json").write_text(json.dumps(run_json))


def test_finished_runs_are_skipped_and_the_rest_stay_pending(tmp_path):
    plan = Plan.make(lcft_study(), "small", out=tmp_path)
    finish(plan, Run("pretrain", 0), [{"metric": "val_loss", "value": 2.0}])
    (plan.run_dir(Run("pretrain", 1))).mkdir(parents=True)  # interrupted: no metrics.json
    pending = pending_runs(plan)
    assert Run("pretrain", 0) not in pending
    assert Run("pretrain", 1) in pending and len(pending) == 5


def test_a_finished_run_with_another_definition_is_an_error_not_reused(tmp_path):
    finish(Plan.make(lcft_study(), "small", out=tmp_path), Run("pretrain", 0), [])
    changed = lcft_study(pretrain=Arm({"model.model_config.rope_theta": 5e5}))
    with pytest.raises(ConfigError, match=r"runs/pretrain/seed=0 holds a finished run of a different definition"):
        pending_runs(Plan.make(changed, "small", out=tmp_path))


def test_tidy_table_has_one_row_per_arm_seed_metric_and_coordinate(tmp_path):
    plan = Plan.make(lcft_study(), "small", out=tmp_path)
    for run in plan.runs:
        finish(
            plan,
            run,
            [
                {"metric": "val_loss", "value": 2.0 + run.seed},
                *({"metric": "perplexity", "length": n, "value": 10.0 / n} for n in (64, 128, 256)),
                *({"metric": "middle_loss", "mode": m, "value": 1.0} for m in ("psm", "spm")),
            ],
        )
    table = collect(plan)
    assert list(table.columns) == ["study", "preset", "arm", "seed", "metric", "length", "mode", "value"]
    assert len(table) == len(plan.runs) * (1 + 3 + 2)
    assert not table.duplicated(["arm", "seed", "metric", "length", "mode"]).any()
    assert table.loc[table.metric == "val_loss", "length"].isna().all()
    assert set(table.loc[table.metric == "perplexity", "length"]) == {64, 128, 256}
    assert pd.api.types.is_float_dtype(table["value"])


@pytest.fixture
def no_corpus(monkeypatch):
    """study.json's planned document share reads the corpus, which these finished runs lack."""
    from lit_codellama.studies import runner

    monkeypatch.setattr(runner, "_largest_document_share", lambda plan: None)


def test_study_json_and_summary_say_where_the_results_come_from_and_what_they_measure(tmp_path, no_corpus):
    plan = Plan.make(lcft_study(), "small", out=tmp_path)
    corpus = {"path": "/corpora/default", "fingerprint": "f" * 16, "sha256": "a" * 64}
    for run in plan.runs:
        trains = plan.preset.arms[run.arm].train
        finish(plan, run, [{"metric": "val_loss", "value": 2.0 + run.seed},
                           {"metric": "humaneval_pass@1", "value": 0.25 * run.seed}],
               {"precision": "bf16-mixed", "corpus": corpus} if trains else None)
    execute(plan)
    info = json.loads((tmp_path / "study.json").read_text())
    assert len(info["git"]["commit"]) == 40 and isinstance(info["git"]["dirty"], bool)
    assert {"python", "torch", "lightning", "deepspeed", "transformers", "datasets"} <= set(info["versions"])
    assert info["machine"]["cpu"] and "cpu_flags" in info["machine"] and info["machine"]["cpus"] >= 1
    assert info["precision"] == "bf16-mixed" and info["corpus"]["sha256"] == "a" * 64
    assert info["arms"]["pretrain"]["corpus"] == corpus  # what the training runs recorded
    # An evaluation-only arm reports the training of the weights it evaluates.
    assert info["arms"]["inference_theta"]["precision"] == "bf16-mixed"
    assert info["arms"]["inference_theta"]["corpus"]["sha256"] == "a" * 64
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.columns[:2]) == ["study", "preset"] and {"confidence", "unit"} <= set(summary.columns)
    assert set(summary["study"]) == {"lcft"} and set(summary["preset"]) == {"small"}
    assert (summary["confidence"] == 0.95).all()
    units = dict(zip(summary["metric"], summary["unit"], strict=False))
    assert units == {"val_loss": "nats/token", "humaneval_pass@1": "fraction"}
    assert summary.loc[summary["metric"] == "humaneval_pass@1", "mean"].max() <= 1  # a fraction, not a percentage


def test_corpora_are_built_before_the_first_run_line(tmp_path, monkeypatch, capsys, no_corpus):
    """The build prints its own progress; it must not land in the middle of a run's line."""
    import lit_codellama.data
    from lit_codellama.studies import runner

    class Data:
        def __init__(self, **config):
            self.config = config

        @property
        def corpus(self):
            print(f"building corpus for seq_len={self.config['seq_len']}")

    def execute_run(plan, run, bar=None):
        finish(plan, run, [{"metric": "val_loss", "value": 1.0}])
        return {"train_s": 1.0}

    monkeypatch.setattr(lit_codellama.data, "CodeDataModule", Data)
    monkeypatch.setattr(runner, "execute_run", execute_run)
    execute(Plan.make(lcft_study(), "small", out=tmp_path), progress=False)
    lines = capsys.readouterr().out.splitlines()
    builds = [i for i, line in enumerate(lines) if line.startswith("building corpus")]
    runs = [i for i, line in enumerate(lines) if line.startswith("[")]
    assert len(builds) == 4  # one per distinct data config: seq_len 64 and 256 x data seeds 0 and 1
    assert len(runs) == 6 and max(builds) < min(runs)


@pytest.mark.parametrize(
    "evaluations, message",
    [({"bleu": {}}, "unknown evaluation 'bleu'"), ({"perplexity": {"length": [64]}}, "'perplexity' settings")],
)
def test_unknown_evaluations_and_settings_are_rejected_when_the_study_is_declared(evaluations, message):
    with pytest.raises(ConfigError, match=message):
        Study("bad", "?", {"small": Preset(BASE, {"a": Arm()}, evaluations=evaluations)})


@pytest.mark.parametrize(
    "name, preset",
    [(name, preset) for name in ("fim_rate", "rope_base", "long_context") for preset in ("tiny", "small", "paper", "gpu")]
    + [("fim_rate", "scaling")],
)
def test_every_preset_of_every_study_resolves_to_runnable_configs(name, preset, tmp_path, capsys):
    from lit_codellama.studies.cli import load_study, run_cli

    study = load_study(name)
    assert run_cli(study, ["--preset", preset, "--out", str(tmp_path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    plan = Plan.make(study, preset, out=tmp_path)
    assert printed.count("\n--- ") == len(plan.runs) == len(study.preset(preset).arms) * study.preset(preset).seeds
    for run in plan.runs:
        if study.preset(preset).arms[run.arm].train:
            config = plan.train_config(run)
            assert {"model", "data", "trainer"} <= set(config)
            assert config["data"]["seed"] == config["seed_everything"] == run.seed
    assert not any(tmp_path.iterdir()), "a dry run writes nothing"


@pytest.mark.parametrize("name", ["fim_rate", "rope_base", "long_context"])
def test_gpu_presets_train_a_100m_model_in_bf16_on_one_gpu_with_configs_fit_accepts(name, tmp_path, capsys):
    from lit_codellama.studies.cli import load_study
    from lit_codellama.training.cli import main

    study = load_study(name)
    plan = Plan.make(study, "gpu", out=tmp_path)
    for run in plan.runs:
        if not study.preset("gpu").arms[run.arm].train:
            continue
        config = plan.train_config(run)
        assert config["model"]["model_config"]["preset"] == "cl-100m"
        assert config["trainer"] | {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"} == config["trainer"]
        with pytest.raises(SystemExit) as exit_:  # parses and validates every key, instantiates nothing
            main(["fit", "--config", yaml.safe_dump(config), "--print_config"])
        assert exit_.value.code in (0, None)
    capsys.readouterr()


def test_a_runs_lightning_chatter_goes_to_its_log_and_only_warnings_reach_the_console(tmp_path, monkeypatch):
    # Outside pytest Lightning prints through a StreamHandler of its own on "lightning.pytorch"; stand one in.
    lightning_logger, screen = logging.getLogger("lightning.pytorch"), io.StringIO()
    monkeypatch.setattr(lightning_logger, "handlers", [logging.StreamHandler(screen)])
    monkeypatch.setattr(lightning_logger, "level", logging.INFO)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with _log_to(tmp_path / "run.log"):
        rank_zero.info("GPU available: False")
        rank_zero.warning("checkpoint directory is not empty")
    rank_zero.info("after the run")
    log = (tmp_path / "run.log").read_text()
    assert "GPU available" in log and "checkpoint directory is not empty" in log
    assert "GPU available" not in screen.getvalue() and "checkpoint directory is not empty" in screen.getvalue()
    assert "after the run" in screen.getvalue()  # the console is restored afterwards


def test_claims_comparing_unknown_arms_or_with_a_bad_transform_are_rejected_when_the_study_is_declared():
    arms = {"a": Arm(), "b": Arm()}
    for bad, message in [
        (Claim("?", "val_loss", "a", "c"), "compares unknown arm 'c'"),
        (Claim("?", "val_loss", "a", "b", transform="ratio"), "transform 'ratio'"),
        (Claim("?", "val_loss", "a", "b", margin=-0.1), "margin must be positive"),
    ]:
        with pytest.raises(ConfigError, match=message):
            Study("bad", "?", {"small": Preset(BASE, arms, evaluations={}, claims=(bad,))})


def test_study_json_claims_recompute_from_runs_csv_and_the_answer_is_printed_first(tmp_path, capsys, monkeypatch):
    # No corpus here: what study.json records of the data is not under test.
    monkeypatch.setattr("lit_codellama.data.datamodule.planned_document_share", lambda config: None)
    claims = (Claim("θ matters", "val_loss", "lcft", "pretrain", direction=-1),
              Claim("no cost", "perplexity", "lcft", "pretrain", where={"length": 128}, transform="log_ratio",
                    margin=0.05, primary=False))
    study = lcft_study()
    preset = study.preset("small")
    study = Study("lcft", "does it work?", {"small": Preset(BASE, preset.arms, preset.evaluations, seeds=3,
                                                            claims=claims)})
    plan = Plan.make(study, "small", out=tmp_path)
    for run in plan.runs:
        lcft = run.arm == "lcft"
        finish(plan, run, [{"metric": "val_loss", "value": 2.0 + run.seed - 0.1 * lcft - 0.01 * run.seed * lcft},
                           *({"metric": "perplexity", "length": n, "value": 10.0 + run.seed + n / 1e3 * lcft}
                             for n in (64, 128))])
    execute(plan)
    printed = capsys.readouterr().out
    info = json.loads((tmp_path / "study.json").read_text())
    assert [c["verdict"] for c in info["claims"]] == ["reproduced", "equivalent"]  # +1.2% [0.9%, 1.4%]: inside ±5%
    assert info["claims"] == StudyResults(tmp_path).claims()
    answer, table = printed.index("PRIMARY: θ matters"), printed.index("val_loss  ")
    assert answer < printed.index("exploratory: no cost") < table


def test_the_scaling_preset_trains_each_size_on_the_same_tokens_per_parameter(tmp_path):
    from lit_codellama.studies.cli import load_study
    from lit_codellama.studies.configs import non_embedding_parameters

    plan = Plan.make(load_study("fim_rate"), "scaling", out=tmp_path)
    ratios, sizes = {}, set()
    for run in plan.runs:
        config = plan.train_config(run)
        model = {k: v for k, v in config["model"]["model_config"].items() if k not in ("preset", "block_size")}
        tokens = config["trainer"]["max_steps"] * config["data"]["batch_size"] * config["data"]["seq_len"]
        sizes.add(non_embedding_parameters("cl-1m", **model))
        ratios[run.arm] = tokens / non_embedding_parameters("cl-1m", **model)
        assert config["trainer"]["max_steps"] == 4 * config["trainer"]["val_check_interval"]  # validates each quarter
    assert len({round(r, 1) for r in ratios.values()}) == 1 and len(ratios) == 6 and len(sizes) == 3


@pytest.mark.parametrize("name", ["fim_rate", "rope_base", "long_context"])
def test_every_claim_points_at_a_measurement_its_preset_makes(name):
    from lit_codellama.evaluation.likelihood import position_buckets
    from lit_codellama.studies.cli import load_study
    from lit_codellama.studies.evaluations import val_loss_curve

    for preset_name, preset in load_study(name).presets.items():
        for claim in preset.claims:
            where = f"{name}/{preset_name}: {claim.text}"
            if claim.metric == "context_gain":
                settings = preset.evaluations["context_gain"]
                starts = [start for start, _ in position_buckets(settings["window"], settings["max_length"])]
                assert claim.where["position"] in starts, where
            elif claim.metric.startswith("key_retrieval"):
                assert claim.where["length"] in preset.evaluations["key_retrieval"]["lengths"], where
            elif claim.metric == "val_loss_curve":
                default = inspect.signature(val_loss_curve).parameters["fractions"].default
                assert claim.where["fraction"] in preset.evaluations["val_loss_curve"].get("fractions", default), where
        assert not preset.claims or any(c.primary for c in preset.claims) or preset_name == "scaling"


@pytest.mark.parametrize("name", ["rope_base", "long_context"])
def test_long_context_presets_have_the_papers_rotary_geometry_and_look_8x_past_lcft(name):
    from lit_codellama.config import ModelConfig
    from lit_codellama.studies.cli import load_study
    from lit_codellama.studies.rope import critical_dimension

    plan = Plan.make(load_study(name), "small")
    pretrain = next(arm for arm, spec in plan.preset.arms.items() if spec.init_from is None)
    config = plan.definition(Run(pretrain, 0))["train"]["model"]["model_config"]
    model = ModelConfig.from_name(config["preset"], **{k: v for k, v in config.items() if k != "preset"})
    assert model.head_size >= 64
    # Llama 2 at 4K with θ = 1e4 gives 92 of 128 dimensions a full period inside the window
    assert critical_dimension(model.head_size, model.rope_theta, model.block_size) / model.head_size == 92 / 128
    lcft_length = max(plan.settings(arm)["data.seq_len"] for arm in plan.preset.arms)
    assert plan.preset.evaluations["context_gain"]["max_length"] >= 8 * lcft_length
    assert plan.preset.evaluations["context_gain"]["n_documents"] >= 32


@pytest.mark.parametrize("preset", ["tiny", "small", "gpu", "paper"])
def test_lcft_and_its_control_read_the_same_documents_pretraining_never_read(preset):
    from lit_codellama.studies.cli import load_study

    plan = Plan.make(load_study("long_context"), preset)
    lcft, control = (plan.train_config(Run(arm, 0))["data"] for arm in ("lcft", "continued"))
    lcft = lcft.get("init_args", lcft)
    assert lcft["stage"] == control["stage"] == "continued"
    assert lcft["min_doc_tokens"] == control["min_doc_tokens"] >= lcft["seq_len"] / 2 > control["seq_len"]
    assert lcft["fim_rate"] == control["fim_rate"]
