"""Splits by content hash: a document (or dialog) goes to a split by a hash of its own content, so a split does not
depend on how the corpus was built or ordered, nor on the other documents."""

from __future__ import annotations

# Which 32 bits of the hash each split reads, so that the splits are independent of each other.
VALIDATION, CONTINUED = 0, 1


def hash_unit(sha256: str, split: int = VALIDATION) -> float:
    """A hex SHA-256 digest as a number in [0, 1); `split` picks its bits (`VALIDATION`, `CONTINUED`)."""
    return int(sha256[8 * split : 8 * split + 8], 16) / 2**32

