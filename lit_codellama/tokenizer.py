"""SentencePiece BPE tokenizer: Meta's Code Llama `tokenizer.model` as is, or one trained here with Meta's recipe.

Meta's 7B/13B/70B models add four infilling pieces to the Llama 2 vocabulary (`▁<PRE>`=32007, `▁<SUF>`=32008,
`▁<MID>`=32009, `▁<EOT>`=32010); the 34B and Python models have none. Ids are always looked up by piece, so
the same code serves Meta's 32016-piece model and the small ones `train_tokenizer` builds for CPU experiments.
"""

import argparse
import glob
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path

import sentencepiece as spm

from lit_codellama.errors import LitCodeLlamaError

PREFIX, SUFFIX, MIDDLE, EOT = "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"
# Meta's `encode_infilling` encodes "☺" + text and cuts the tokens of "☺" off to lose the implicit leading space.
INFILL_MARKER = "☺"


class TokenizerError(LitCodeLlamaError, ValueError):
    """A tokenizer file that cannot be loaded or trained, or that lacks the pieces a caller needs."""


class Tokenizer:
    """Encode and decode text with a sentencepiece model; exposes Llama's special ids.

    There is no pad piece in Meta's model (its `pad_id()` is -1), so `pad_id` is `eos_id`: a real id that is safe
    to embed. Mask padding by position (or with an ignore index in the labels), never by comparing with `pad_id`.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        self.path = path / "tokenizer.model" if path.is_dir() else path
        if not self.path.is_file():
            raise FileNotFoundError(
                f"tokenizer model {self.path} does not exist; pass a sentencepiece .model file (Meta's "
                "tokenizer.model, or one made with `python -m lit_codellama tokenizer train`)"
            )
        try:
            self.processor = spm.SentencePieceProcessor(model_file=str(self.path))
        except (OSError, RuntimeError) as e:
            raise TokenizerError(
                f"{self.path} is not a readable sentencepiece model ({e}); re-download or retrain it"
            ) from e
        self.vocab_size = self.processor.vocab_size()
        self.bos_id = self.processor.bos_id()
        self.eos_id = self.processor.eos_id()
        self.pad_id = self.eos_id

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of `text`, with sentencepiece's implicit leading space (like Meta's `encode`)."""
        return ([self.bos_id] if bos else []) + self.processor.encode(text) + ([self.eos_id] if eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; control ids (BOS/EOS) decode to "" and the infilling pieces to their text."""
        ids = [int(i) for i in ids]
        if ids and not 0 <= min(ids) <= max(ids) < self.vocab_size:
            raise ValueError(f"ids must lie in [0, {self.vocab_size}) for {self.path}, got {min(ids)}..{max(ids)}")
        return self.processor.decode(ids)

    def encode_infilling(self, text: str) -> list[int]:
        """Token ids of `text` without the implicit leading space, exactly as Meta's `encode_infilling`."""
        ids = self.processor.encode(INFILL_MARKER + text)
        marker = self._marker_ids
        if ids[: len(marker)] != marker:
            raise TokenizerError(
                f"{self.path} merges {INFILL_MARKER!r} with the text after it ({text[:20]!r}), so the implicit leading "
                "space cannot be cut off; use a tokenizer made by train_tokenizer, where it is a user-defined symbol"
            )
        return ids[len(marker) :]

    def decode_infilling(self, ids: Sequence[int]) -> str:
        """Inverse of `encode_infilling`: keeps a leading space that `decode` would drop."""
        return self.decode([self.processor.piece_to_id(INFILL_MARKER), *ids])[len(INFILL_MARKER) :]

    @cached_property
    def _marker_ids(self) -> list[int]:
        return self.processor.encode(INFILL_MARKER)  # ["▁", "☺"] in Meta's model, hence their `[2:]`

    @property
    def has_infilling(self) -> bool:
        return all(self._piece_id(p) is not None for p in (PREFIX, SUFFIX, MIDDLE, EOT))

    @property
    def prefix_id(self) -> int:
        return self._infilling_id(PREFIX)

    @property
    def suffix_id(self) -> int:
        return self._infilling_id(SUFFIX)

    @property
    def middle_id(self) -> int:
        return self._infilling_id(MIDDLE)

    @property
    def eot_id(self) -> int:
        return self._infilling_id(EOT)

    def _piece_id(self, piece: str) -> int | None:
        i = self.processor.piece_to_id(piece)
        return None if i == self.processor.unk_id() else i

    def _infilling_id(self, piece: str) -> int:
        i = self._piece_id(piece)
        if i is None:
            raise TokenizerError(
                f"{self.path} has no {piece!r} piece, so it cannot build infilling (FIM) samples; use Meta's "
                "7B/13B/70B tokenizer.model (32016 pieces) or train one with `python -m lit_codellama tokenizer train`"
            )
        return i

    @cached_property
    def byte_lengths(self) -> list[int]:
        """UTF-8 bytes of text each id stands for: 0 for control, unknown and infilling ids, 1 for byte pieces.

        For bits-per-byte. A piece's "▁" counts as the space it stands for, so the implicit leading space of each
        `encode` call adds one byte, and an infilling piece's text inside a document (" <PRE>") counts as none;
        count bytes from the text itself where that matters.
        """
        special = {self._piece_id(p) for p in (PREFIX, SUFFIX, MIDDLE, EOT)}
        return [self._byte_length(i, special) for i in range(self.vocab_size)]

    def _byte_length(self, i: int, special: set[int | None]) -> int:
        p = self.processor
        if p.is_control(i) or p.is_unknown(i) or i in special:
            return 0
        if p.is_byte(i):
            return 1
        return len(p.id_to_piece(i).replace("▁", " ").encode())


def train_tokenizer(
    texts: Iterable[str],
    model_prefix: str | Path,
    vocab_size: int = 4096,
    max_lines: int = 2_000_000,
    seed: int = 0,
) -> Path:
    """Train a BPE model with Llama 2's settings plus Code Llama's infilling pieces; returns `<model_prefix>.model`.

    Each text (a document) is split into lines, as Meta trained on lines: a newline is then a byte-fallback
    piece (`<0x0A>`), as in Llama. A uniform sample of at most `max_lines` lines, drawn with `seed`, bounds
    memory and makes the model a function of (corpus, arguments) alone.
    """
    lines = _sample_lines(texts, max_lines, seed)
    if not lines:
        raise TokenizerError(f"no text to train the tokenizer {model_prefix} on; pass non-empty documents")
    Path(model_prefix).parent.mkdir(parents=True, exist_ok=True)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_prefix=str(model_prefix),
            model_type="bpe",
            vocab_size=vocab_size,
            character_coverage=0.99995,
            byte_fallback=True,
            split_digits=True,
            allow_whitespace_only_pieces=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=True,
            user_defined_symbols=[PREFIX, SUFFIX, MIDDLE, EOT, INFILL_MARKER],
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            max_sentence_length=4192,
            shuffle_input_sentence=False,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise TokenizerError(f"training tokenizer {model_prefix} with vocab_size={vocab_size} failed: {e}") from e
    return Path(f"{model_prefix}.model")


def _sample_lines(texts: Iterable[str], k: int, seed: int) -> list[str]:
    """Reservoir sample (Algorithm R) of at most k non-empty lines."""
    rng, sample = random.Random(seed), []
    for n, line in enumerate(_lines(texts)):
        if n < k:
            sample.append(line)
        elif (j := rng.randint(0, n)) < k:
            sample[j] = line
    return sample


def _lines(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        yield from filter(None, text.splitlines())


def _read_corpus(patterns: list[str]) -> Iterator[str]:
    paths = sorted({p for pattern in patterns for p in glob.glob(pattern, recursive=True) if Path(p).is_file()})
    if not paths:
        raise FileNotFoundError(f"--input {' '.join(patterns)} matches no files; quote globs like 'src/**/*.py'")
    for path in paths:
        try:
            yield Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise TokenizerError(f"{path} is not UTF-8 text ({e}); leave it out of --input") from e


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lit_codellama tokenizer", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a BPE tokenizer with Code Llama's pieces on text files")
    train.add_argument("--input", nargs="+", required=True, metavar="GLOB", help="files to train on ('**' recurses)")
    train.add_argument("--out", required=True, type=Path, metavar="PREFIX", help="writes PREFIX.model and PREFIX.vocab")
    train.add_argument("--vocab-size", type=int, default=4096)
    train.add_argument("--max-lines", type=int, default=2_000_000, help="sample at most this many lines")
    train.add_argument("--seed", type=int, default=0)
    encode = commands.add_parser("encode", help="print the ids and pieces of a text")
    encode.add_argument("--model", required=True, type=Path, help="a sentencepiece .model file or a dir holding one")
    encode.add_argument("text", help="text to encode ('-' reads stdin)")
    encode.add_argument("--infilling", action="store_true", help="encode without the implicit leading space")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, TokenizerError) as e:
        parser.error(str(e))


def _run(args: argparse.Namespace) -> int:
    if args.command == "train":
        path = train_tokenizer(_read_corpus(args.input), args.out, args.vocab_size, args.max_lines, args.seed)
        print(f"wrote {path} ({Tokenizer(path).vocab_size} pieces)")
        return 0
    tok = Tokenizer(args.model)
    text = sys.stdin.read() if args.text == "-" else args.text
    ids = tok.encode_infilling(text) if args.infilling else tok.encode(text)
    for i in ids:
        print(f"{i}\t{tok.processor.id_to_piece(i)!r}")
    return 0
