"""Deterministic train/validation split: same records and seed, same split.

Each record is ranked by a SHA-256 of (seed, record content), so the split does not depend on
line order. The validation set is the ``round(n * fraction)`` lowest-ranked records, so adding
or removing records can move a few records across the boundary (its size is exact instead).
"""

from __future__ import annotations

import hashlib

from kubetune.trainer.data.formats import Example


def validation_size(total: int, fraction: float) -> int:
    """How many records go to validation: at least one when asked and possible, never all."""
    if fraction <= 0 or total < 2:
        return 0
    return min(total - 1, max(1, round(total * fraction)))


def split(
    examples: list[Example], *, fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Return (train, validation), each in input order."""
    count = validation_size(len(examples), fraction)
    if count == 0:
        return list(examples), []
    ranked = sorted(
        range(len(examples)),
        key=lambda i: hashlib.sha256(f"{seed}\0{examples[i].canonical()}".encode()).digest(),
    )
    chosen = set(ranked[:count])
    train = [e for i, e in enumerate(examples) if i not in chosen]
    validation = [e for i, e in enumerate(examples) if i in chosen]
    return train, validation
