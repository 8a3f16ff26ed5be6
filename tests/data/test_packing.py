import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_codellama.data import DataError
from lit_codellama.data.packing import (
    MAX_WAITING,
    DocumentReader,
    Sample,
    TrainStream,
    pack,
    piece_tokens,
    split_document,
    split_lines,
)
from lit_codellama.fim import FIMConfig

SEQ_LEN = 64


@pytest.fixture(scope="module")
def reader(corpus):
    return DocumentReader(corpus.path, SEQ_LEN, seed=3)


def fim_spans(context, tok):
    """(start, end) of each FIM sample in a context: <PRE> ... <EOT>, or None if one is cut."""
    spans, start = [], None
    for i, t in enumerate(context):
        if t == tok.prefix_id:
            assert start is None, "a FIM sample starts inside another"
            start = i
        elif t == tok.eot_id:
            if start is None:
                return None
            spans.append((start, i))
            start = None
    return None if start is not None else spans


# -- splitting --------------------------------------------------------------------------------------------------


def test_split_lines_pieces_reassemble_and_fit(reader):
    tok, limit = reader.tokenizer, piece_tokens(SEQ_LEN)
    long_docs = [i for i, n in enumerate(reader.documents["num_tokens"]) if n > 3 * limit][:5]
    assert long_docs
    for doc in long_docs:
        row = reader.documents[doc]
        spans = split_lines(row["text"], row["input_ids"], reader.newline_id, limit)
        text = row["text"]
        pieces = [text[a:b] for a, b, _ in spans]
        assert [b for _, b, _ in spans[:-1]] == [a for a, _, _ in spans[1:]]
        assert sum(n for _, _, n in spans) >= len(row["input_ids"])  # exact, or rounded up inside long lines
        assert "".join(pieces) == text and len(pieces) >= 3
        assert max(len(tok.encode(p)) for p in pieces) <= limit + 1  # +1: a piece's own implicit leading space
        for cut in itertools.accumulate(len(p) for p in pieces[:-1]):
            if text[cut - 1] != "\n":  # cut inside a line: only a line longer than a piece is
                line = text[text.rfind("\n", 0, cut) + 1 : text.find("\n", cut) + 1]
                assert len(tok.encode(line)) > limit


@given(st.text(alphabet="ab \n", max_size=300), st.integers(1, 40))
def test_split_document_reassembles_any_text(text, max_tokens):
    assert "".join(split_document(text, len(text), max_tokens)) == text


# -- packing ----------------------------------------------------------------------------------------------------

samples_strategy = st.lists(st.tuples(st.integers(1, 40), st.booleans()), min_size=1, max_size=80)


@settings(max_examples=200, deadline=None)
@given(samples_strategy, st.integers(8, 48))
def test_pack_cuts_only_left_to_right_samples(specs, size):
    """Every context is full; every token shows up once; a FIM sample is either whole in one context or, when it
    could not be placed whole, replaced by its left-to-right version."""
    samples, fim = [], {}
    for i, (length, is_fim) in enumerate(specs):
        ids = [i * 1000 + j for j in range(length)]
        plain = [-(i * 1000 + j) - 1 for j in range(length + 1)]  # its left-to-right version, one token longer
        samples.append(Sample(ids, plain) if is_fim and length <= size else Sample(ids))
        if is_fim and length <= size:
            fim[i] = ids
    contexts = list(pack(samples, size))
    assert all(len(c) == size for c in contexts)
    flat = [t for c in contexts for t in c]
    assert len(flat) == len(set(flat))
    for i, ids in fim.items():
        if ids[0] in flat:
            assert any(c[k : k + len(ids)] == ids for c in contexts for k in range(size - len(ids) + 1))


def test_fim_samples_wait_for_room_instead_of_being_cut():
    big, small = Sample(list(range(6)), plain=[-1] * 6), Sample([100, 101, 102])
    contexts = list(pack([small, big, small, small, small], size=8))
    assert contexts[0] == [100, 101, 102, 100, 101, 102, 100, 101]  # the FIM sample did not fit: it waited
    assert contexts[1][:6] == list(range(6))


