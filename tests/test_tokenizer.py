import json
from pathlib import Path

import pytest
import sentencepiece as spm
from hypothesis import assume, given, settings
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from lit_codellama.fim import infilling_prompt
from lit_codellama.tokenizer import Tokenizer, TokenizerError, main, train_tokenizer
from strategies import TEXT

EDGE_CASES = [
    "", " ", "\n", "   indented", "\n\nafter blank lines", "\tx\t", "trailing  \n", "日本語 🤖 ünïcödé",
    "a\u3000b", "<PRE> the text of infilling pieces <EOT>",
]


def vocab(processor):
    return [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.vocab_size())]


def pieces(tok, ids):
    return [tok.processor.id_to_piece(i) for i in ids]


def test_special_ids_are_present_and_distinct(tokenizer):
    fim = [tokenizer.prefix_id, tokenizer.suffix_id, tokenizer.middle_id, tokenizer.eot_id]
    special = [tokenizer.bos_id, tokenizer.eos_id, *fim]
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (1, 2, 2)
    assert len(set(special)) == 6 and all(0 < i < tokenizer.vocab_size for i in special)
    assert pieces(tokenizer, fim) == ["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"]
    assert tokenizer.has_infilling and tokenizer.vocab_size == 1024


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_round_trip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode_infilling(tokenizer.encode_infilling(text)) == text


@settings(deadline=None, max_examples=300)
@given(text=TEXT)
def test_encode_decode_round_trip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode_infilling(tokenizer.encode_infilling(text)) == text


@settings(deadline=None)
@given(text=TEXT)
def test_encode_infilling_is_metas_rule_without_the_leading_space(tokenizer, text):
    assert tokenizer.encode_infilling(text) == tokenizer.processor.encode("☺" + text)[2:]
    assume(text)  # encode("") is [], without the implicit space
    assert tokenizer.encode_infilling(" " + text) == tokenizer.encode(text)


def test_bos_and_eos_wrap_the_text(tokenizer):
    ids = tokenizer.encode("x = 1", bos=True, eos=True)
    assert ids == [1, *tokenizer.encode("x = 1"), 2]
    assert tokenizer.decode(ids) == "x = 1"


def test_indentation_is_kept_in_whitespace_only_pieces(tokenizer):
    ids = tokenizer.encode("if x:\n        return  y")
    assert any(len(p) > 1 and set(p) == {"▁"} for p in pieces(tokenizer, ids))
    assert "<0x0A>" in pieces(tokenizer, ids)  # Llama's newline: a byte piece


def test_digits_are_split(tmp_path, stdlib_texts):
    numbers = [f"n = {i * 7919}\n" for i in range(2000)]  # BPE would merge frequent digit pairs
    tok = Tokenizer(train_tokenizer(numbers + stdlib_texts, tmp_path / "numbers", vocab_size=600))
    texts = [tok.decode_infilling([i]) for i in range(tok.vocab_size)]
    assert not [t for t in texts if sum(c.isdigit() for c in t) > 1]
    assert pieces(tok, tok.encode_infilling("1234567890")) == list("1234567890")


def test_unknown_characters_fall_back_to_utf8_bytes(tokenizer):
    ids = tokenizer.encode_infilling("日本🤖")
    assert all(tokenizer.processor.is_byte(i) for i in ids) and len(ids) == len("日本🤖".encode())


def test_sentencepiece_whitespace_symbol_decodes_as_space(tokenizer):
    assert tokenizer.decode(tokenizer.encode("a\u2581b")) == "a b"


def test_decode_accepts_special_ids_and_rejects_ids_outside_the_vocabulary(tokenizer):
    assert tokenizer.decode([1, tokenizer.prefix_id, tokenizer.middle_id, tokenizer.eot_id, 2, 0]) != ""
    with pytest.raises(ValueError, match="1024"):
        tokenizer.decode([5, 1024])


@settings(deadline=None)
@given(text=TEXT)
def test_byte_lengths_count_the_utf8_bytes_of_the_text(tokenizer, text):
    lengths = tokenizer.byte_lengths
    assert sum(lengths[i] for i in tokenizer.encode_infilling(text)) == len(text.encode())
    assert sum(lengths[i] for i in tokenizer.encode(text, bos=True, eos=True)) == len(text.encode()) + bool(text)


def test_byte_lengths_of_special_and_byte_pieces(tokenizer):
    lengths = tokenizer.byte_lengths
    assert len(lengths) == tokenizer.vocab_size
    assert [lengths[i] for i in (0, 1, 2, tokenizer.prefix_id, tokenizer.eot_id)] == [0] * 5
    assert lengths[tokenizer.processor.piece_to_id("<0xE6>")] == 1


