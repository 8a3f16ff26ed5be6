"""Fill-in-the-middle: Meta's infilling prompts and the FIM training transform (Code Llama §2.3, Bavarian et al. 2022).

A document is split at two character positions drawn uniformly and independently into (prefix, middle, suffix)
and laid out as
    PSM: <s> <PRE> Enc(prefix) <SUF> EncI(suffix) <MID> EncI(middle) <EOT>
    SPM: <s> <PRE> <SUF> EncI(suffix) <MID> Enc(prefix + middle) <EOT>      (Bavarian et al.'s "variant 2")
where EncI is `encode_infilling` (no implicit leading space). A prompt is the sample up to the middle.
"""

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lit_codellama.errors import ConfigError
from lit_codellama.tokenizer import Tokenizer

Rng = random.Random | np.random.Generator


def infilling_prompt(tok: Tokenizer, prefix: str, suffix: str, suffix_first: bool = False) -> list[int]:
    """Meta's `infilling_prompt_tokens`: the model generates the middle after this, ending with <EOT>."""
    suffix_ids = [tok.suffix_id, *tok.encode_infilling(suffix), tok.middle_id]
    if suffix_first:
        return [tok.bos_id, tok.prefix_id, *suffix_ids, *tok.encode(prefix)]
    return [tok.bos_id, tok.prefix_id, *tok.encode(prefix), *suffix_ids]


@dataclass(frozen=True)
class FIMConfig:
    """How training documents become FIM samples: the one value the data module's `fim_rate`, `spm_rate` and
    `fim_level` travel as, down to `draw_split`.

    fim_rate: probability that a document (piece) becomes a FIM sample; 0 trains left-to-right only.
    spm_rate: share of FIM samples in SPM rather than PSM order.
    fim_level: "document" (the paper: before packing, never cut) or "context" (BigCode: after packing).
    """

    fim_rate: float = 0.0
    spm_rate: float = 0.5
    fim_level: Literal["document", "context"] = "document"

    def __post_init__(self) -> None:
        checks = {
            "fim_rate must be in [0, 1]": 0 <= self.fim_rate <= 1,
            "spm_rate must be in [0, 1]": 0 <= self.spm_rate <= 1,
            "fim_level must be 'document' or 'context'": self.fim_level in ("document", "context"),
        }
        problems = [message for message, ok in checks.items() if not ok]
        if problems:
            raise ConfigError(f"FIM settings {self}: " + "; ".join(problems))


PAPER_FIM = FIMConfig(fim_rate=0.9, spm_rate=0.5)  # Code Llama §2.3


@dataclass(frozen=True)
class FIMSplit:
    """A document cut into three pieces (any may be empty), to be laid out as SPM or PSM."""

    prefix: str
    middle: str
    suffix: str
    spm: bool


def draw_split(text: str, rng: Rng, fim: FIMConfig = PAPER_FIM) -> FIMSplit | None:
    """The one place FIM draws: None (keep the document whole) with probability 1 - fim_rate, else a split at two
    character positions drawn uniformly and independently from [0, len(text)], SPM with probability spm_rate."""
    if rng.random() >= fim.fim_rate:  # random() is in [0, 1) for both kinds of rng
        return None
    i, j = sorted(_randint(rng, len(text)) for _ in range(2))
    return FIMSplit(text[:i], text[i:j], text[j:], spm=rng.random() < fim.spm_rate)


def fim_sample(tok: Tokenizer, split: FIMSplit) -> list[int]:
    """The training sample of a split document."""
    if split.spm:  # prefix and middle are one encoded run, so SPM never sees a token split at their boundary
        return [*infilling_prompt(tok, split.prefix + split.middle, split.suffix, suffix_first=True), tok.eot_id]
    return [*infilling_prompt(tok, split.prefix, split.suffix), *tok.encode_infilling(split.middle), tok.eot_id]


def parse_fim_sample(ids: Sequence[int], tok: Tokenizer, spm: bool) -> FIMSplit:
    """Invert `fim_sample`. For SPM, `prefix` holds prefix + middle (one encoded run) and `middle` is "".

    The layout must be given: a PSM sample with an empty prefix has the SPM layout (the overlap Bavarian et al.
    chose variant 2 for), and the two decode the text after <MID> differently.
    """
    ids = list(ids)
    head = [tok.bos_id, tok.prefix_id, tok.suffix_id] if spm else [tok.bos_id, tok.prefix_id]
    if ids[: len(head)] != head or ids[-1:] != [tok.eot_id] or tok.middle_id not in ids:
        raise ValueError(f"not a {'SPM' if spm else 'PSM'} FIM sample: starts {ids[:3]}, ends {ids[-1:]}")
    mid = ids.index(tok.middle_id)
    if spm:
        return FIMSplit(tok.decode(ids[mid + 1 : -1]), "", tok.decode_infilling(ids[3:mid]), spm)
    suf = ids.index(tok.suffix_id, 2)
    prefix, suffix = tok.decode(ids[2:suf]), tok.decode_infilling(ids[suf + 1 : mid])
    return FIMSplit(prefix, tok.decode_infilling(ids[mid + 1 : -1]), suffix, spm)


def apply_fim(text: str, tok: Tokenizer, rng: Rng, fim: FIMConfig = PAPER_FIM) -> list[int]:
    """With probability `fim.fim_rate` a FIM sample of `text` (SPM with probability `fim.spm_rate`), else
    `<s> text </s>`."""
    split = draw_split(text, rng, fim)
    return tok.encode(text, bos=True, eos=True) if split is None else fim_sample(tok, split)


def apply_context_fim(ids: Sequence[int], tok: Tokenizer, rng: Rng, fim: FIMConfig = PAPER_FIM) -> list[int]:
    """Context-level FIM (BigCode Megatron) on a packed context of `<s> doc </s>` runs; keeps `len(ids)`.

    Each whole document (from <s> to </s>) is decoded, split and re-encoded with probability `fim.fim_rate`;
    documents cut by the context's edges are left alone, as in Code Llama. The result is truncated to
    `len(ids)` or padded with `tok.pad_id` (= EOS).
    """
    ids = [int(i) for i in ids]
    out: list[int] = []
    for doc in _split_after_eos(ids, tok.eos_id):
        whole = len(doc) >= 2 and doc[0] == tok.bos_id and doc[-1] == tok.eos_id
        split = draw_split(tok.decode(doc[1:-1]), rng, fim) if whole else None
        out.extend(doc if split is None else fim_sample(tok, split))
    return out[: len(ids)] + [tok.pad_id] * (len(ids) - len(out))


def _split_after_eos(ids: list[int], eos: int) -> Iterator[list[int]]:
    start = 0
    for end, i in enumerate(ids, 1):
        if i == eos:
            yield ids[start:end]
            start = end
    if start < len(ids):
        yield ids[start:]


def _randint(rng: Rng, high: int) -> int:
    """Uniform in [0, high]."""
    if isinstance(rng, random.Random):
        return rng.randint(0, high)
    return int(rng.integers(0, high + 1))