def test_fim_samples_beyond_the_wait_are_packed_left_to_right():
    fims = [Sample([i] * 6, plain=[-i] * 6) for i in range(1, MAX_WAITING + 3)]
    tokens = [t for c in pack([Sample([0] * 5), *fims, Sample([0] * 100)], size=8) for t in c]
    assert any(t < 0 for t in tokens)


# -- the stream -------------------------------------------------------------------------------------------------


def stream(reader, fim_rate, fim_level="document", **kwargs):
    docs = range(len(reader.documents))
    return TrainStream(reader, docs, fim=FIMConfig(fim_rate, fim_level=fim_level), **kwargs)


def contexts_of(train_stream, n):
    return [list(c) for c in itertools.islice(train_stream.contexts(0, 1), n)]


def test_document_level_fim_samples_are_never_cut_and_keep_their_rate(reader):
    tok = reader.tokenizer
    contexts = contexts_of(stream(reader, fim_rate=0.9), 400)
    assert all(len(c) == SEQ_LEN + 1 for c in contexts)
    assert all(fim_spans(c, tok) is not None for c in contexts)
    samples = sum(c.count(tok.bos_id) for c in contexts)
    fim = sum(c.count(tok.prefix_id) for c in contexts)
    assert fim / samples == pytest.approx(0.9, abs=0.05)


def test_fim_rate_zero_is_plain_left_to_right_text(reader):
    tok = reader.tokenizer
    contexts = contexts_of(stream(reader, fim_rate=0.0), 50)
    assert not any(t in (tok.prefix_id, tok.suffix_id, tok.middle_id, tok.eot_id) for c in contexts for t in c)


def test_context_level_fim_transforms_whole_documents_inside_contexts(reader):
    tok = reader.tokenizer
    contexts = contexts_of(stream(reader, fim_rate=1.0, fim_level="context"), 200)
    assert all(len(c) == SEQ_LEN + 1 for c in contexts)
    assert sum(c.count(tok.prefix_id) for c in contexts) > 20


def test_fim_arms_see_the_same_pieces_in_the_same_order(reader):
    def pieces(fim_rate):
        s = stream(reader, fim_rate=fim_rate, token_budget=20_000, max_document_share=0.05)
        return [[(s.plan.doc[i], s.plan.start[i]) for i in s.shard_pieces(epoch, 0, 1)] for epoch in range(2)]

    assert pieces(0.0) == pieces(0.9)
    assert pieces(0.0)[0] != pieces(0.0)[1]  # reshuffled every epoch


def test_more_shards_than_pieces_is_a_clear_error(reader):
    with pytest.raises(DataError, match="1 training pieces cannot feed 4 ranks"):
        next(iter(TrainStream(reader, [0], contiguous=True, world_size=4)))  # a whole document is one piece


def test_the_pieces_of_a_document_are_spread_over_the_epoch(reader):
    samples = list(itertools.islice(stream(reader, fim_rate=0.0).samples(0, 1, FIMConfig()), 300))
    docs = [s.doc for s in samples]
    assert max(docs.count(d) for d in set(docs)) >= 5  # documents of several pieces are in the sample
    back_to_back = sum(a == b for a, b in itertools.pairwise(docs))
    assert back_to_back < 0.1 * len(docs)


def test_contiguous_packing_fills_contexts_with_one_documents_text(reader):
    tok, ids = reader.tokenizer, reader.documents["input_ids"]
    long_docs = [i for i, n in enumerate(reader.documents["num_tokens"]) if n > 4 * SEQ_LEN]
    contexts = contexts_of(TrainStream(reader, long_docs, contiguous=True), 40)
    whole = [c for c in contexts if tok.bos_id not in c and tok.eos_id not in c]
    assert len(whole) >= len(contexts) / 2

    def in_a_document(context):
        return any(
            doc[k : k + len(context)] == context for doc in (ids[i] for i in long_docs) for k in range(len(doc))
        )

    assert all(in_a_document(c) for c in whole[:5])
    assert not any(tok.bos_id not in c and tok.eos_id not in c for c in contexts_of(stream(reader, 0.0), 40))
