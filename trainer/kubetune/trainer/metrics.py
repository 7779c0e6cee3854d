"""Answer-matching metrics for generation evaluation (pure).

``exactMatch``: the generated answer equals the reference after trimming surrounding
whitespace. ``normalizedMatch``: equal after lower-casing, removing punctuation and collapsing
whitespace, so "Yes, it is." matches "yes it is".
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence


def normalize(text: str) -> str:
    kept = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text.lower())
    return " ".join(kept.split())


def exact_match(prediction: str, reference: str) -> bool:
    return prediction.strip() == reference.strip()


def normalized_match(prediction: str, reference: str) -> bool:
    return normalize(prediction) == normalize(reference)


def match_rates(pairs: Sequence[tuple[str, str]]) -> dict[str, float]:
    """(prediction, reference) pairs -> exactMatch and normalizedMatch in [0, 1]."""
    if not pairs:
        return {"exactMatch": 0.0, "normalizedMatch": 0.0}
    count = len(pairs)
    return {
        "exactMatch": sum(exact_match(p, r) for p, r in pairs) / count,
        "normalizedMatch": sum(normalized_match(p, r) for p, r in pairs) / count,
    }


def perplexity(loss: float) -> float:
    """exp(loss), capped so a diverged run reports a large finite number, not inf."""
    return math.exp(min(loss, 50.0))
