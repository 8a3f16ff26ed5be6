"""`convert --to hf` of a model trained here: transformers' Auto classes must reproduce our tokenizer and generation."""

import json
import random
import shutil
import sysconfig
import types
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_codellama.chat import encode_prompt
from lit_codellama.checkpoint import load_model
from lit_codellama.cli import main
from lit_codellama.config import ModelConfig
from lit_codellama.convert import export_hf
from lit_codellama.fim import infilling_prompt
from lit_codellama.generate import SamplingConfig, complete, generate, infill
from lit_codellama.model import Llama
from lit_codellama.tokenizer import Tokenizer
from lit_codellama.training.cli import train

from conftest import REPO, tiny_config

PROMPTS = ["def f", "import os\n\ndef main(", "    return", "class Parser:\n    def __init__(self"]


@pytest.fixture(scope="module")
def run_dir(corpus_dir, tmp_path_factory) -> Path:
    """A ~0.3M-parameter model trained for 8 steps, checkpointed every 2 steps with code-7b.yaml's retention."""
    run = tmp_path_factory.mktemp("export") / "run"
    config = tiny_config(corpus_dir, run)
    retention = yaml.safe_load((REPO / "configs/train/code-7b.yaml").read_text())["checkpoint"]
    config["checkpoint"] = {**retention, "every_n_train_steps": 2}
    train(config, resume=False)
    return run


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> Path:
    """The Lightning checkpoint of the last step, converted: the tokenizer comes from the run directory."""
    out = tmp_path_factory.mktemp("hf") / "model"
    assert main(["convert", str(run_dir / "checkpoints" / "last.ckpt"), str(out), "--to", "hf"]) == 0
    return out


def test_code_7b_keeps_a_bounded_number_of_step_checkpoints(run_dir):
    keep = yaml.safe_load((REPO / "configs/train/code-7b.yaml").read_text())["checkpoint"]["save_top_k"]
    assert 0 < keep < 10
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("step=*.ckpt"))
    newest = [f"step={s}.ckpt" for s in range(8, 8 - 2 * keep, -2)]  # 8 steps, one checkpoint every 2
    assert kept == sorted(newest)


def test_exported_tokenizer_adds_bos_and_knows_the_infilling_pieces(run_dir, exported):
    ours = Tokenizer(run_dir / "model" / "tokenizer.model")
    theirs = AutoTokenizer.from_pretrained(exported)
    assert theirs("def f").input_ids == ours.encode("def f", bos=True)
    assert theirs("def f").input_ids[0] == 1
    assert theirs("def f", add_special_tokens=False).input_ids == ours.encode("def f")
    assert (theirs.bos_token_id, theirs.eos_token_id) == (ours.bos_id, ours.eos_id)
    pieces = ["▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>"]
    ids = [ours.prefix_id, ours.middle_id, ours.suffix_id, ours.eot_id]
    assert theirs.convert_tokens_to_ids(pieces) == ids
    assert set(ids) <= set(theirs.all_special_ids)
    config = json.loads((exported / "generation_config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"]) == (ours.bos_id, ours.eos_id)


def _random_cuts(n: int, seed: int = 0) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    source = "".join((stdlib / name).read_text(encoding="utf-8") for name in ("inspect.py", "typing.py"))
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        start = rng.randrange(len(source))
        text = source[start : start + rng.randrange(1, 300)]
        texts.append(rng.choice(["", "  ", "\t", "é ☺ 中文 🙂 "]) + text)  # leading spaces, unicode, byte pieces
    return texts


def test_exported_tokenizer_encodes_and_decodes_like_sentencepiece(run_dir, exported):
    ours = Tokenizer(run_dir / "model" / "tokenizer.model")
    theirs = AutoTokenizer.from_pretrained(exported)
    texts = _random_cuts(400)
    assert sum(t[0].isspace() for t in texts) > 50  # sentencepiece's implicit space in front of a space is covered
    for text in texts:
        ids = ours.encode(text, bos=True)
        assert theirs(text).input_ids == ids, text
        assert theirs.decode(ids[1:]) == ours.decode(ids[1:]), text


