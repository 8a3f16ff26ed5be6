import random

from lit_codellama.data.dedup import Signer, first_occurrences, near_duplicate_mask

WORDS = [f"w{i}" for i in range(500)]


def document(seed: int, n_words: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def near_dedup(texts: list[str], threshold: float = 0.85) -> list[bool]:
    signer = Signer(num_perm=128, shingle_size=5)
    return near_duplicate_mask([signer.sign(t) for t in texts], threshold, signer.scheme)


def test_exact_dedup_keeps_the_first_of_each_content():
    assert first_occurrences(["a", "b", "a", "c", "b"]) == [True, True, False, True, False]


def test_near_dedup_removes_near_copies_and_keeps_distinct_documents():
    original = document(0)
    words = original.split()
    near_copy = " ".join(words[:-3] + ["edited", "at", "end"])  # 3 of 300 words changed: Jaccard ~0.97
    texts = [original, document(1), near_copy, document(2), original]
    assert near_dedup(texts) == [True, True, False, True, False]


def test_near_dedup_threshold_decides_how_near_is_near():
    words = document(0).split()
    half_edited = " ".join(words[:150] + document(9, 150).split())  # about a third of the shingles shared
    assert near_dedup([" ".join(words), half_edited], threshold=0.85) == [True, True]
    assert near_dedup([" ".join(words), half_edited], threshold=0.2) == [True, False]


def test_formatting_does_not_hide_a_copy():
    code = "def area(width, height):\n    return width * height\n" * 5
    reformatted = code.replace("    ", "\t").replace(", ", ",")
    assert near_dedup([code, reformatted]) == [True, False]


def test_near_duplicate_mask_of_no_documents_is_empty():
    assert near_duplicate_mask([], threshold=0.85, scheme=Signer(num_perm=128, shingle_size=5).scheme) == []
