"""Deterministic train/validation split (``kubetune.trainer.data.split``).

Covers: validation sizes for small and large sets (at least one, never everything); the same
records and seed always give the same split; the split ignores record order; a different
seed gives a different split; train and validation partition the input.
"""

from __future__ import annotations

import random

import pytest

from kubetune.trainer.data.formats import Example
from kubetune.trainer.data.split import split, validation_size


def records(count: int) -> list[Example]:
    return [Example(line=i + 1, text=f"record {i}") for i in range(count)]


@pytest.mark.parametrize(
    ("total", "fraction", "expected"),
    [
        (0, 0.1, 0),
        (1, 0.1, 0),
        (2, 0.1, 1),
        (10, 0.1, 1),
        (100, 0.1, 10),
        (100, 0.0, 0),
        (3, 0.5, 2),
        (1000, 0.25, 250),
    ],
)
def test_validation_size(total: int, fraction: float, expected: int) -> None:
    assert validation_size(total, fraction) == expected


def test_same_seed_same_split_and_a_partition() -> None:
    data = records(200)
    train, validation = split(data, fraction=0.1, seed=42)
    again = split(data, fraction=0.1, seed=42)
    assert (train, validation) == again
    assert len(validation) == 20
    assert sorted(e.line for e in train + validation) == list(range(1, 201))


def test_split_does_not_depend_on_order() -> None:
    data = records(100)
    shuffled = list(data)
    random.Random(3).shuffle(shuffled)
    _, validation = split(data, fraction=0.2, seed=7)
    _, validation_shuffled = split(shuffled, fraction=0.2, seed=7)
    assert {e.line for e in validation} == {e.line for e in validation_shuffled}


def test_another_seed_gives_another_split() -> None:
    data = records(100)
    assert split(data, fraction=0.2, seed=1)[1] != split(data, fraction=0.2, seed=2)[1]