def test_exported_model_generates_our_greedy_output_through_transformers(run_dir, exported):
    ours_model = load_model(run_dir / "checkpoints" / "last.ckpt").eval()
    ours_tok = Tokenizer(run_dir / "model" / "tokenizer.model")
    tok = AutoTokenizer.from_pretrained(exported)
    model = AutoModelForCausalLM.from_pretrained(exported).eval()
    for prompt in PROMPTS:
        [ours_ids] = generate(ours_model, [ours_tok.encode(prompt, bos=True)], SamplingConfig(max_new_tokens=24))
        inputs = tok(prompt, return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=24, do_sample=False)
        new = output[0, inputs.input_ids.shape[1] :].tolist()
        assert new[: len(ours_ids)] == ours_ids and new[len(ours_ids) :] in ([], [ours_tok.eos_id]), prompt
        [ours_text] = complete(ours_model, ours_tok, [prompt], SamplingConfig(max_new_tokens=24))
        assert tok.decode(new[: len(ours_ids)]) == ours_text, prompt  # EOS ends both; neither decodes it


def test_export_above_max_shard_size_writes_an_index_transformers_loads(run_dir, tmp_path):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert main(["convert", str(ckpt), str(tmp_path), "--to", "hf", "--max-shard-size", "300KB"]) == 0
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and not (tmp_path / "model.safetensors").exists()
    ours = load_model(ckpt).eval()
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    idx = torch.randint(0, ours.config.vocab_size, (1, 32))
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, ours(idx), rtol=1e-5, atol=1e-5)


def test_model_card_describes_the_run(run_dir, exported, corpus_dir):
    card = (exported / "README.md").read_text()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    corpus = json.loads((corpus_dir / "corpus.json").read_text())
    assert "cl-1m" in card and f"| peak learning rate | `{config['model']['lr']}` |" in card
    assert f"| steps | `{config['trainer']['max_steps']}` |" in card
    assert run["git"]["commit"] is None or run["git"]["commit"] in card
    assert f"fingerprint `{corpus['fingerprint']}`" in card and f"sha256 `{corpus['sha256']}`" in card
    assert "## Infilling" in card


