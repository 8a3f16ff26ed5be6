"""End-to-end `fit` on one CPU process: what a run directory holds, stage chaining, failure modes."""

import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, tiny_config
from lightning.pytorch.utilities.exceptions import SIGTERMException
from probes import PoisonAtStep, TerminateAtStep
from tqdm import tqdm

import lit_codellama
from lit_codellama.checkpoint import load_model
from lit_codellama.cli import main as dispatch
from lit_codellama.data import load_corpus
from lit_codellama.errors import CheckpointError, ConfigError
from lit_codellama.training import train
from lit_codellama.provenance import git_state
from lit_codellama.training.callbacks import NonFiniteLossError, StepProgress
from lit_codellama.training.cli import main


@pytest.fixture(scope="module")
def run(corpus_dir, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("fit") / "run"
    model_dir = train(tiny_config(corpus_dir, run_dir, max_steps=8), run_dir=run_dir)
    assert model_dir == run_dir / "model"
    return run_dir


def checkout_commit() -> str | None:
    package = Path(lit_codellama.__file__).parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True)
    return head.stdout.strip() if head.returncode == 0 else None


def test_git_state_is_the_checkouts_commit_and_dirtiness_and_null_outside_one(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    (tmp_path / "tracked.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "tracked.py"], ["commit", "-q", "-m", "one"]):
        subprocess.run([*git, *args], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert git_state(tmp_path) == {"commit": commit, "dirty": False}
    results = tmp_path / "ablations" / "results" / "study.json"  # committed results a study run rewrites
    results.parent.mkdir(parents=True)
    results.write_text("{}")
    for args in (["add", str(results)], ["commit", "-q", "-m", "results"]):
        subprocess.run([*git, *args], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    results.write_text('{"rerun": true}')
    assert git_state(tmp_path) == {"commit": commit, "dirty": False}
    (tmp_path / "tracked.py").write_text("x = 2\n")
    assert git_state(tmp_path) == {"commit": commit, "dirty": True}


def test_run_directory_holds_config_metadata_logs_checkpoints_and_model(run):
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["trainer"]["max_steps"] == 8 and config["data"]["init_args"]["fim_rate"] == 0.5
    hparams = yaml.safe_load((run / "hparams.yaml").read_text())
    assert hparams["vocab_size"] == 512  # linked from the data's tokenizer
    metadata = json.loads((run / "run.json").read_text())
    assert metadata["seed"] == 1234 and metadata["world_size"] == 1 and metadata["resumed_from"] is None
    assert list(run.glob("events.out.tfevents.*"))
    names = {p.name for p in (run / "checkpoints").iterdir()}
    assert {"step=2.ckpt", "step=4.ckpt", "step=6.ckpt", "step=8.ckpt", "last.ckpt", "final.ckpt"} <= names
    assert {p.name for p in (run / "model").iterdir()} == {"model_config.yaml", "model.safetensors", "tokenizer.model"}


def test_loss_falls_and_validation_reports_loss_perplexity_bits_per_byte_and_throughput(run):
    metrics = pd.read_csv(run / "metrics.csv")
    train_loss = metrics.dropna(subset=["train/loss"])
    assert list(train_loss["step"]) == list(range(8))
    assert train_loss["train/loss"].iloc[-1] < train_loss["train/loss"].iloc[0] - 0.5
    val = metrics.dropna(subset=["val/loss"])
    assert len(val) == 2  # every 4 steps
    assert val["val/ppl"].tolist() == pytest.approx([math.exp(v) for v in val["val/loss"]], rel=1e-5)
    assert (val["val/bpb"] > 0).all() and (val["val/bpb"] < val["val/loss"] / math.log(2)).all()  # > 1 byte/token
    tokens_per_s = metrics["train/device/items_per_sec"].dropna()
    assert len(tokens_per_s) and (tokens_per_s > 0).all()
    assert (metrics["train/device/mfu"].dropna().between(0, 1, inclusive="neither")).all()


def test_run_json_records_code_libraries_machine_precision_and_corpus(run, corpus_dir):
    metadata = json.loads((run / "run.json").read_text())
    assert metadata["git"]["commit"] == checkout_commit()  # None outside a checkout
    assert isinstance(metadata["git"]["dirty"], bool) or metadata["git"]["commit"] is None
    assert set(metadata["versions"]) >= {"python", "torch", "lightning", "deepspeed", "transformers", "datasets"}
    assert metadata["versions"]["torch"] == torch.__version__
    assert metadata["machine"]["cpu"] and metadata["machine"]["cpus"] >= 1
    assert metadata["precision"] == "32-true"
    corpus = json.loads((corpus_dir / "corpus.json").read_text())
    assert metadata["corpus"]["path"] == str(corpus_dir.resolve())
    assert metadata["corpus"]["fingerprint"] == corpus["fingerprint"]
    assert metadata["corpus"]["sha256"] == load_corpus(corpus_dir).sha256 and len(metadata["corpus"]["sha256"]) == 64


def test_a_resumed_run_records_the_checkpoint_it_resumed_from_and_its_bar_starts_there(corpus_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_config(corpus_dir, run_dir, max_steps=4, every=2)
    bar = tqdm(total=3, file=io.StringIO())  # e.g. a study run's: 3 evaluations follow the training steps
    with pytest.raises(SIGTERMException):
        train(config, callbacks=[StepProgress(bar), TerminateAtStep(1)])  # step 2 completes, then the run stops
    assert (bar.n, bar.total) == (2, 4 + 3)
    assert json.loads((run_dir / "run.json").read_text())["resumed_from"] is None
    bar = tqdm(total=0, file=io.StringIO())
    train(config, callbacks=[StepProgress(bar)])  # `--ckpt_path last`
    assert (bar.n, bar.total) == (4, 4)
    metadata = json.loads((run_dir / "run.json").read_text())
    assert metadata["resumed_from"] == str((run_dir / "checkpoints" / "last.ckpt").resolve())
    assert metadata["resumed_at_step"] == 2


def test_lightning_checkpoint_and_exported_model_hold_the_same_weights(run):
    checkpoint = torch.load(run / "checkpoints" / "final.ckpt", weights_only=False)
    exported_config = yaml.safe_load((run / "model/model_config.yaml").read_text())
    assert checkpoint["hyper_parameters"]["model_config"] == exported_config
    assert all(k.startswith("model.") for k in checkpoint["state_dict"])
    from_checkpoint = load_model(run / "checkpoints" / "final.ckpt")
    exported = load_model(run / "model")
    for (name, a), (_, b) in zip(from_checkpoint.state_dict().items(), exported.state_dict().items()):
        assert torch.equal(a, b), name


def test_validate_scores_a_checkpoint_and_leaves_the_run_record_alone(run, capsys):
    records = {name: (run / name).read_text() for name in ("config.yaml", "run.json")}
    config = yaml.safe_load(records["config.yaml"])
    config["trainer"]["logger"] = False
    validate = run.parent / "validate.yaml"
    validate.write_text(yaml.safe_dump(config))
    assert main(["validate", "--config", str(validate), "--ckpt_path", str(run / "checkpoints/final.ckpt")]) == 0
    assert re.search(r"val/bpb\W+[0-9.]+", capsys.readouterr().out)
    assert records == {name: (run / name).read_text() for name in records}


def test_next_stage_starts_from_the_exported_weights_with_a_new_rope_theta(run, corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path / "lcft", max_steps=1)
    config["model"]["model_config"] = {"preset": "cl-1m", "rope_theta": 1e6, "block_size": 128}
    config["model"]["betas"] = [0.9, 0.95, 0.99]
    path = tmp_path / "lcft.yaml"
    path.write_text(yaml.safe_dump(config))
    model_dir = train(path, overrides={"model.init_checkpoint": str(run / "model"), "model.lr": 1e-12,
                                       "model.warmup_steps": 1, "data.seq_len": 128, "model.betas": [0.8, 0.9]})
    before, after = load_model(run / "model"), load_model(model_dir)
    assert after.config.rope_theta == 1e6 and after.config.block_size == 128
    resolved = yaml.safe_load((tmp_path / "lcft" / "config.yaml").read_text())["model"]
    assert resolved["betas"] == [0.8, 0.9] and resolved["init_checkpoint"] == str(run / "model")
    for (name, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)  # one step at lr 1e-12


def test_a_starting_checkpoint_of_another_shape_names_the_tensor(run, corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path / "wider")
    config["model"]["init_checkpoint"] = str(run / "model")
    config["model"]["model_config"] = {"preset": "cl-1m", "intermediate_size": 128}
    with pytest.raises(CheckpointError, match=r"feed_forward\.w1\.weight has shape \(256, 96\).*expects \(128, 96\)"):
        train(config)


def test_data_tokenized_differently_from_the_starting_checkpoint_is_refused(run, corpus_dir, tmp_path):
    other = tmp_path / "other-tokenizer"
    other.mkdir()
    (other / "model_config.yaml").write_text((run / "model/model_config.yaml").read_text())
    (other / "model.safetensors").write_bytes((run / "model/model.safetensors").read_bytes())
    from lit_codellama.tokenizer import train_tokenizer

    texts = ["def f(x):\n    return x + 1\n" * 50, "class A:\n    pass\n" * 50]
    train_tokenizer(texts, other / "tokenizer", vocab_size=300)  # writes other/tokenizer.model
    config = tiny_config(corpus_dir, tmp_path / "mismatch")
    config["model"]["init_checkpoint"] = str(other)
    with pytest.raises(ConfigError, match="was trained with the tokenizer"):
        train(config)


def test_non_finite_loss_stops_before_the_update_and_keeps_the_last_good_checkpoint(corpus_dir, tmp_path):
    run_dir = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"at step 5.*Last good checkpoint: .*last\.ckpt"):
        train(tiny_config(corpus_dir, run_dir), callbacks=[PoisonAtStep(5)])
    names = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert names == {"step=2.ckpt", "step=4.ckpt", "last.ckpt"}
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 4
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())
    assert not (run_dir / "model").exists()


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*nope\.yaml does not exist"):
        train(tmp_path / "nope.yaml")


def test_unknown_config_key_names_the_closest_and_lists_the_valid_keys(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path / "typo")
    config["model"]["lrr"] = config["model"].pop("lr")
    expected = r"unknown config key 'model\.lrr'\. Did you mean model\.lr.*Valid keys under 'model': .*warmup_steps"
    with pytest.raises(ConfigError, match=expected):
        train(config)
    config = tiny_config(corpus_dir, tmp_path / "typo")
    config["data"]["fim_ratee"] = 0.5
    with pytest.raises(ConfigError, match=r"unknown config key 'data\.fim_ratee'\. Did you mean data\.fim_rate"):
        train(config)


@pytest.mark.parametrize(
    "typo, key, closest",
    [(["--model.lrr", "1"], "model.lrr", "model.lr"), (["--data.fim_ratee=0.5"], "data.fim_ratee", "data.fim_rate")],
)
def test_command_line_typo_names_the_closest_key_like_a_yaml_typo(corpus_dir, tmp_path, capsys, typo, key, closest):
    from lit_codellama.cli import main

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(corpus_dir, tmp_path / "run")))
    assert main(["fit", "--config", str(path), *typo]) == 2
    assert capsys.readouterr().err.startswith(f"error: unknown config key {key!r}. Did you mean {closest} ")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("--data.batch_size=0", "batch_size"),
        ("--data.seq_len=0", "seq_len"),
        ("--data.fim_rate=1.5", "fim_rate"),
        ("--data.fim_rate=-0.1", "fim_rate"),
        ("--model.lr=0", "lr"),
        ("--model.lr=-1e-3", "lr"),
        ("--model.model_config={preset: cl-1m, n_head: four}", "n_head"),
        ("--data.seq_len=1024", "block_size=512"),  # cl-1m trains on 512-token contexts
    ],
)
def test_an_out_of_range_fit_value_is_one_error_line_naming_the_field(override, field, corpus_dir, tmp_path, capsys):
    config = tmp_path / "fit.yaml"
    config.write_text(yaml.safe_dump(tiny_config(corpus_dir, tmp_path / "run")))
    assert dispatch(["fit", "--config", str(config), override]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and field in errors[0] and "Traceback" not in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training


def test_resuming_a_finished_run_whose_export_was_cut_short_exports_it(run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(run, run_dir, ignore=shutil.ignore_patterns("model"))  # killed while writing model/
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["trainer"]["default_root_dir"] = str(run_dir)
    config["checkpoint"]["dirpath"] = None
    train(config)  # resumes at the last step: nothing to train
    exported, original = load_model(run_dir / "model"), load_model(run / "model")
    for name, tensor in original.state_dict().items():
        assert torch.equal(exported.state_dict()[name], tensor), name
    assert (run_dir / "model" / "tokenizer.model").read_bytes() == (run / "model" / "tokenizer.model").read_bytes()


@pytest.mark.parametrize("given", ["path", "last"])
def test_a_torn_resume_checkpoint_is_one_error_line_naming_it(given, run, corpus_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(run / "checkpoints", run_dir / "checkpoints")
    torn = run_dir / "checkpoints" / "last.ckpt"
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])  # e.g. the disk filled up mid-save
    config = tmp_path / "fit.yaml"
    config.write_text(yaml.safe_dump(tiny_config(corpus_dir, run_dir)))
    assert dispatch(["fit", "--config", str(config), "--ckpt_path", str(torn) if given == "path" else "last"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(torn) in errors[0] and "Traceback" not in err, err


STAGES = sorted((REPO / "configs" / "train").glob("*.yaml"))
OVERLAYS = sorted((REPO / "configs" / "train" / "strategy").glob("*.yaml"))


def resolve(*configs: Path, capsys) -> dict:
    """The config `fit` would run (`--print_config` parses and validates every key, instantiates nothing)."""
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *(arg for config in configs for arg in ("--config", str(config))), "--print_config"])
    assert exit_.value.code in (0, None)
    out = capsys.readouterr().out
    return yaml.safe_load(out[out.index("seed_everything:"):])  # after any import-time log lines


@pytest.mark.parametrize("stage", STAGES, ids=lambda p: p.stem)
def test_shipped_stage_configs_are_valid(stage, capsys):
    resolved = resolve(stage, capsys=capsys)
    assert resolved["trainer"]["max_steps"] > 0 and resolved["trainer"]["gradient_clip_val"] == 1.0
    assert resolved["data"]["class_path"].startswith("lit_codellama.")


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.stem)
def test_strategy_overlays_switch_the_strategy_of_a_stage(overlay, capsys):
    resolved = resolve(REPO / "configs/train/code-7b.yaml", overlay, capsys=capsys)
    wanted, strategy = yaml.safe_load(overlay.read_text())["trainer"]["strategy"], resolved["trainer"]["strategy"]
    assert strategy["class_path"] == wanted["class_path"]
    # Every argument the overlay sets arrives as set; the strategy's other arguments keep their defaults.
    assert {key: strategy["init_args"][key] for key in wanted["init_args"]} == wanted["init_args"]
    assert resolved["model"]["lr"] == 3e-4 and resolved["trainer"]["max_steps"] == 125_000
