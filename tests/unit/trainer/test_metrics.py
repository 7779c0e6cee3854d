"""Answer-matching metrics (``kubetune.trainer.metrics``).

Covers: exact match trims only surrounding whitespace; normalised match ignores case,
punctuation and spacing; rates over pairs; perplexity stays finite.
"""

from __future__ import annotations

import math

import pytest

from kubetune.trainer.metrics import (
    exact_match,
    match_rates,
    normalize,
    normalized_match,
    perplexity,
)


@pytest.mark.parametrize(
    ("prediction", "reference", "exact", "normalized"),
    [
        ("Yes.", "Yes.", True, True),
        (" Yes.\n", "Yes.", True, True),
        ("yes", "Yes.", False, True),
        ("Yes,  it is!", "yes it is", False, True),
        ("No.", "Yes.", False, False),
        ("$35 a month", "$55 a month", False, False),
    ],
)
def test_matches(prediction: str, reference: str, exact: bool, normalized: bool) -> None:
    assert exact_match(prediction, reference) is exact
    assert normalized_match(prediction, reference) is normalized


def test_normalize_and_rates() -> None:
    assert normalize("  Hello,\tWORLD... ") == "hello world"
    assert match_rates([("a", "a"), ("A!", "a"), ("b", "a"), ("c", "a")]) == {
        "exactMatch": 0.25,
        "normalizedMatch": 0.5,
    }
    assert match_rates([]) == {"exactMatch": 0.0, "normalizedMatch": 0.0}


def test_perplexity_is_finite() -> None:
    assert perplexity(0.0) == 1.0
    assert perplexity(1.0) == pytest.approx(math.e)
    assert math.isfinite(perplexity(1e9))