def test_converting_a_checkpoint_without_its_tokenizer_is_one_error(run_dir, tmp_path, capsys):
    lone = tmp_path / "lone.ckpt"
    shutil.copyfile(run_dir / "checkpoints" / "last.ckpt", lone)
    assert main(["convert", str(lone), str(tmp_path / "out"), "--to", "hf"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no tokenizer.model found beside") and "--tokenizer" in err and err.count("\n") == 1


def test_generate_finds_the_tokenizer_of_a_mid_training_checkpoint(run_dir, capsys):
    assert main(["generate", "--checkpoint", str(run_dir / "checkpoints" / "step=6.ckpt"), "--prompt", "def f",
                 "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("def f")


@pytest.fixture(scope="module")
def readme_recipe(exported) -> dict:
    """The README's "Infilling with transformers" code, run against the exported model: its functions."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Infilling with transformers") :]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("\n```", start)]
    assert '"runs/code-small/hf"' in code
    namespace: dict = {}
    exec(code.replace('"runs/code-small/hf"', repr(str(exported))), namespace)  # noqa: S102 (our own README)
    return namespace


def _prefix_suffix_cuts(n: int, seed: int = 1) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    cuts = []
    for text in _random_cuts(n, seed):
        i, j = sorted(rng.randrange(len(text) + 1) for _ in range(2))
        cuts.append((text[:i], text[j:]))
    return cuts


@pytest.mark.parametrize("suffix_first", [False, True], ids=["psm", "spm"])
def test_readme_infilling_recipe_builds_our_prompt_ids(run_dir, readme_recipe, suffix_first):
    tok = Tokenizer(run_dir / "model" / "tokenizer.model")
    cuts = _prefix_suffix_cuts(300)
    assert sum(s[:1].isspace() for _, s in cuts) > 30  # suffixes that start with a space or newline are covered
    for prefix, suffix in cuts:
        expected = infilling_prompt(tok, prefix, suffix, suffix_first=suffix_first)
        assert readme_recipe["infilling_prompt"](prefix, suffix, suffix_first) == expected, (prefix, suffix)


@pytest.mark.parametrize("suffix_first", [False, True], ids=["psm", "spm"])
def test_readme_infill_through_transformers_equals_ours(run_dir, readme_recipe, tmp_path, suffix_first):
    # A freshly initialised model: the trained one ends every middle at once with EOT, which would compare nothing.
    # Its byte pieces' output rows are zeroed (logit 0 is never the largest of ~1000), so that no middle holds broken
    # UTF-8, which sentencepiece and tokenizers decode differently ("J\xff" -> "J�" and "��").
    tok = Tokenizer(run_dir / "model" / "tokenizer.model")
    torch.manual_seed(0)
    model = Llama(ModelConfig.from_name("cl-1m", vocab_size=tok.vocab_size)).eval()
    with torch.no_grad():
        model.output.weight[[i for i in range(tok.vocab_size) if tok.processor.is_byte(i)]] = 0.0
    export_hf(model, tok, tmp_path)
    recipe = {**readme_recipe, "model": AutoModelForCausalLM.from_pretrained(tmp_path).eval()}
    infill_via_transformers = types.FunctionType(readme_recipe["infill"].__code__, recipe)
    middles = []
    for prefix, suffix in [("def f(x):\n    ", "\n    return y\n"), *_prefix_suffix_cuts(4, seed=2)]:
        [ours] = infill(model, tok, [prefix], [suffix], suffix_first, SamplingConfig(max_new_tokens=16))
        assert infill_via_transformers(prefix, suffix, suffix_first, max_new_tokens=16) == ours
        middles.append(ours)
    assert sum(bool(m.strip()) for m in middles) >= 3  # the comparison is not between empty middles


def test_a_checkpoint_of_a_run_without_its_final_export_takes_the_corpus_tokenizer(run_dir, corpus_dir, tmp_path):
    interrupted = tmp_path / "interrupted"
    (interrupted / "checkpoints").mkdir(parents=True)
    shutil.copyfile(run_dir / "config.yaml", interrupted / "config.yaml")  # names data.data_dir; no model/ here
    shutil.copyfile(run_dir / "checkpoints" / "step=6.ckpt", interrupted / "checkpoints" / "step=6.ckpt")
    out = tmp_path / "hf"
    assert main(["convert", str(interrupted / "checkpoints" / "step=6.ckpt"), str(out), "--to", "hf"]) == 0
    assert (out / "tokenizer.model").read_bytes() == (corpus_dir / "tokenizer.model").read_bytes()


def test_exported_chat_template_gives_our_dialog_prompt_ids(run_dir, exported):
    ours = Tokenizer(run_dir / "model" / "tokenizer.model")
    theirs = AutoTokenizer.from_pretrained(exported)
    dialog = [
        {"role": "system", "content": " Answer with code only.\n"},
        {"role": "user", "content": "Write a function that adds two numbers.\n"},
        {"role": "assistant", "content": "\ndef add(a, b):\n    return a + b\n"},
        {"role": "user", "content": "  Now one that reverses a string: «é»"},
    ]
    for messages in (dialog[1:2], dialog[:2], dialog):
        text = theirs.apply_chat_template(messages, tokenize=False)
        assert theirs(text, add_special_tokens=False).input_ids == encode_prompt(ours, messages), messages


def test_model_card_lists_every_stage_and_its_evaluation_results(run_dir, tmp_path):
    """A second stage started from the first's weights, with a study's metrics.json and an `eval` summary."""
    second = tmp_path / "stage-two"
    (second / "checkpoints").mkdir(parents=True)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["model"]["init_checkpoint"] = str(run_dir / "model")
    (second / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copyfile(run_dir / "checkpoints" / "last.ckpt", second / "checkpoints" / "last.ckpt")
    measurements = [{"metric": "val_loss", "value": 5.25}, {"metric": "pass@1", "mode": "psm", "value": 0.125}]
    (second / "metrics.json").write_text(json.dumps({"measurements": measurements}))
    (second / "eval" / "humaneval").mkdir(parents=True)
    (second / "eval" / "humaneval" / "summary.json").write_text(json.dumps({"pass@1": 0.0625, "task": "humaneval"}))
    out = tmp_path / "hf"
    assert main(["convert", str(second / "checkpoints" / "last.ckpt"), str(out), "--to", "hf"]) == 0
    card = (out / "README.md").read_text()
    assert card.index("### Stage 1: run") < card.index("### Stage 2: stage-two")
    assert f"| started from | `{run_dir / 'model'}` |" in card
    assert "| val_loss |  | 5.25 |" in card and "| pass@1 | mode=psm | 0.125 |" in card
    assert "| pass@1 | eval/humaneval | 0.0625 |" in card