def test_missing_model_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.model does not exist.*tokenizer train"):
        Tokenizer(tmp_path / "nope.model")


def test_corrupt_model_file_names_the_path(tmp_path):
    (tmp_path / "bad.model").write_text("not a model")
    with pytest.raises(TokenizerError, match=r"bad\.model is not a readable sentencepiece model"):
        Tokenizer(tmp_path / "bad.model")


def test_loads_tokenizer_model_from_a_directory(tokenizer_path, tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(tokenizer_path.read_bytes())
    assert Tokenizer(tmp_path).encode("def f") == Tokenizer(tokenizer_path).encode("def f")


@pytest.fixture(scope="module")
def plain_llama_path(tmp_path_factory, stdlib_texts):
    """A Llama-style model without Code Llama's pieces, where BPE merges "☺" with the letters after it."""
    lines = [f"☺def {line}" for text in stdlib_texts for line in text.splitlines() if line]
    prefix = tmp_path_factory.mktemp("plain") / "llama"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(prefix), model_type="bpe", vocab_size=600, byte_fallback=True,
        remove_extra_whitespaces=False, split_by_unicode_script=False, minloglevel=2,
    )
    return prefix.with_suffix(".model")


def test_model_without_infilling_pieces_fails_when_fim_is_requested(plain_llama_path):
    tok = Tokenizer(plain_llama_path)
    assert not tok.has_infilling and tok.decode(tok.encode("x = 1")) == "x = 1"
    with pytest.raises(TokenizerError, match=r"llama\.model has no '▁<\w+>' piece.*tokenizer train"):
        infilling_prompt(tok, "def f(", "):")


def test_encode_infilling_refuses_a_model_that_merges_the_marker(plain_llama_path):
    tok = Tokenizer(plain_llama_path)
    marker = tok.processor.encode("☺")
    assert tok.processor.encode("☺def")[: len(marker)] != marker
    with pytest.raises(TokenizerError, match="merges '☺' with the text after it"):
        tok.encode_infilling("def")


def test_metas_layout_with_infilling_pieces_at_the_end_and_an_ordinary_marker(tokenizer_path, tmp_path):
    fim, piece = ["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"], model_pb2.ModelProto.SentencePiece
    proto = model_pb2.ModelProto()
    proto.ParseFromString(tokenizer_path.read_bytes())
    for p in proto.pieces:
        if p.piece in fim:
            p.piece = f"<unused{fim.index(p.piece)}>"
        elif p.piece == "☺":
            p.type = piece.NORMAL
    proto.pieces.extend(piece(piece=p, type=piece.USER_DEFINED) for p in fim)
    (tmp_path / "meta.model").write_bytes(proto.SerializeToString())
    tok, n = Tokenizer(tmp_path / "meta.model"), len(proto.pieces)
    assert (tok.prefix_id, tok.suffix_id, tok.middle_id, tok.eot_id) == (n - 4, n - 3, n - 2, n - 1)
    assert pieces(tok, tok.processor.encode("☺x"))[:2] == ["▁", "☺"]
    assert tok.decode_infilling(tok.encode_infilling("  return x")) == "  return x"


def test_training_is_deterministic_and_sample_bounded(tmp_path, stdlib_texts):
    models = [train_tokenizer(stdlib_texts, tmp_path / name, vocab_size=600, max_lines=500) for name in "ab"]
    a, b = (Tokenizer(m).processor for m in models)
    assert vocab(a) == vocab(b)
    other = train_tokenizer(stdlib_texts, tmp_path / "c", vocab_size=600, max_lines=500, seed=1)
    assert vocab(Tokenizer(other).processor) != vocab(a)


def test_training_errors_name_the_model(tmp_path):
    with pytest.raises(TokenizerError, match="no text to train the tokenizer"):
        train_tokenizer(["", "\n\n"], tmp_path / "empty")
    with pytest.raises(TokenizerError, match=r"tiny with vocab_size=50000 failed"):
        train_tokenizer(["def f(x):\n    return x\n"], tmp_path / "tiny", vocab_size=50_000)


def test_cli_trains_and_encodes(tmp_path, capsys):
    pattern = str(Path(json.__file__).parent / "*.py")
    assert main(["train", "--input", pattern, "--out", str(tmp_path / "json"), "--vocab-size", "600"]) == 0
    assert "json.model (600 pieces)" in capsys.readouterr().out
    assert main(["encode", "--model", str(tmp_path / "json.model"), "--infilling", "12"]) == 0
    one, two = Tokenizer(tmp_path / "json.model").encode_infilling("12")
    assert capsys.readouterr().out == f"{one}\t'1'\n{two}\t'2'\n"


def test_cli_reports_an_input_glob_without_files(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--input", str(tmp_path / "*.py"), "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 2 and "matches no files" in capsys.readouterr().err
