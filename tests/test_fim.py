import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_codellama.errors import ConfigError
from lit_codellama.fim import (
    FIMConfig,
    FIMSplit,
    apply_context_fim,
    apply_fim,
    draw_split,
    fim_sample,
    infilling_prompt,
    parse_fim_sample,
)
from strategies import TEXT

CODE = "def add(x, y):\n    # sum 12 and 3\n    return x + y\n\n\nclass A:\n\tpass  \n"
RNGS = [random.Random, np.random.default_rng]


def metas_prompt(tok, prefix, suffix, suffix_first):
    """Meta's `infilling_prompt_tokens`, written against raw sentencepiece as in their llama/generation.py."""
    sp = tok.processor
    pre, suf, mid = (sp.piece_to_id(p) for p in ("▁<PRE>", "▁<SUF>", "▁<MID>"))
    suffix_ids = sp.encode("☺" + suffix)[2:]
    if suffix_first:
        return [sp.bos_id(), pre, suf, *suffix_ids, mid, *sp.encode(prefix)]
    return [sp.bos_id(), pre, *sp.encode(prefix), suf, *suffix_ids, mid]


@pytest.mark.parametrize("suffix_first", [False, True])
@pytest.mark.parametrize(
    ("prefix", "suffix"), [("def f(x):\n    ", "\n    return y\n"), ("", ""), ("  a", " b"), ("x", "")]
)
def test_infilling_prompt_matches_metas(tokenizer, prefix, suffix, suffix_first):
    expected = metas_prompt(tokenizer, prefix, suffix, suffix_first)
    assert infilling_prompt(tokenizer, prefix, suffix, suffix_first) == expected


def test_prompt_layouts_with_empty_prefix_and_suffix(tokenizer):
    bos, pre, suf, mid = tokenizer.bos_id, tokenizer.prefix_id, tokenizer.suffix_id, tokenizer.middle_id
    assert infilling_prompt(tokenizer, "", "") == infilling_prompt(tokenizer, "", "", suffix_first=True)
    assert infilling_prompt(tokenizer, "", "") == [bos, pre, suf, mid]


def test_psm_sample_layout(tokenizer):
    t, (p, m, s) = tokenizer, ("def f(", "x, y", "):\n    pass")
    sample = fim_sample(t, FIMSplit(p, m, s, spm=False))
    enc_i = t.encode_infilling
    assert sample == [t.bos_id, t.prefix_id, *t.encode(p), t.suffix_id, *enc_i(s), t.middle_id, *enc_i(m), t.eot_id]
    assert sample[: -len(enc_i(m)) - 1] == infilling_prompt(t, p, s)


def test_spm_sample_layout_encodes_prefix_and_middle_as_one_run(tokenizer):
    t, (p, m, s) = tokenizer, ("def f(", "x, y", "):\n    pass")
    sample = fim_sample(t, FIMSplit(p, m, s, spm=True))
    suffix_ids = t.encode_infilling(s)
    assert sample == [t.bos_id, t.prefix_id, t.suffix_id, *suffix_ids, t.middle_id, *t.encode(p + m), t.eot_id]
    assert sample[:-1] == infilling_prompt(t, p + m, s, suffix_first=True)


@settings(deadline=None, max_examples=200)
@given(text=TEXT, cuts=st.tuples(st.floats(0, 1), st.floats(0, 1)), spm=st.booleans())
def test_fim_sample_reassembles_to_document(tokenizer, text, cuts, spm):
    i, j = sorted(round(c * len(text)) for c in cuts)
    parts = parse_fim_sample(fim_sample(tokenizer, FIMSplit(text[:i], text[i:j], text[j:], spm)), tokenizer, spm)
    assert parts.prefix + parts.middle + parts.suffix == text
    assert parts.suffix == text[j:] and (spm or (parts.prefix, parts.middle) == (text[:i], text[i:j]))


@settings(deadline=None)
@given(text=TEXT, seed=st.integers(0, 2**32 - 1))
def test_drawn_samples_reassemble_to_document(tokenizer, text, seed):
    split = draw_split(text, random.Random(seed), FIMConfig(fim_rate=1.0))
    parts = parse_fim_sample(fim_sample(tokenizer, split), tokenizer, split.spm)
    assert split.prefix + split.middle + split.suffix == parts.prefix + parts.middle + parts.suffix == text


def test_parse_rejects_other_layouts(tokenizer):
    psm = fim_sample(tokenizer, FIMSplit("a", "b", "c", spm=False))
    with pytest.raises(ValueError, match="not a SPM FIM sample"):
        parse_fim_sample(psm, tokenizer, spm=True)
    with pytest.raises(ValueError, match="not a PSM FIM sample"):
        parse_fim_sample(tokenizer.encode("abc", bos=True, eos=True), tokenizer, spm=False)


