import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from lit_codellama import Llama, ModelConfig
from lit_codellama.checkpoint import save_model
from lit_codellama.fim import infilling_prompt
from lit_codellama.generate import SamplingConfig, complete, generate, infill, main, truncate_at_stop


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return Llama(ModelConfig.from_name("cl-1m", vocab_size=tokenizer.vocab_size)).eval()


def greedy_without_cache(model, prompt, n):
    ids = torch.tensor([prompt])
    for _ in range(n):
        with torch.no_grad():
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[0, len(prompt) :].tolist()


def test_cached_greedy_decoding_equals_full_recomputation(model):
    prompt = [1, 17, 42, 99, 7]
    assert generate(model, [prompt], SamplingConfig(max_new_tokens=12)) == [greedy_without_cache(model, prompt, 12)]


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
@torch.inference_mode()
def test_cached_logits_equal_full_recomputation_with_grouped_query_attention(n_kv_head):
    torch.manual_seed(0)
    model = Llama(ModelConfig.from_name("cl-1m", n_kv_head=n_kv_head, vocab_size=256)).eval()
    ids = torch.randint(0, 256, (2, 12))
    model.setup_kv_cache(batch_size=2, max_seq_len=12)
    prefill = model(ids[:, :8], input_pos=torch.arange(8))
    decoded = [model(ids[:, t : t + 1], input_pos=torch.tensor([t])) for t in range(8, 12)]
    model.clear_kv_cache()
    torch.testing.assert_close(torch.cat([prefill, *decoded], dim=1), model(ids), atol=1e-5, rtol=1e-5)


def test_left_padded_batch_equals_one_prompt_at_a_time(model):
    prompts = [[1, 5, 6, 7, 8, 9, 10, 11], [1, 300], [1, 40, 41, 42]]
    batched = generate(model, prompts, SamplingConfig(max_new_tokens=10))
    assert batched == [generate(model, [p], SamplingConfig(max_new_tokens=10))[0] for p in prompts]


def test_generation_stops_at_a_stop_id_and_excludes_it(model):
    prompt = [1, 17, 42]
    free = generate(model, [prompt], SamplingConfig(max_new_tokens=8))[0]
    stopped = generate(model, [prompt], SamplingConfig(max_new_tokens=8), stop_ids=(free[3],))[0]
    assert stopped == free[: free.index(free[3])]


def test_sampling_is_seeded_and_top_p_zero_is_greedy(model):
    prompt = [[1, 17, 42]]
    seeded = SamplingConfig(10, temperature=1.0, top_p=1.0, seed=3)
    assert generate(model, prompt, seeded) == generate(model, prompt, seeded)
    nucleus_of_one = generate(model, prompt, SamplingConfig(10, temperature=1.0, top_p=1e-9, seed=4))
    assert nucleus_of_one == generate(model, prompt, SamplingConfig(10))


def test_greedy_generation_equals_transformers_generate(tmp_path, model):
    save_model(model, tmp_path, hf_format=True)
    hf = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    prompt = [1, 200, 201, 202, 203]
    ours = generate(model, [prompt], SamplingConfig(max_new_tokens=16))[0]
    with torch.no_grad():
        theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert ours == theirs[0, len(prompt) :].tolist()


def test_complete_cuts_at_the_first_stop_string(model, tokenizer):
    [free] = complete(model, tokenizer, ["def f(x):"], SamplingConfig(max_new_tokens=20))
    assert free, "an untrained model still produces text"
    stop = free[len(free) // 2 : len(free) // 2 + 2]
    [cut] = complete(model, tokenizer, ["def f(x):"], SamplingConfig(max_new_tokens=20), stop=[stop])
    assert cut == truncate_at_stop(free, [stop]) and stop not in cut


def test_infill_decodes_the_middle_generated_after_the_infilling_prompt(model, tokenizer):
    prefix, suffix = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
    for spm in (False, True):
        prompt = infilling_prompt(tokenizer, prefix, suffix, suffix_first=spm)
        tokens = generate(model, [prompt], SamplingConfig(12), stop_ids=(tokenizer.eot_id, tokenizer.eos_id))[0]
        assert infill(model, tokenizer, [prefix], [suffix], suffix_first=spm, sampling=SamplingConfig(max_new_tokens=12)) == [
            tokenizer.decode_infilling(tokens)
        ]


def test_generate_cli_prints_prompt_and_completion(tmp_path, model, tokenizer_path, capsys):
    save_model(model, tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(tokenizer_path.read_bytes())
    assert main(["--checkpoint", str(tmp_path), "--prompt", "import os\n", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("import os\n")
    assert main(["--checkpoint", str(tmp_path), "--prefix", "x = ", "--suffix", "\n", "--max-new-tokens", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("x = ") and out.endswith("\n\n")


def test_a_sampling_config_draws_the_same_completions_for_the_same_seed(model, tokenizer):
    prompts = ["def f(x):", "import os\n"]

    def draw(seed):
        return complete(model, tokenizer, prompts, SamplingConfig(12, temperature=1.0, top_p=0.95, seed=seed))

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_generate_cli_runs_in_the_device_and_dtype_it_is_given(tmp_path, model, tokenizer_path, capsys, monkeypatch):
    import lit_codellama.generate as generate_module

    save_model(model, tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(tokenizer_path.read_bytes())
    seen = []
    real_complete = generate_module.complete

    def recording_complete(model, *args, **kwargs):
        seen.append((model.output.weight.device.type, model.output.weight.dtype))
        return real_complete(model, *args, **kwargs)

    monkeypatch.setattr(generate_module, "complete", recording_complete)
    argv = ["--checkpoint", str(tmp_path), "--prompt", "import os\n", "--max-new-tokens", "3"]
    assert main([*argv, "--device", "cpu", "--dtype", "bfloat16"]) == 0
    assert main(argv) == 0
    assert seen == [("cpu", torch.bfloat16), ("cpu", torch.float32)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--device", "cdua"])
    assert exit_.value.code == 2 and "'cdua' is not a device" in capsys.readouterr().err


def test_readme_infilling_command_passes_real_newlines(tmp_path, model, tokenizer_path):
    root = Path(__file__).parents[2]
    [line] = [line for line in (root / "README.md").read_text().splitlines() if "generate --checkpoint CKPT --prefix" in line]
    save_model(model, tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(tokenizer_path.read_bytes())
    command = line.replace("python", shlex.quote(sys.executable), 1).replace("CKPT", shlex.quote(str(tmp_path)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(["bash", "-c", command + " --max-new-tokens 3"], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("def f(x):\n    ") and result.stdout.endswith("\n    return y\n\n")
