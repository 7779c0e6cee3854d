"""Token-length statistics for the data report (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of an ascending sequence (``q`` in 0..100)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return int(sorted_values[rank - 1])


def length_stats(lengths: Sequence[int], *, max_length: int) -> dict[str, Any]:
    """Summary of token lengths before truncation, and how many exceed ``max_length``."""
    ordered = sorted(lengths)
    if not ordered:
        return {"count": 0, "totalTokens": 0, "truncated": 0, "maxSeqLength": max_length}
    return {
        "count": len(ordered),
        "totalTokens": sum(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(sum(ordered) / len(ordered), 2),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "truncated": sum(1 for n in ordered if n > max_length),
        "maxSeqLength": max_length,
    }