@pytest.mark.parametrize("make_rng", RNGS)
@pytest.mark.parametrize(("fim_rate", "spm_rate"), [(0.0, 0.5), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5), (0.9, 0.3)])
def test_fim_and_spm_rates(make_rng, fim_rate, spm_rate):
    rng, n = make_rng(0), 4000
    splits = [draw_split(CODE, rng, FIMConfig(fim_rate, spm_rate)) for _ in range(n)]
    fim = [s for s in splits if s is not None]
    assert len(fim) / n == pytest.approx(fim_rate, abs=0.04)  # > 5 standard deviations
    if fim:
        assert sum(s.spm for s in fim) / len(fim) == pytest.approx(spm_rate, abs=0.05)


@pytest.mark.parametrize("make_rng", RNGS)
def test_split_points_are_uniform_and_pieces_may_be_empty(make_rng):
    rng, text, n = make_rng(0), "abcd", 15_000
    counts = np.zeros((5, 5))
    for _ in range(n):
        split = draw_split(text, rng, FIMConfig(fim_rate=1.0))
        assert split.prefix + split.middle + split.suffix == text
        counts[len(split.prefix), len(split.prefix) + len(split.middle)] += 1
    # two independent uniform cuts over 5 positions, sorted: P(i, j) = 2/25 for i < j and 1/25 for i == j
    expected = (np.triu(np.full((5, 5), 2 / 25), 1) + np.eye(5) / 25) * n
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected.max())


def test_apply_fim_rate_extremes(tokenizer):
    rng = random.Random(0)
    assert apply_fim(CODE, tokenizer, rng, FIMConfig(fim_rate=0.0)) == tokenizer.encode(CODE, bos=True, eos=True)
    sample = apply_fim(CODE, tokenizer, rng, FIMConfig(fim_rate=1.0))
    assert sample[:2] == [tokenizer.bos_id, tokenizer.prefix_id] and sample[-1] == tokenizer.eot_id


@pytest.mark.parametrize("make_rng", RNGS)
def test_same_seed_gives_same_samples(tokenizer, make_rng):
    def samples(seed):
        rng = make_rng(seed)
        return [apply_fim(CODE, tokenizer, rng) for _ in range(20)]

    assert samples(1) == samples(1)
    assert samples(1) != samples(2)


def pack(tokenizer, docs):
    return [i for doc in docs for i in tokenizer.encode(doc, bos=True, eos=True)]


def test_context_fim_keeps_the_context_length_and_cut_documents(tokenizer):
    docs = ["import os\n", "def f():\n    return 1\n", "x = [1, 2]\n", "class B:\n    pass\n"]
    packed = pack(tokenizer, docs)
    context = packed[3:-4]  # cuts the first and the last document
    assert apply_context_fim(context, tokenizer, random.Random(0), FIMConfig(fim_rate=0.0)) == context
    out = apply_context_fim(context, tokenizer, random.Random(0), FIMConfig(fim_rate=1.0, spm_rate=0.0))
    first_eos = context.index(tokenizer.eos_id) + 1
    assert len(out) == len(context) and out[:first_eos] == context[:first_eos]
    second = out[first_eos : out.index(tokenizer.eot_id) + 1]
    parts = parse_fim_sample(second, tokenizer, spm=False)
    assert parts.prefix + parts.middle + parts.suffix == docs[1]


def test_context_fim_pads_with_eos_when_the_samples_get_shorter(tokenizer):
    text = "return value"  # spelled in byte pieces, far longer than the tokenizer's own encoding
    spelled = [tokenizer.processor.piece_to_id(f"<0x{b:02X}>") for b in text.encode()]
    context = [tokenizer.bos_id, *spelled, tokenizer.eos_id]
    out = apply_context_fim(context, tokenizer, random.Random(0), FIMConfig(fim_rate=1.0, spm_rate=1.0))
    sample = out[: out.index(tokenizer.eot_id) + 1]
    assert len(out) == len(context) and out[len(sample) :] == [tokenizer.pad_id] * (len(context) - len(sample))
    parts = parse_fim_sample(sample, tokenizer, spm=True)
    assert parts.prefix + parts.suffix == text


@settings(deadline=None)
@given(docs=st.lists(TEXT, min_size=1, max_size=4), start=st.integers(0, 30), size=st.integers(1, 60))
def test_context_fim_preserves_length(tokenizer, docs, start, size):
    context = pack(tokenizer, docs)[start : start + size]
    assert len(apply_context_fim(context, tokenizer, random.Random(start))) == len(context)


@pytest.mark.parametrize("settings, message", [
    ({"fim_rate": 1.5}, "fim_rate must be in"), ({"spm_rate": -0.1}, "spm_rate must be in"),
    ({"fim_level": "token"}, "fim_level must be 'document' or 'context'"),
])
def test_fim_config_rejects_rates_outside_zero_one_and_unknown_levels(settings, message):
    with pytest.raises(ConfigError, match=message):
        FIMConfig(**settings)
