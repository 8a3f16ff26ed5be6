"""Deduplication: exact (content hash) and near (MinHash + LSH over word shingles, as in the BigCode pipeline).

Both keep the first of a group of duplicates in corpus order, so the result does not depend on the number of
processes that computed the signatures.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import xxhash
from datasketch import LeanMinHash, MinHash, MinHashLSH
from tqdm.auto import tqdm

WORD = re.compile(r"\w+")
MINHASH_SEED = 1


def first_occurrences(hashes: Sequence[str]) -> list[bool]:
    """keep[i] is True for the first document with each content hash."""
    seen: set[str] = set()
    keep = []
    for h in hashes:
        keep.append(h not in seen)
        seen.add(h)
    return keep


def shingles(text: str, size: int) -> set[bytes]:
    """Runs of `size` consecutive words; a text with fewer words is one shingle."""
    words = WORD.findall(text)
    return {" ".join(words[i : i + size]).encode() for i in range(max(1, len(words) - size + 1))}


class Signer:
    """MinHash signatures with fixed permutations, picklable into `datasets.map` workers."""

    def __init__(self, num_perm: int, shingle_size: int):
        self.num_perm, self.shingle_size = num_perm, shingle_size
        self._template = MinHash(num_perm=num_perm, seed=MINHASH_SEED, hashfunc=xxhash.xxh32_intdigest)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        return {"minhash": [self.sign(text) for text in batch["text"]]}

    def sign(self, text: str) -> np.ndarray:
        t = self._template
        m = MinHash(self.num_perm, MINHASH_SEED, hashfunc=t.hashfunc, permutations=t.permutations, scheme=t.scheme)
        m.update_batch(shingles(text, self.shingle_size))
        return m.hashvalues

    @property
    def scheme(self) -> str:
        return self._template.scheme


def near_duplicate_mask(signatures: Sequence[Sequence[int]], threshold: float, scheme: str) -> list[bool]:
    """keep[i] is False when an earlier kept document's estimated Jaccard similarity with i is >= threshold.

    LSH proposes candidates; each is checked against the signature estimate, so LSH's false positives never
    remove a document.
    """
    if len(signatures) == 0:
        return []
    lsh = MinHashLSH(threshold=threshold, num_perm=len(signatures[0]))
    kept: dict[int, np.ndarray] = {}
    keep = []
    for i, values in enumerate(tqdm(signatures, desc="near-dedup (LSH)", unit="doc", leave=False)):
        values = np.asarray(values)
        m = LeanMinHash(seed=MINHASH_SEED, hashvalues=values, scheme=scheme)
        duplicate = any(np.mean(kept[j] == values) >= threshold for j in lsh.query(m))
        if not duplicate:
            lsh.insert(i, m)
            kept[i] = values
        keep.append(not duplicate)
    return keep
