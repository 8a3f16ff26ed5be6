"""Every bad input ends in one `error:` line that names the file or field, exit status 2, never a traceback.

Each row runs the real command line (`python -m lit_codellama ...`'s `main`, in-process) on one mistake.
"""

import json

import pytest
import torch
import yaml

from lit_codellama.cli import main
from lit_codellama.checkpoint import save_model
from lit_codellama.config import ModelConfig
from lit_codellama.model import Llama

TINY = ModelConfig(n_layer=2, n_head=2, n_embd=16, intermediate_size=32, vocab_size=64, block_size=32)


def run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse exits by itself
        code = exit_.code
    return code, capsys.readouterr().err


def assert_one_error_line(code: int, err: str, *names: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert name in lines[0], (name, err)


# ---------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["eval", "humaneval", "--k", "0"], "--k"),
        (["eval", "humaneval", "--k", "1,x"], "--k"),
        (["eval", "humaneval", "--limit", "0"], "--limit"),
        (["eval", "humaneval", "--timeout", "0"], "--timeout"),
        (["eval", "humaneval", "--timeout", "nan"], "--timeout"),
        (["eval", "humaneval", "--workers", "0"], "--workers"),
        (["eval", "humaneval", "--batch-size", "0"], "--batch-size"),
        (["eval", "humaneval", "--temperature", "-0.5"], "--temperature"),
        (["eval", "humaneval", "--n-samples", "0"], "--n-samples"),
        (["eval", "long-context", "--data", "x.py", "--lengths", "64,0"], "--lengths"),
        (["eval", "perplexity", "--data", "x.py", "--context-length", "0"], "--context-length"),
        (["eval", "perplexity", "--data", "x.py", "--stride", "-1"], "--stride"),
        (["eval", "key-retrieval", "--lengths", "64", "--positions", "0.5,1.5"], "--positions"),
        (["eval", "key-retrieval", "--lengths", "64", "--n-per-cell", "0"], "--n-per-cell"),
        (["generate", "--checkpoint", "ckpt", "--prompt", "x", "--temperature", "-1"], "--temperature"),
        (["generate", "--checkpoint", "ckpt", "--prompt", "x", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["study", "fim_rate", "--threads", "0"], "--threads"),
        (["study", "fim_rate", "--seeds", "0"], "--seeds"),
    ],
)
def test_an_out_of_range_number_names_its_option(argv, field, tmp_path, capsys):
    if argv[0] == "eval":
        argv = [*argv, "--out", str(tmp_path / "out")]
    assert_one_error_line(*run(argv, capsys), field)


@pytest.mark.parametrize("command", [["eval", "humaneval"], ["study", "fim_rate", "--preset", "tiny"]])
@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_an_output_directory_that_cannot_be_made_is_refused_before_any_work(command, where, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    out = tmp_path / "taken" if where == "a file" else tmp_path / "taken" / "out"
    assert_one_error_line(*run([*command, "--out", str(out)], capsys), "--out", str(tmp_path / "taken"))


def test_an_unwritable_output_directory_is_refused_before_any_work(capsys):
    # /proc takes no new directories, whoever asks (root writes through permission bits, so a chmod would not do)
    assert_one_error_line(*run(["eval", "humaneval", "--out", "/proc/lit_codellama_out"], capsys), "not writable")


def test_study_is_a_command_of_the_dispatcher(capsys):
    assert main(["study", "fim_rate", "--preset", "tiny", "--dry-run"]) == 0
    assert "study fim_rate, preset tiny" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- checkpoints


def _ours(directory):
    save_model(Llama(TINY), directory)
    return directory


def _hf(directory):
    save_model(Llama(TINY), directory, hf_format=True)
    return directory


def _lightning(directory):
    directory.mkdir()
    state = {f"model.{k}": v for k, v in Llama(TINY).state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model_config": TINY.to_dict()}}, directory / "last.ckpt")
    return directory / "last.ckpt"


def _truncate(file):
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _hf_config(edit):
    def change(directory):
        config = directory / "config.json"
        config.write_text(json.dumps(edit(json.loads(config.read_text()))))

    return change


def _without(field):
    def edit(config):
        del config[field]
        return config

    return edit


def _model_config(**changes):
    def change(directory):
        path = directory / "model_config.yaml"
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **changes}))

    return change


@pytest.mark.parametrize(
    ("make", "damage", "names"),
    [
        (_ours, lambda d: (d / "model.safetensors").write_bytes(b""), ["model.safetensors"]),
        (_ours, lambda d: _truncate(d / "model.safetensors"), ["model.safetensors", "truncated"]),
        (_ours, lambda d: (d / "model.safetensors").write_bytes(b"\x07junk" * 64), ["model.safetensors"]),
        (_hf, lambda d: _truncate(d / "model.safetensors"), ["model.safetensors", "truncated"]),
        (_lightning, lambda f: f.write_bytes(b""), ["last.ckpt"]),
        (_lightning, _truncate, ["last.ckpt", "truncated"]),
        (_lightning, lambda f: f.write_bytes(b"junk" * 64), ["last.ckpt"]),
        (_lightning, lambda f: torch.save([1, 2], f), ["last.ckpt", "state_dict"]),
        (_hf, lambda d: (d / "config.json").write_text("{not json"), ["config.json", "JSON"]),
        (_hf, _hf_config(lambda c: [c]), ["config.json", "list"]),
        (_hf, _hf_config(_without("num_attention_heads")), ["config.json", "num_attention_heads"]),
        (_hf, _hf_config(lambda c: {**c, "hidden_size": "16"}), ["config.json", "hidden_size"]),
        (_hf, _hf_config(lambda c: {**c, "num_attention_heads": 0}), ["config.json", "num_attention_heads"]),
        (_hf, _hf_config(lambda c: {**c, "rope_parameters": {"rope_theta": "fast"}}), ["config.json", "fast"]),
        (_hf, _hf_config(lambda c: {**c, "num_hidden_layers": 3}), ["config.json", "num_hidden_layers=3"]),
        (_ours, _model_config(n_head="2"), ["n_head"]),
        (_ours, _model_config(rope_theta="1e6"), ["rope_theta", "1.0e+6"]),
        (_ours, _model_config(n_layer=0), ["n_layer"]),
    ],
)
def test_a_damaged_checkpoint_names_the_file_or_field(make, damage, names, tokenizer_path, tmp_path, capsys):
    checkpoint = make(tmp_path / "ckpt")
    damage(checkpoint)
    argv = ["convert", str(checkpoint), str(tmp_path / "out"), "--tokenizer", str(tokenizer_path)]
    assert_one_error_line(*run(argv, capsys), *names)
